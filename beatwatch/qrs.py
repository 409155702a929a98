"""QRS detection: a causal Pan-Tompkins detector with bounded work per second of signal.

The signal goes through a 5-15 Hz band-pass, a five-point derivative, squaring
and a 150 ms moving-window integration (all causal filters whose state is kept
between chunks). Local maxima of the integrated signal that dominate +-200 ms
become candidates; adaptive signal and noise levels decide which candidates
are QRS complexes, with a T-wave test (a peak within 360 ms of the previous QRS
with less than half its slope is a T wave) and a search back at half the
threshold when no QRS was found for 1.66 average RR intervals.

Work per sample is a fixed number of filter operations plus work per
candidate, and the decision logic looks at candidates only (a few per beat),
so the cost is bounded per second of signal whatever the signal holds: no
iterative fitting that can stall (wfdb's ``XQRS`` can, wfdb issue #352).

:class:`QrsDetector` is the streaming form: ``push`` a chunk of samples, get
the R peaks decided so far. Every step depends only on the samples, never on
how they were split into chunks, so any chunking yields the same peaks as
:func:`detect_qrs` on the whole signal. A QRS is reported at most about
``max_delay_s`` after it happened (the 200 ms candidate window, or the next
candidate for a beat found by search-back).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

BAND_HZ = (5.0, 15.0)
MWI_S = 0.150  # moving-window integration: about the width of a wide QRS
CANDIDATE_HALF_WINDOW_S = 0.200  # a candidate dominates the integrated signal over +-200 ms
REFRACTORY_S = 0.200  # no two QRS complexes closer than this
T_WAVE_S = 0.360  # within this of the previous QRS, a low-slope peak is a T wave
LEARNING_S = 2.0  # thresholds are initialised from the candidates of the first 2 s
SEARCHBACK_RR = 1.66  # search back once no QRS was found for this many average RR
# The threshold lies this far from the noise level to the signal level. Pan and
# Tompkins used 1/4; 1/8 finds the small aberrant and premature beats of the
# MIT-BIH records (DS1 QRS Se 99.40% -> 99.76%, +P 99.96% -> 99.94%).
THRESHOLD_FRACTION = 0.125
RR_INIT_S = 1.0
RR_HISTORY = 8
# Noise candidates kept for search-back: bounds the work per candidate when no
# QRS is found for a long time (asystole, lead off).
SEARCHBACK_POOL = 32
# Where in the integration window the QRS lies: from the candidate back this far.
QRS_LOOKBACK_S = MWI_S + 0.080


@dataclass(frozen=True)
class _Candidate:
    index: int  # where the integrated signal peaks
    value: float  # its height
    r_index: int  # the R peak: largest band-passed magnitude in the look-back window
    slope: float  # largest derivative magnitude in the look-back window


class _Decider:
    """Pan-Tompkins decision rules over candidates in time order (chunk-independent)."""

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = fs_hz
        self.refractory = round(REFRACTORY_S * fs_hz)
        self.t_wave = round(T_WAVE_S * fs_hz)
        self.learning_end = round(LEARNING_S * fs_hz)
        self.learning: list[_Candidate] | None = []
        self.spk = 0.0
        self.npk = 0.0
        self.rr: deque[float] = deque([RR_INIT_S * fs_hz] * RR_HISTORY, maxlen=RR_HISTORY)
        self.last: _Candidate | None = None
        # Noise candidates after the last QRS, the latest SEARCHBACK_POOL of them.
        self.since_last: deque[_Candidate] = deque(maxlen=SEARCHBACK_POOL)

    @property
    def threshold(self) -> float:
        return self.npk + THRESHOLD_FRACTION * (self.spk - self.npk)

    def feed(self, cand: _Candidate) -> list[int]:
        """Decide one candidate (and maybe a searched-back one); return new R indices."""
        if self.learning is not None:
            if cand.index < self.learning_end:
                self.learning.append(cand)
                return []
            return self.finish_learning([cand]) + self._decide(cand)
        return self._decide(cand)

    def finish_learning(self, extra: list[_Candidate] | None = None) -> list[int]:
        """Set the levels from the learning candidates (and ``extra``), then decide them."""
        if self.learning is None:
            return []
        learned = self.learning
        self.learning = None
        values = [c.value for c in learned + (extra or [])]
        if not values:
            return []
        self.spk = 0.5 * max(values)
        self.npk = 0.25 * float(np.median(values))
        out: list[int] = []
        for c in learned:
            out += self._decide(c)
        return out

    def _rr_mean(self) -> float:
        return float(sum(self.rr)) / len(self.rr)

    def _accept(self, cand: _Candidate, weight: float) -> list[int]:
        if self.last is not None:
            self.rr.append(float(cand.r_index - self.last.r_index))
        self.spk = weight * cand.value + (1 - weight) * self.spk
        self.last = cand
        self.since_last.clear()
        return [cand.r_index]

    def _noise(self, cand: _Candidate) -> None:
        self.npk = 0.125 * cand.value + 0.875 * self.npk
        self.since_last.append(cand)

    def _searchback(self, now: int) -> list[int]:
        """Before deciding a candidate at ``now``: a QRS missed since the last one?"""
        if self.last is None or now - self.last.r_index <= SEARCHBACK_RR * self._rr_mean():
            return []
        lower = 0.5 * self.threshold
        pool = [
            c
            for c in self.since_last
            if c.value > lower
            and c.r_index - self.last.r_index > self.refractory
            and now - c.r_index > self.refractory
        ]
        if not pool:
            return []
        best = max(pool, key=lambda c: c.value)
        rest = [c for c in self.since_last if c.index > best.index]
        out = self._accept(best, 0.25)
        self.since_last.extend(rest)
        return out

    def _decide(self, cand: _Candidate) -> list[int]:
        out = self._searchback(cand.index)
        if cand.value <= self.threshold:
            self._noise(cand)
            return out
        if self.last is not None:
            gap = cand.r_index - self.last.r_index
            if gap <= self.refractory:
                self._noise(cand)
                return out
            if gap <= self.t_wave and cand.slope < 0.5 * self.last.slope:
                self._noise(cand)  # a T wave
                return out
        return out + self._accept(cand, 0.125)


class QrsDetector:
    """Streaming QRS detection: ``push`` chunks, get absolute R-peak indices in order.

    Args:
        fs_hz: sampling rate of the samples pushed.
    """

    def __init__(self, fs_hz: float) -> None:
        if not fs_hz > 0:
            raise ValueError(f"sampling rate must be > 0, got {fs_hz}")
        self.fs_hz = float(fs_hz)
        self._sos = sps.butter(2, BAND_HZ, btype="bandpass", fs=self.fs_hz, output="sos")
        self._sos_zi = np.zeros((self._sos.shape[0], 2))
        self._deriv = np.array([1.0, 2.0, 0.0, -2.0, -1.0]) * (self.fs_hz / 8.0)
        self._deriv_zi = np.zeros(self._deriv.size - 1)
        n_mwi = max(1, round(MWI_S * self.fs_hz))
        self._mwi = np.full(n_mwi, 1.0 / n_mwi)
        self._mwi_zi = np.zeros(n_mwi - 1)
        self._half = max(1, round(CANDIDATE_HALF_WINDOW_S * self.fs_hz))
        self._lookback = round(QRS_LOOKBACK_S * self.fs_hz)
        self._keep = max(self._half, self._lookback) + 1
        # The band-pass delays the QRS by its group delay near the QRS's main
        # frequency; the R peak is reported where it is in the raw signal.
        centre_hz = float(np.sqrt(BAND_HZ[0] * BAND_HZ[1]))
        _, delay = sps.group_delay(sps.sos2tf(self._sos), w=[centre_hz], fs=self.fs_hz)
        self._delay = round(float(delay[0]))
        # Buffers of the filtered signals, starting at absolute sample _start.
        self._start = 0
        self._bp = np.zeros(0)
        self._dd = np.zeros(0)
        self._mw = np.zeros(0)
        self._next = 0  # first absolute index not yet examined as a candidate
        self._decider = _Decider(self.fs_hz)
        self.samples_seen = 0

    @property
    def max_delay_s(self) -> float:
        """Upper bound of the usual reporting delay (search-back finds may take longer)."""
        return CANDIDATE_HALF_WINDOW_S + REFRACTORY_S

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; return the R peaks (absolute sample indices) decided by them."""
        x = np.asarray(chunk, dtype=np.float64).ravel()
        if x.size == 0:
            return np.zeros(0, dtype=np.int64)
        self.samples_seen += x.size
        bp, self._sos_zi = sps.sosfilt(self._sos, x, zi=self._sos_zi)
        dd, self._deriv_zi = sps.lfilter(self._deriv, [1.0], bp, zi=self._deriv_zi)
        mw, self._mwi_zi = sps.lfilter(self._mwi, [1.0], dd * dd, zi=self._mwi_zi)
        self._bp = np.concatenate([self._bp, bp])
        self._dd = np.concatenate([self._dd, np.abs(dd)])
        self._mw = np.concatenate([self._mw, mw])
        return self._examine(self._start + self._mw.size - self._half)

    def flush(self) -> np.ndarray:
        """End of signal: decide the candidates still waiting for right-hand context."""
        out = self._examine(self._start + self._mw.size)
        return np.concatenate([out, np.asarray(self._decider.finish_learning(), dtype=np.int64)])

    def _examine(self, until: int) -> np.ndarray:
        """Find candidates in ``[_next, until)`` and decide them."""
        first = self._next
        if until <= first:
            return np.zeros(0, dtype=np.int64)
        lo = first - self._start  # buffer offset of the first index examined
        hi = until - self._start
        # The window max around each index, with missing neighbours (before the
        # signal, after its end) counted as -inf so they never win.
        left = max(0, lo - self._half)
        right = min(self._mw.size, hi + self._half)
        seg = self._mw[left:right]
        pad_l = self._half - (lo - left)
        pad_r = self._half - (right - hi)
        padded = np.concatenate([np.full(pad_l, -np.inf), seg, np.full(pad_r, -np.inf)])
        win_max = maximum_filter1d(padded, size=2 * self._half + 1, mode="nearest")
        core = slice(self._half, self._half + (hi - lo))
        values = padded[core]
        prev = padded[self._half - 1 : self._half - 1 + (hi - lo)]
        is_peak = (values >= win_max[core]) & (values > prev) & (values > 0)
        out: list[int] = []
        for offset in np.flatnonzero(is_peak).tolist():
            at = lo + offset  # buffer index of the integrated-signal peak
            back = max(0, at - self._lookback)
            r_local = back + int(np.argmax(np.abs(self._bp[back : at + 1])))
            cand = _Candidate(
                index=self._start + at,
                value=float(self._mw[at]),
                r_index=max(0, self._start + r_local - self._delay),
                slope=float(np.max(self._dd[back : at + 1])),
            )
            out += self._decider.feed(cand)
        self._next = until
        self._trim()
        return np.asarray(out, dtype=np.int64)

    def _trim(self) -> None:
        """Keep only what later candidates can still look at."""
        drop = self._next - self._keep - self._start
        if drop > 0:
            self._bp = self._bp[drop:]
            self._dd = self._dd[drop:]
            self._mw = self._mw[drop:]
            self._start += drop


def detect_qrs(signal_1d: np.ndarray, fs_hz: float) -> np.ndarray:
    """R-peak sample indices of a whole signal (the streaming detector over one chunk).

    Args:
        signal_1d: one lead, millivolts.
        fs_hz: its sampling rate.

    Returns:
        Ascending int64 sample indices.
    """
    detector = QrsDetector(fs_hz)
    peaks = np.concatenate([detector.push(signal_1d), detector.flush()])
    return np.unique(peaks)
