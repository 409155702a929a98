"""Threshold rules and conformal p-values, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from beatwatch.errors import ConfigError
from beatwatch.scoring import conformal_p_values
from trainer.calibrate import calibration_stats, check_rule, threshold_for

ERRORS = np.array([1.0, 2.0, 3.0, 4.0, 10.0])


def test_mean_k_std_uses_population_std() -> None:
    # mean 4, population std sqrt(((9+4+1+0+36)/5)) = sqrt(10)
    assert threshold_for(ERRORS, "mean+k*std", {"k": 1.0}) == pytest.approx(4 + 10**0.5)
    assert threshold_for(ERRORS, "mean+k*std", {"k": 2.5}) == pytest.approx(4 + 2.5 * 10**0.5)


def test_percentile_interpolates() -> None:
    assert threshold_for(ERRORS, "percentile", {"q": 50}) == 3.0
    assert threshold_for(ERRORS, "percentile", {"q": 87.5}) == pytest.approx(4 + 0.5 * 6)
    with pytest.raises(ConfigError, match="percentile must be in"):
        threshold_for(ERRORS, "percentile", {"q": 101})


def test_fpr_rule_is_consistent_with_p_values() -> None:
    errors = np.arange(1.0, 200.0)  # 199 beats: (n + 1) * 0.01 = 2 -> one may exceed
    threshold = threshold_for(errors, "fpr", {"fpr": 0.01})
    assert threshold == 198.0
    sorted_errors = np.sort(errors)
    # Just above the threshold the p-value is within the target; at it, above.
    assert conformal_p_values(sorted_errors, np.array([198.5]))[0] == pytest.approx(2 / 200)
    assert conformal_p_values(sorted_errors, np.array([198.0]))[0] == pytest.approx(3 / 200)
    # Unshuffled permutation of the same errors gives the same threshold.
    shuffled = np.random.default_rng(0).permutation(errors)
    assert threshold_for(shuffled, "fpr", {"fpr": 0.01}) == 198.0


def test_fpr_needs_enough_calibration_beats() -> None:
    with pytest.raises(
        ConfigError, match=r"--fpr 0.01 needs at least 99 calibration beats, have 5"
    ):
        threshold_for(ERRORS, "fpr", {"fpr": 0.01})
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\)"):
        threshold_for(ERRORS, "fpr", {"fpr": 1.5})


def test_unknown_rule_and_missing_parameter() -> None:
    with pytest.raises(ConfigError, match="unknown threshold rule 'max'"):
        threshold_for(ERRORS, "max", {})
    with pytest.raises(ConfigError, match="needs parameter k"):
        threshold_for(ERRORS, "mean+k*std", {"q": 1})
    with pytest.raises(ConfigError, match="no calibration beats"):
        threshold_for(np.array([]), "percentile", {"q": 50})


def test_p_values_hand_computed() -> None:
    cal = np.array([1.0, 2.0, 2.0, 5.0])
    p = conformal_p_values(cal, np.array([0.5, 2.0, 3.0, 9.0]))
    assert p.tolist() == pytest.approx([5 / 5, 4 / 5, 2 / 5, 1 / 5])


def test_calibration_stats() -> None:
    stats = calibration_stats(np.array([3.0, 1.0, 2.0]))
    assert stats["n"] == 3 and stats["mean"] == 2.0 and stats["min"] == 1.0 and stats["max"] == 3.0
    assert stats["errors"] == [1.0, 2.0, 3.0]


def test_rules_are_checked_against_the_calibration_size_before_any_fit() -> None:
    assert check_rule("fpr", {"fpr": 0.02}, 49) == 0.02
    with pytest.raises(
        ConfigError, match=r"--fpr 0.02 needs at least 49 calibration beats, have 48"
    ):
        check_rule("fpr", {"fpr": 0.02}, 48)
    with pytest.raises(ConfigError, match=r"--percentile must be in \[0, 100\], got 150"):
        check_rule("percentile", {"q": 150}, 100)
    with pytest.raises(ConfigError, match="--k must be a finite number"):
        check_rule("mean+k*std", {"k": float("inf")}, 100)
