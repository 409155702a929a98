"""Cut a continuous recording into beats, identically in producer, trainer and evaluation.

A :class:`Segmentation` says everything needed to cut a beat around an R peak:
the sampling rate beats are resampled to, the window before and after the R
peak, which leads (chosen by name, never by position: MIT-BIH record 114 has
MLII as its second lead), the baseline removal and the rhythm context.
:func:`cut_beats` applies it to a whole signal; :class:`StreamCutter` applies it
chunk by chunk and returns exactly the same beats.

Causal, as a live monitor must be: the beat at R peak ``r`` reads only the
input samples ``r - span[0] .. r + span[1]`` (:func:`span_samples`) and the R
peaks before it, so it can be emitted as soon as sample ``r + span[1]`` has
arrived. Amplitude and width are kept (values are in the recording's units,
mV for WFDB); scaling per stream is the scorer's job, not the cutter's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# A lead entry that takes the first lead not named by another entry
# (MIT-BIH's second lead is V1, V2, V4 or V5 depending on the record).
ANY_OTHER_LEAD = "*"
BASELINES = ("window_median", "none")
FORMAT = "r-window-v1"


@dataclass(frozen=True)
class Segmentation:
    """How beats are cut from a continuous recording (recorded in the artifact).

    Attributes:
        fs_hz: sampling rate of the cut beats (the input is resampled to it).
        before_ms: window before the R peak.
        after_ms: window after the R peak (also the emission delay of a beat).
        leads: lead names in output order; ``"A|B"`` takes the first lead named A or B
            (case-insensitive), ``"*"`` the first lead no other entry took.
        baseline: ``"window_median"`` subtracts each lead's median over the window;
            ``"none"`` keeps the raw level.
        rr_local_beats: RR intervals before the current one whose median is
            ``rr_local_ms`` (the stream's local rhythm, robust to single ectopics).
    """

    fs_hz: float = 180.0
    before_ms: float = 300.0
    after_ms: float = 500.0
    leads: tuple[str, ...] = ("MLII", ANY_OTHER_LEAD)
    baseline: str = "window_median"
    rr_local_beats: int = 8
    format: str = field(default=FORMAT)

    def __post_init__(self) -> None:
        """Refuse a segmentation that cannot cut beats."""
        if not (math.isfinite(self.fs_hz) and self.fs_hz > 0):
            raise ValueError(f"segmentation fs_hz must be positive, got {self.fs_hz}")
        if not (math.isfinite(self.before_ms) and self.before_ms >= 0):
            raise ValueError(f"segmentation before_ms must be >= 0, got {self.before_ms}")
        if not (math.isfinite(self.after_ms) and self.after_ms > 0):
            raise ValueError(f"segmentation after_ms must be > 0, got {self.after_ms}")
        if not self.leads or not all(isinstance(x, str) and x for x in self.leads):
            raise ValueError("segmentation leads must be a non-empty list of names")
        if self.baseline not in BASELINES:
            raise ValueError(f"segmentation baseline must be one of {BASELINES}")
        if self.rr_local_beats < 1:
            raise ValueError("segmentation rr_local_beats must be >= 1")
        if self.format != FORMAT:
            raise ValueError(f"segmentation format {self.format!r} is not {FORMAT!r}")
        if self.samples_per_lead < 2:
            raise ValueError("segmentation window holds fewer than 2 samples")

    @property
    def samples_before(self) -> int:
        """Output samples before the R peak (the R peak is output sample ``samples_before``)."""
        return round(self.before_ms * self.fs_hz / 1000.0)

    @property
    def samples_per_lead(self) -> int:
        """Output samples per lead: the window before, the R peak, the window after."""
        return self.samples_before + round(self.after_ms * self.fs_hz / 1000.0)

    @property
    def n_values(self) -> int:
        """Values per beat: ``samples_per_lead`` for each lead, lead after lead."""
        return self.samples_per_lead * len(self.leads)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ``artifact.json``."""
        out = asdict(self)
        out["leads"] = list(self.leads)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segmentation:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"segmentation has unknown keys {unknown}")
        values = dict(data)
        if "leads" in values:
            values["leads"] = tuple(values["leads"])
        return cls(**values)


@dataclass
class CutBeats:
    """Beats cut from one signal.

    Attributes:
        beats: float32 ``(m, seg.n_values)``.
        kept: indices into the given R peaks of the beats cut (window inside the
            signal and at least one earlier R peak, which gives the rhythm context).
        rr_prev_ms: interval from the previous R peak, per beat.
        rr_local_ms: median of up to ``rr_local_beats`` intervals before that one
            (equal to ``rr_prev_ms`` when there is none).
    """

    beats: np.ndarray
    kept: np.ndarray
    rr_prev_ms: np.ndarray
    rr_local_ms: np.ndarray

    def __len__(self) -> int:
        return int(self.kept.size)


def resolve_leads(lead_names: Sequence[str], seg: Segmentation) -> list[int]:
    """Column of each of ``seg.leads`` in a signal whose leads are ``lead_names``.

    Raises:
        ValueError: a wanted lead is not in the signal.
    """
    lowered = [name.strip().lower() for name in lead_names]
    chosen: list[int | None] = []
    for entry in seg.leads:
        if entry == ANY_OTHER_LEAD:
            chosen.append(None)
            continue
        wanted = [x.strip().lower() for x in entry.split("|")]
        column = next((i for i, name in enumerate(lowered) if name in wanted), None)
        if column is None:
            raise ValueError(f"signal has no lead {entry!r} (it has {list(lead_names)})")
        chosen.append(column)
    taken = {c for c in chosen if c is not None}
    out: list[int] = []
    for c in chosen:
        if c is None:
            free = next((i for i in range(len(lead_names)) if i not in taken), None)
            if free is None:
                raise ValueError(f"signal has no lead besides {list(lead_names)} for '*'")
            taken.add(free)
            c = free
        out.append(c)
    return out


def _ratio(seg: Segmentation, fs_hz: float) -> float:
    return fs_hz / seg.fs_hz


def _smooth_width(seg: Segmentation, fs_hz: float) -> int:
    # A boxcar as wide as one output sample keeps mains noise from aliasing
    # into the beat when downsampling; none when upsampling.
    return max(1, round(_ratio(seg, fs_hz)))


def span_samples(seg: Segmentation, fs_hz: float) -> tuple[int, int]:
    """Input samples a beat at R peak ``r`` reads: ``r - span[0]`` to ``r + span[1]`` inclusive.

    A streaming cutter can emit the beat once sample ``r + span[1]`` has arrived.
    """
    ratio = _ratio(seg, fs_hz)
    width = _smooth_width(seg, fs_hz)
    first = -seg.samples_before * ratio
    last = (seg.samples_per_lead - 1 - seg.samples_before) * ratio
    before = -math.floor(first) + (width - 1) // 2
    after = math.floor(last) + 1 + width // 2
    return before, after


def _positions(seg: Segmentation, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    # Integer offsets from the R peak and interpolation fractions of each
    # output sample; computed from the offset alone so that every beat, in any
    # buffer, uses the very same arithmetic.
    ratio = _ratio(seg, fs_hz)
    k = np.arange(seg.samples_per_lead, dtype=np.float64) - seg.samples_before
    pos = k * ratio
    base = np.floor(pos)
    return base.astype(np.int64), pos - base


def _rhythm(r_index: np.ndarray, fs_hz: float, n_local: int) -> tuple[np.ndarray, np.ndarray]:
    rr = np.diff(r_index.astype(np.int64)).astype(np.float64) * (1000.0 / fs_hz)
    n = r_index.size
    rr_prev = np.full(n, np.nan)
    rr_local = np.full(n, np.nan)
    if n > 1:
        rr_prev[1:] = rr
        for i in range(1, n):
            earlier = rr[max(0, i - 1 - n_local) : i - 1]
            rr_local[i] = float(np.median(earlier)) if earlier.size else rr[i - 1]
    return rr_prev, rr_local


def cut_beats(
    signal: np.ndarray,
    fs_hz: float,
    lead_names: Sequence[str],
    r_index: np.ndarray | Sequence[int],
    seg: Segmentation,
) -> CutBeats:
    """Cut the beats at ``r_index`` out of ``signal`` as ``seg`` says.

    Args:
        signal: ``(n_samples, n_leads)`` (or 1-D for one lead), in the recording's units.
        fs_hz: the signal's sampling rate.
        lead_names: name of each column of ``signal``.
        r_index: increasing sample indices of the R peaks.
        seg: the segmentation.

    Returns:
        The beats whose window lies inside the signal and that have an earlier R peak.

    Raises:
        ValueError: bad shapes, a missing lead, or R peaks not increasing.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != len(lead_names):
        raise ValueError(f"signal shape {x.shape} does not match {len(lead_names)} lead names")
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"fs_hz must be positive, got {fs_hz}")
    peaks = np.asarray(r_index, dtype=np.int64).reshape(-1)
    if peaks.size > 1 and np.any(np.diff(peaks) <= 0):
        raise ValueError("R peaks must be strictly increasing")
    columns = resolve_leads(lead_names, seg)
    before, after = span_samples(seg, fs_hz)
    rr_prev, rr_local = _rhythm(peaks, fs_hz, seg.rr_local_beats)
    fits = (peaks - before >= 0) & (peaks + after < x.shape[0])
    fits[:1] = False  # no earlier R peak: no rhythm context
    kept = np.flatnonzero(fits)
    n_out = seg.samples_per_lead
    beats = np.empty((kept.size, seg.n_values), dtype=np.float32)
    if kept.size:
        base, frac = _positions(seg, fs_hz)
        width = _smooth_width(seg, fs_hz)
        shifts = np.arange(width) - (width - 1) // 2
        at = peaks[kept][:, None] + base[None, :]  # (m, n_out)
        for j, column in enumerate(columns):
            lead = x[:, column]
            lo = np.zeros(at.shape)
            hi = np.zeros(at.shape)
            for s in shifts:
                lo += lead[at + s]
                hi += lead[at + 1 + s]
            values = (lo + (hi - lo) * frac[None, :]) / width
            if seg.baseline == "window_median":
                values -= np.median(values, axis=1, keepdims=True)
            beats[:, j * n_out : (j + 1) * n_out] = values
    return CutBeats(
        beats=beats,
        kept=kept,
        rr_prev_ms=rr_prev[kept],
        rr_local_ms=rr_local[kept],
    )


class StreamCutter:
    """Cut beats from a signal that arrives in chunks; equals :func:`cut_beats` on the whole.

    Feed samples with :meth:`push` and the R peaks found so far (absolute sample
    indices, increasing, each given once) with the same call; a beat comes out
    as soon as its window has arrived. Memory is bounded: only the samples and
    R peaks a future beat can still need are kept, plus ``peak_delay_s`` of
    signal for a QRS detector that reports a peak that long after it; a peak
    reported later than that is not cut.
    """

    def __init__(
        self,
        seg: Segmentation,
        fs_hz: float,
        lead_names: Sequence[str],
        peak_delay_s: float = 2.0,
    ) -> None:
        self.seg = seg
        self.fs_hz = float(fs_hz)
        self.lead_names = list(lead_names)
        resolve_leads(self.lead_names, seg)  # refuse a missing lead now
        self._before, self._after = span_samples(seg, fs_hz)
        self._delay = math.ceil(peak_delay_s * fs_hz)
        self._buffer = np.empty((0, len(self.lead_names)), dtype=np.float64)
        self._buffer_start = 0  # absolute index of self._buffer[0]
        self._peaks: list[int] = []  # recent R peaks, absolute
        self._pending = 0  # position in self._peaks of the next beat to emit

    @property
    def samples_seen(self) -> int:
        """Absolute index one past the last sample pushed."""
        return self._buffer_start + self._buffer.shape[0]

    def push(
        self, samples: np.ndarray, new_peaks: Sequence[int] = ()
    ) -> tuple[np.ndarray, CutBeats]:
        """Append samples and R peaks; return the beats now complete.

        Returns:
            ``(r_abs, cut)``: the absolute R peak of each beat cut, and the beats
            (``cut.kept`` indexes ``r_abs``).
        """
        chunk = np.asarray(samples, dtype=np.float64)
        if chunk.ndim == 1:
            chunk = chunk[:, None]
        self._buffer = np.concatenate([self._buffer, chunk])
        for p in new_peaks:
            if self._peaks and int(p) <= self._peaks[-1]:
                raise ValueError("R peaks must be strictly increasing")
            self._peaks.append(int(p))
        end = self.samples_seen
        ready = [
            i for i in range(self._pending, len(self._peaks)) if self._peaks[i] + self._after < end
        ]
        empty = np.empty((0, self.seg.n_values), dtype=np.float32)
        no_beats = CutBeats(empty, np.empty(0, np.int64), np.empty(0), np.empty(0))
        if not ready:
            self._trim()
            return np.empty(0, np.int64), no_beats
        last = ready[-1]
        # Earlier peaks give the rhythm context; the first peak of the stream has none.
        first_context = max(0, self._pending - 1 - self.seg.rr_local_beats)
        peaks = np.asarray(self._peaks[first_context : last + 1], dtype=np.int64)
        local = peaks - self._buffer_start
        cut = cut_beats(self._buffer, self.fs_hz, self.lead_names, local, self.seg)
        wanted = (self._pending - first_context) <= cut.kept
        keep = np.flatnonzero(wanted)
        out = CutBeats(
            beats=cut.beats[keep],
            kept=np.arange(keep.size, dtype=np.int64),
            rr_prev_ms=cut.rr_prev_ms[keep],
            rr_local_ms=cut.rr_local_ms[keep],
        )
        r_abs = peaks[cut.kept[keep]]
        self._pending = last + 1
        self._trim()
        return r_abs, out

    def _trim(self) -> None:
        # Keep the R peaks that give rhythm context to the next beat, and the
        # samples the earliest beat still to come can read.
        keep_from = max(0, self._pending - 1 - self.seg.rr_local_beats)
        if keep_from:
            del self._peaks[:keep_from]
            self._pending -= keep_from
        if self._pending < len(self._peaks):
            oldest_needed = self._peaks[self._pending] - self._before
        else:
            oldest_needed = self.samples_seen - self._delay - self._before
        drop = min(max(0, oldest_needed - self._buffer_start), self._buffer.shape[0])
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
