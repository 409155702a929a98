"""Threshold calibration: turn normal beats' reconstruction errors into a threshold.

Rules (alert when ``score > threshold``):

- ``mean+k*std``: mean + k standard deviations (population std, as NumPy and
  ``tf.math.reduce_std``); the course rule with k = 1.
- ``percentile``: the q-th percentile (linear interpolation).
- ``fpr``: a target false-alarm rate. The threshold is the calibration error
  above which the conformal p-value ``(1 + #{cal >= s}) / (n + 1)`` is at most
  ``fpr``, so every alert carries a p-value <= fpr and a new normal beat
  (exchangeable with the calibration beats) alerts with probability <= fpr.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from beatwatch.errors import ConfigError

RULE_PARAMETER = {"mean+k*std": "k", "percentile": "q", "fpr": "fpr"}


def check_rule(rule: str, params: dict[str, float], n_calibration: int) -> float:
    """Check a rule and its parameter against the calibration set's size; return the parameter.

    Called before fitting too, so that a rule the data cannot support fails
    in a second rather than after the whole training.

    Raises:
        ConfigError: unknown rule, missing or out-of-range parameter, or too
            few calibration beats for the requested false-alarm rate.
    """
    if n_calibration == 0:
        raise ConfigError("no calibration beats to set a threshold on")
    if rule not in RULE_PARAMETER:
        raise ConfigError(f"unknown threshold rule {rule!r} (choose {', '.join(RULE_PARAMETER)})")
    name = RULE_PARAMETER[rule]
    if name not in params:
        raise ConfigError(f"threshold rule {rule} needs parameter {name}")
    value = float(params[name])
    if rule == "mean+k*std" and not 0 <= value < math.inf:
        raise ConfigError(f"--k must be a finite number >= 0, got {value:g}")
    if rule == "percentile" and not 0 <= value <= 100:
        raise ConfigError(f"--percentile must be in [0, 100], got {value:g}")
    if rule == "fpr":
        if not 0 < value < 1:
            raise ConfigError(f"--fpr must be in (0, 1), got {value:g}")
        if _alerts_allowed(value, n_calibration) < 0:
            raise ConfigError(
                f"--fpr {value:g} needs at least {math.ceil(1 / value) - 1} calibration beats, "
                f"have {n_calibration}: give more normal rows, a larger --fpr, or another "
                "--threshold-rule"
            )
    return value


def _alerts_allowed(fpr: float, n: int) -> int:
    # Alert iff #{cal >= s} <= m, i.e. s above the (m+1)-th largest error.
    return math.floor(fpr * (n + 1) + 1e-9) - 1


def threshold_for(errors: np.ndarray, rule: str, params: dict[str, float]) -> float:
    """Compute the threshold of ``rule`` on calibration ``errors``.

    Raises:
        ConfigError: as :func:`check_rule`.
    """
    errors = np.sort(np.asarray(errors, np.float64))
    value = check_rule(rule, params, len(errors))
    if rule == "mean+k*std":
        return float(errors.mean() + value * errors.std())
    if rule == "percentile":
        return float(np.percentile(errors, value))
    n = len(errors)
    return float(errors[n - _alerts_allowed(value, n) - 1])


def calibration_stats(errors: np.ndarray) -> dict[str, Any]:
    """Summary statistics of calibration errors, and the sorted errors themselves."""
    errors = np.sort(np.asarray(errors, np.float64))
    return {
        "n": len(errors),
        "mean": float(errors.mean()),
        "std": float(errors.std()),
        "min": float(errors[0]),
        "p50": float(np.percentile(errors, 50)),
        "p95": float(np.percentile(errors, 95)),
        "p99": float(np.percentile(errors, 99)),
        "max": float(errors[-1]),
        "errors": errors.tolist(),
    }
