"""The scoring sections of ``artifact.json``: what changes the scores and the alerts.

Preprocessing, threshold, calibration, regions and features, each a frozen
dataclass with ``from_json`` (checks, one-line
:class:`~beatwatch.errors.ArtifactError`) and ``to_json`` (the on-disk layout).
Optional fields are None when the key is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatwatch.artifact_checks import (
    fail,
    is_count,
    is_finite,
    is_number,
    json_object,
    optional_string,
    put,
    refuse_unknown,
)
from beatwatch.scoring import SCOPES, MinMax


@dataclass(frozen=True)
class Preprocessing:
    """The input scaling (``preprocessing``): MinMax, one value or one per sample."""

    scope: str
    min: tuple[float, ...]
    max: tuple[float, ...]
    kind: str = "minmax"

    @classmethod
    def of(cls, scaling: MinMax) -> Preprocessing:
        """The record of a fitted :class:`~beatwatch.scoring.MinMax`."""
        return cls(scaling.scope, tuple(scaling.low.tolist()), tuple(scaling.high.tolist()))

    def scaling(self) -> MinMax:
        """The :class:`~beatwatch.scoring.MinMax` the scoring graph applies."""
        return MinMax.from_config(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The ``preprocessing`` object."""
        return {
            "kind": self.kind,
            "scope": self.scope,
            "min": list(self.min),
            "max": list(self.max),
        }

    @classmethod
    def from_json(cls, data: Any, length: int, where: str) -> Preprocessing:
        """Refuse scaling that is malformed, of the wrong size, non-finite or inverted."""
        try:
            scaling = MinMax.from_config(data)
        except (KeyError, TypeError, ValueError) as exc:
            fail(where, f"bad preprocessing ({exc})")
        if (
            scaling.low.ndim != 1
            or scaling.high.ndim != 1
            or not all(is_number(value) for value in [*data["min"], *data["max"]])
        ):
            fail(where, "preprocessing min and max must be lists of numbers")
        if len(scaling.low) not in (1, length) or len(scaling.high) != len(scaling.low):
            fail(where, f"preprocessing has {len(scaling.low)} values, expected 1 or {length}")
        for key, values in (("min", scaling.low), ("max", scaling.high)):
            if not np.isfinite(values).all():
                fail(where, f"preprocessing.{key} has non-finite values")
        # min == max is a constant feature, which MinMax guards with MIN_RANGE; min > max
        # is no fitted scaling at all.
        inverted = np.flatnonzero(scaling.low > scaling.high)
        if len(inverted):
            i = int(inverted[0])
            fail(
                where,
                f"preprocessing min > max at feature {i} "
                f"({scaling.low[i]!r} > {scaling.high[i]!r})",
            )
        kind = data.get("kind", "minmax")
        if kind != "minmax":
            fail(where, f"bad preprocessing (unknown kind {kind!r})")
        if scaling.scope not in SCOPES:
            fail(where, f"bad preprocessing (unknown scaling scope {scaling.scope!r})")
        refuse_unknown(data, ("kind", "scope", "min", "max"), where, "preprocessing")
        return cls(scaling.scope, tuple(data["min"]), tuple(data["max"]), kind)


@dataclass(frozen=True)
class Threshold:
    """The alert threshold (``threshold``): alert when ``score > value``.

    Attributes:
        value: the threshold.
        rule: how it was chosen (``fpr``, ``percentile``, ``patient``, ...).
        params: the rule's parameters (``{"fpr": 0.02}``).
    """

    value: float
    rule: str | None = None
    params: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``threshold`` object."""
        out: dict[str, Any] = {}
        put(out, "rule", self.rule)
        put(out, "params", None if self.params is None else dict(self.params))
        out["value"] = self.value
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Threshold:
        """Refuse a missing, non-numeric or non-finite value and malformed rule or params."""
        value: Any = data.get("value") if isinstance(data, dict) else None
        if not is_number(value):
            fail(where, "threshold.value missing or not a number")
        if not is_finite(value):
            # A NaN or infinite threshold compares false with every score: no alert, ever.
            fail(where, f"threshold.value must be finite, got {value!r}")
        rule = optional_string(data, "rule", where, "threshold.")
        params = data.get("params")
        if params is not None and not (
            isinstance(params, dict) and all(is_number(v) for v in params.values())
        ):
            fail(where, "threshold.params must be an object of numbers")
        refuse_unknown(data, ("rule", "params", "value"), where, "threshold")
        return cls(value, rule, None if params is None else dict(params))


_CALIBRATION_STATS = ("mean", "std", "min", "p50", "p95", "p99", "max")


@dataclass(frozen=True)
class Calibration:
    """Reconstruction errors of normal beats (``calibration``), for p-values.

    Attributes:
        errors: the sorted errors; None or empty: the scorer gives no p-values.
        source: which beats they are of.
        n: how many.
        mean, std, min, p50, p95, p99, max: their summary.
    """

    errors: tuple[float, ...] | None = None
    source: str | None = None
    n: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``calibration`` object."""
        out: dict[str, Any] = {}
        put(out, "source", self.source)
        put(out, "n", self.n)
        for key in _CALIBRATION_STATS:
            put(out, key, getattr(self, key))
        put(out, "errors", None if self.errors is None else list(self.errors))
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Calibration:
        """Refuse errors the scorer could not turn into p-values, and malformed statistics."""
        if not isinstance(data, dict):
            fail(where, "calibration must be an object")
        errors = data.get("errors", [])
        if not isinstance(errors, list) or not all(
            is_number(error) and is_finite(error) for error in errors
        ):
            fail(where, "calibration.errors must be a list of finite numbers")
        n = data.get("n")
        if n is not None and not is_count(n):
            fail(where, "calibration.n must be a count")
        stats: dict[str, float] = {}
        for key in _CALIBRATION_STATS:
            if key in data:
                if not (is_number(data[key]) and is_finite(data[key])):
                    fail(where, f"calibration.{key} must be a finite number")
                stats[key] = data[key]
        refuse_unknown(data, ("errors", "source", "n", *_CALIBRATION_STATS), where, "calibration")
        return cls(
            errors=tuple(errors) if "errors" in data else None,
            source=optional_string(data, "source", where, "calibration."),
            n=n,
            **stats,
        )


@dataclass(frozen=True)
class Region:
    """A named sample range of the beat (``regions[]``), end exclusive: explains alerts."""

    name: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        """The ``{"name", "start", "end"}`` object (the form :func:`explain` takes)."""
        return {"name": self.name, "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, data: Any, length: int, where: str) -> Region:
        """Refuse a region that is not ``{name: str, start: int, end: int}`` inside the beat."""
        if not (
            isinstance(data, dict)
            and isinstance(data.get("name"), str)
            and all(
                isinstance(data.get(key), int) and not isinstance(data.get(key), bool)
                for key in ("start", "end")
            )
        ):
            fail(where, f"region {data!r} is not {{name: string, start: integer, end: integer}}")
        if not 0 <= data["start"] < data["end"] <= length:
            fail(where, f"region {data} is outside 0..{length}")
        refuse_unknown(data, ("name", "start", "end"), where, "region")
        return cls(data["name"], data["start"], data["end"])


# Landmarks of the mean normal ECG5000 beat (end exclusive), used to explain alerts.
ECG5000_REGION_SPANS = (
    Region("QRS", 0, 15),
    Region("ST", 15, 50),
    Region("T", 50, 95),
    Region("P", 95, 125),
    Region("next-QRS", 125, 140),
)


@dataclass(frozen=True)
class Features:
    """What the model of continuous records is fed (``features``).

    Attributes:
        beat: where the beat vector comes from (``segmentation``).
        rhythm: the rhythm features beside it (``rr_prev_ms``).
    """

    beat: str
    rhythm: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``features`` object."""
        return {"beat": self.beat, "rhythm": list(self.rhythm)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Features:
        """Refuse anything but ``{beat: string, rhythm: [string, ...]}``."""
        data = json_object(data, where, "features")
        rhythm = data.get("rhythm")
        if not (
            isinstance(data.get("beat"), str)
            and isinstance(rhythm, list)
            and all(isinstance(name, str) for name in rhythm)
        ):
            fail(where, "features must be {beat: string, rhythm: [string, ...]}")
        refuse_unknown(data, ("beat", "rhythm"), where, "features")
        return cls(data["beat"], tuple(rhythm))
