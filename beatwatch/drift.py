"""Score drift: how far the recent scores are from the model's calibration scores.

The statistic is the population stability index (PSI) over the calibration
errors' deciles::

    PSI = sum over bins b of (o_b - e_b) * ln(o_b / e_b)

Bins are cut at the 10 %, 20 %, ..., 90 % quantiles of the artifact's
calibration errors (held-out normal beats), so each holds e_b = 1/10 of the
calibration distribution; o_b is the share of the last ``window`` scored beats
in bin b. A share is floored at ``MIN_SHARE`` so an empty bin counts as large
rather than infinite. Common reading: below 0.1 stable, 0.1-0.25 a moderate
shift, above 0.25 a large one. PSI needs no labels, so it can run on a live
stream; it says the input or the patients changed, not whether the model is
wrong. Abnormal beats land in the top bins, so a stream with many of them drifts
too: read it together with the alert rate.

Recording a batch costs one ``searchsorted`` and two ``bincount`` calls; the
window is a ring of bin numbers, so memory is ``window`` bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BINS = 10
DEFAULT_WINDOW_BEATS = 5000
# Floor of a bin's share: ln(0) is -inf; 1e-4 caps one empty bin's term at ~0.83.
MIN_SHARE = 1e-4


def bin_edges(calibration_errors: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The inner edges of ``bins`` equal-mass bins of the calibration errors.

    Returns:
        ``bins - 1`` ascending edges (repeated values collapse: fewer edges).
    """
    errors = np.sort(np.asarray(calibration_errors, np.float64))
    quantiles = np.quantile(errors, np.arange(1, bins) / bins)
    edges: np.ndarray = np.unique(quantiles)
    return edges


def expected_shares(calibration_errors: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The calibration errors' share in each bin (``len(edges) + 1`` bins)."""
    counts = np.bincount(
        np.searchsorted(edges, np.asarray(calibration_errors, np.float64), side="right"),
        minlength=len(edges) + 1,
    )
    shares: np.ndarray = counts / max(1, counts.sum())
    return shares


def psi(observed: np.ndarray, expected: np.ndarray, min_share: float = MIN_SHARE) -> float:
    """Population stability index of two share vectors (each summing to 1)."""
    o = np.maximum(np.asarray(observed, np.float64), min_share)
    e = np.maximum(np.asarray(expected, np.float64), min_share)
    return float(np.sum((o - e) * np.log(o / e)))


class ScoreDrift:
    """PSI of the last ``window`` scores against a reference (calibration) distribution.

    Thread-safe: the detector records from its loop while the metrics server reads.

    Args:
        window: beats in the sliding window.
        bins: equal-mass calibration bins.
    """

    def __init__(self, window: int = DEFAULT_WINDOW_BEATS, bins: int = BINS) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.bins = bins
        self._lock = threading.Lock()
        self._edges: np.ndarray | None = None
        self._expected = np.zeros(0)
        self._ring = np.zeros(window, np.int16)
        self._filled = 0
        self._next = 0
        self._counts = np.zeros(0, np.int64)

    def set_reference(self, calibration_errors: np.ndarray | None) -> None:
        """Use a (new) model's calibration errors; the window starts empty.

        Scores of another model are on another scale, so the window is cleared.
        Without calibration errors there is no reference and no PSI.
        """
        with self._lock:
            self._filled = self._next = 0
            if calibration_errors is None or len(calibration_errors) == 0:
                self._edges, self._expected = None, np.zeros(0)
                self._counts = np.zeros(0, np.int64)
                return
            self._edges = bin_edges(calibration_errors, self.bins)
            self._expected = expected_shares(calibration_errors, self._edges)
            self._counts = np.zeros(len(self._expected), np.int64)

    def observe_many(self, scores: np.ndarray) -> None:
        """Add a batch of scores, dropping the oldest beyond the window."""
        with self._lock:
            if self._edges is None or scores.size == 0:
                return
            scores = scores[-self.window :]
            bins = np.searchsorted(self._edges, scores, side="right").astype(np.int16)
            n = bins.size
            # Ring positions this batch overwrites, oldest first.
            positions = (self._next + np.arange(n)) % self.window
            if self._filled == self.window:
                evicted = self._ring[positions]
            else:
                # Only positions already holding a beat evict one.
                overflow = max(0, self._filled + n - self.window)
                evicted = self._ring[positions[n - overflow :]] if overflow else self._ring[:0]
            self._counts -= np.bincount(evicted, minlength=len(self._counts))
            self._counts += np.bincount(bins, minlength=len(self._counts))
            self._ring[positions] = bins
            self._next = int((self._next + n) % self.window)
            self._filled = min(self.window, self._filled + n)

    @property
    def beats(self) -> int:
        """Beats in the window now."""
        with self._lock:
            return self._filled

    def value(self) -> float | None:
        """PSI of the window against the reference, or None (no reference, no beats)."""
        with self._lock:
            if self._edges is None or self._filled == 0:
                return None
            return psi(self._counts / self._filled, self._expected)


class ScoreDriftCollector(Collector):
    """Exposes a :class:`ScoreDrift` as ``beatwatch_score_drift_psi`` and its window fill."""

    def __init__(self, drift: ScoreDrift, registry: CollectorRegistry) -> None:
        self.drift = drift
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The PSI (absent until a model with calibration errors scored a beat) and the fill."""
        value = self.drift.value()
        if value is not None:
            yield GaugeMetricFamily(
                "beatwatch_score_drift_psi",
                "Population stability index of the last scored beats' scores against the "
                "model's calibration errors, over the calibration deciles.",
                value=value,
            )
        yield GaugeMetricFamily(
            "beatwatch_score_drift_window_beats",
            "Scored beats in the drift window (the PSI is noisy until it is full).",
            value=self.drift.beats,
        )
        yield GaugeMetricFamily(
            "beatwatch_score_drift_window_size_beats",
            "Size of the drift window.",
            value=self.drift.window,
        )
