"""Where a beat's reconstruction failed: sample ranges and named regions, for each alert.

The explanation says where in the beat the reconstruction error concentrates,
in sample ranges and named regions (P, QRS, ST, T) that a clinician can read.
:func:`explain_numbers` does the numeric work once for a whole batch; the
detector writes alerts straight from it (``beatwatch.alert_batch``), and
:func:`explain_batch` turns it into typed :class:`Explanation` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Samples whose smoothed error is in the top share form the "worst ranges".
WORST_SAMPLE_QUANTILE = 0.9
SMOOTHING_SAMPLES = 5
MAX_RANGES = 3


@dataclass(frozen=True, slots=True)
class WorstRange:
    """A run of samples where the error concentrates.

    Attributes:
        start: first sample.
        end: one past the last sample (exclusive).
        error_share: share of the beat's total error in the run, 0..1.
    """

    start: int
    end: int
    error_share: float

    def to_json(self) -> dict[str, Any]:
        """The range as its JSON object."""
        return {"start": self.start, "end": self.end, "error_share": self.error_share}


@dataclass(frozen=True, slots=True)
class RegionShare:
    """A named region of the beat and its share of the error.

    Attributes:
        name: the region's name (P, QRS, ST, T, next-QRS for ECG5000).
        start: first sample.
        end: one past the last sample (exclusive).
        error_share: share of the beat's total error in the region, 0..1.
    """

    name: str
    start: int
    end: int
    error_share: float

    def to_json(self) -> dict[str, Any]:
        """The region as its JSON object."""
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "error_share": self.error_share,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Where one beat's reconstruction failed.

    Attributes:
        summary: one readable sentence.
        worst_ranges: up to three sample ranges, worst first.
        regions: the named regions, largest share of the error first.
    """

    summary: str
    worst_ranges: tuple[WorstRange, ...]
    regions: tuple[RegionShare, ...]

    def to_json(self) -> dict[str, Any]:
        """The explanation as its JSON object."""
        return {
            "summary": self.summary,
            "worst_ranges": [r.to_json() for r in self.worst_ranges],
            "regions": [r.to_json() for r in self.regions],
        }


@dataclass(frozen=True)
class Explained:
    """The numbers of a batch's explanations, before any per-beat object is built.

    Shares are integer thousandths (``error_share`` is ``k / 1000``): rounding
    them once for the batch gives the same value as rounding each to 3 places.
    """

    worst: list[list[tuple[int, int, int]]]  # per beat: (start, end, share‰), worst first
    region_order: list[list[int]]  # per beat: region indices, largest share first
    region_shares: list[list[int]]  # per beat, per region: share‰
    names: list[str]
    starts: list[int]
    ends: list[int]

    def top_region(self, row: int) -> str | None:
        """The name of the region with the largest share of beat ``row``'s error."""
        order = self.region_order[row]
        return self.names[order[0]] if order else None


def explain_numbers(per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]) -> Explained:
    """All numeric work of a batch's explanations, once for the whole batch.

    Smoothing, quantiles, run finding, region sums and sorting run once with
    numpy; no per-beat object is built, since a batch of abnormal beats may
    alert by thousands.

    Args:
        per_sample_error: ``(m, length)`` reconstruction error of each sample.
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive)
            from the artifact; may be empty for non-ECG data.

    Returns:
        Per beat, up to three sample ranges where the error concentrates, worst
        first, and the regions ordered by their share of the beat's total error.
    """
    errors = np.asarray(per_sample_error, dtype=np.float64)
    rows, length = errors.shape
    totals = errors.sum(axis=1)
    totals[totals <= 0] = 1.0
    prefix = np.concatenate([np.zeros((rows, 1)), np.cumsum(errors, axis=1)], axis=1)
    # Centred moving average over SMOOTHING_SAMPLES, zero-padded like np.convolve "same".
    left = SMOOTHING_SAMPLES // 2
    padded = np.pad(prefix, ((0, 0), (left, SMOOTHING_SAMPLES - left)), mode="edge")
    smoothed = (padded[:, SMOOTHING_SAMPLES:] - padded[:, :-SMOOTHING_SAMPLES])[:, :length]
    hot = smoothed >= np.quantile(smoothed, WORST_SAMPLE_QUANTILE, axis=1, keepdims=True)
    # Runs of hot samples: +1 where a run starts, -1 where it ends (row-major order).
    steps = np.diff(np.pad(hot.view(np.int8), ((0, 0), (1, 1))), axis=1)
    run_rows, run_starts = np.nonzero(steps == 1)
    run_ends = np.nonzero(steps == -1)[1]
    run_sums = prefix[run_rows, run_ends] - prefix[run_rows, run_starts]
    order = np.lexsort((-run_sums, run_rows))
    rank = np.arange(order.size) - np.searchsorted(run_rows[order], run_rows[order])
    keep = order[rank < MAX_RANGES]
    worst: list[list[tuple[int, int, int]]] = [[] for _ in range(rows)]
    run_shares = _thousandths(run_sums[keep] / totals[run_rows[keep]])
    for row, start, end, share in zip(
        run_rows[keep].tolist(),
        run_starts[keep].tolist(),
        run_ends[keep].tolist(),
        run_shares.tolist(),
        strict=True,
    ):
        worst[row].append((start, end, share))

    starts = np.array([int(r["start"]) for r in regions], dtype=np.int64)
    ends = np.array([min(int(r["end"]), length) for r in regions], dtype=np.int64)
    shares = _thousandths((prefix[:, ends] - prefix[:, starts]) / totals[:, None])
    return Explained(
        worst=worst,
        region_order=np.argsort(-shares, axis=1, kind="stable").tolist(),
        region_shares=shares.tolist(),
        names=[str(r["name"]) for r in regions],
        starts=starts.tolist(),
        ends=ends.tolist(),
    )


def _thousandths(shares: np.ndarray) -> np.ndarray:
    """Shares as integer thousandths (``np.round(x, 3)`` is ``rint(x * 1000) / 1000``)."""
    thousandths: np.ndarray = np.rint(shares * 1000).astype(np.int64)
    return thousandths


def share_of(thousandths: int) -> float:
    """A share in thousandths as the float an alert carries."""
    return thousandths / 1000


def summary_text(name: str | None, percent: int, where: str) -> str:
    """The explanation's sentence: the top region (None: no regions) and the worst ranges."""
    if name is None:
        return f"reconstruction failed mostly at {where}"
    return (
        f"reconstruction failed mostly in the {name} region ({percent}% of the error); "
        f"worst at {where}"
    )


def ranges_text(worst: list[tuple[int, int, int]]) -> str:
    """The worst ranges as the summary names them (``samples 3-9, samples 40-44``)."""
    return ", ".join(f"samples {start}-{end - 1}" for start, end, _ in worst)


def explain_batch(
    per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]
) -> list[Explanation]:
    """Say where the reconstruction failed, for each beat of a batch.

    The numeric work is :func:`explain_numbers`, once for the batch; only the
    small result objects are built per beat. The detector does not build them
    at all: it writes each alert's JSON directly
    (:func:`beatwatch.alert_batch.encode_alerts`).

    Args:
        per_sample_error: ``(m, length)`` reconstruction error of each sample.
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive)
            from the artifact; may be empty for non-ECG data.

    Returns:
        One :class:`Explanation` per beat.
    """
    ex = explain_numbers(per_sample_error, regions)
    explanations = []
    for row, worst in enumerate(ex.worst):
        shares = ex.region_shares[row]
        ranked = tuple(
            RegionShare(ex.names[i], ex.starts[i], ex.ends[i], share_of(shares[i]))
            for i in ex.region_order[row]
        )
        top = ex.region_order[row][0] if ranked else None
        summary = summary_text(
            None if top is None else ex.names[top],
            0 if top is None else round(100 * share_of(shares[top])),
            ranges_text(worst),
        )
        explanations.append(
            Explanation(
                summary=summary,
                worst_ranges=tuple(
                    WorstRange(start, end, share_of(share)) for start, end, share in worst
                ),
                regions=ranked,
            )
        )
    return explanations


def explain(per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]) -> Explanation:
    """Explain one beat (see :func:`explain_batch`)."""
    return explain_batch(np.asarray(per_sample_error)[None, :], regions)[0]
