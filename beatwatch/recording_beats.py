"""A recording's beats as a live monitor sees them: detected, cut, in the order they arrive.

One pipeline shared by the producer (``beatwatch produce --record``) and the
evaluation (``beatwatch evaluate --wfdb``), so what is evaluated is what is
streamed: the signal is fed chunk by chunk to the streaming QRS detector
(:class:`~beatwatch.qrs.QrsDetector`), each R peak it reports goes with the
samples to the streaming cutter (:class:`~beatwatch.segmentation.StreamCutter`,
cut exactly as the model's :class:`~beatwatch.segmentation.Segmentation` says),
and a beat comes out once its window has arrived. ``arrival_s`` is the signal
time at which the beat became available, which paces a replay.

With ``from_annotations`` the reference annotations stand in for the detector
(each reported as its sample arrives); otherwise they only label the beats:
``beat_class`` is the AAMI class of the nearest reference beat within 150 ms
and ``label`` is 1 for N, 0 for any other class, both None for a detection
that matches no reference beat.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beatwatch.artifact import SHIPPED_MODELS_DIR
from beatwatch.errors import ConfigError, DataError
from beatwatch.qrs import QrsDetector
from beatwatch.recording import Recording
from beatwatch.segmentation import Segmentation, StreamCutter, resolve_leads

log = logging.getLogger(__name__)

DEFAULT_RECORD_MODEL_DIR = SHIPPED_MODELS_DIR / "mitbih"
SEGMENTATION_KEY = "segmentation"
CHUNK_S = 0.1  # signal fed to the detector and the cutter per step
LABEL_WINDOW_S = 0.150  # EC57's match window
# How late a detected R peak may be reported and still be cut: the detector's
# search-back can report a beat one and two thirds of an RR interval late.
PEAK_DELAY_S = 5.0


@dataclass(frozen=True)
class RecordingBeat:
    """One beat cut from a recording.

    Attributes:
        r_index: the R peak, sample index in the recording.
        arrival_s: signal time at which the beat was complete (its window arrived).
        samples: the cut beat, float32 ``(seg.n_values,)``.
        rr_prev_ms: interval from the previous R peak.
        rr_local_ms: the local RR interval before it.
        beat_class: AAMI class of the matched reference beat, or None.
        label: 1 for a reference N beat, 0 for another class, None when unmatched.
    """

    r_index: int
    arrival_s: float
    samples: np.ndarray
    rr_prev_ms: float
    rr_local_ms: float
    beat_class: str | None
    label: int | None


def load_segmentation(model_dir: str | Path | None) -> Segmentation:
    """The segmentation an artifact records (read from ``artifact.json``, no TensorFlow).

    Args:
        model_dir: the artifact directory; None takes the shipped ``models/mitbih``
            when it exists, else the default :class:`Segmentation`.

    Raises:
        ConfigError: no artifact there, or it records no (valid) segmentation.
    """
    if model_dir is None:
        if not (DEFAULT_RECORD_MODEL_DIR / "artifact.json").is_file():
            log.warning("no models/mitbih artifact: cutting beats with the default segmentation")
            return Segmentation()
        model_dir = DEFAULT_RECORD_MODEL_DIR
    path = Path(model_dir) / "artifact.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--model: no artifact at {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--model: cannot read {path}: {exc}") from None
    data = config.get(SEGMENTATION_KEY) if isinstance(config, dict) else None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--model: {path} records no segmentation (a model of pre-cut beats cannot "
            "score beats cut from a recording)"
        )
    try:
        return Segmentation.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--model: {path}: invalid segmentation: {exc}") from None


def check_leads(recording: Recording, seg: Segmentation) -> None:
    """Refuse a recording that lacks a lead the segmentation cuts.

    Raises:
        DataError: naming the record and the missing lead.
    """
    try:
        resolve_leads(recording.lead_names, seg)
    except ValueError as exc:
        raise DataError(f"{recording.name}: {exc}") from None


class _Labeller:
    """AAMI class of the nearest reference beat within the match window."""

    def __init__(self, recording: Recording) -> None:
        self.index = (
            recording.ann_index if recording.ann_index is not None else np.zeros(0, np.int64)
        )
        self.classes = recording.ann_class
        self.window = round(LABEL_WINDOW_S * recording.fs_hz)

    def __call__(self, r: int) -> str | None:
        if self.index.size == 0:
            return None
        at = int(np.searchsorted(self.index, r))
        best: int | None = None
        for j in (at - 1, at):
            if not 0 <= j < self.index.size:
                continue
            distance = abs(int(self.index[j]) - r)
            if distance <= self.window and (
                best is None or distance < abs(int(self.index[best]) - r)
            ):
                best = j
        return None if best is None else self.classes[best]


def recording_beats(
    recording: Recording,
    seg: Segmentation,
    *,
    from_annotations: bool = False,
    qrs_lead: str | None = None,
    chunk_s: float = CHUNK_S,
) -> Iterator[RecordingBeat]:
    """Detect and cut the beats of ``recording`` in arrival order, as a live monitor would.

    Args:
        recording: the record.
        seg: how to cut beats (the model's segmentation).
        from_annotations: take the R peaks from the reference annotations.
        qrs_lead: lead the detector reads; default MLII (or II), else lead 0.
        chunk_s: signal per step; the beats do not depend on it.

    Raises:
        DataError: a lead is missing, or annotations are asked for and absent.
    """
    check_leads(recording, seg)
    if from_annotations and recording.ann_index is None:
        raise DataError(f"{recording.name}: no reference annotations to take the beats from")
    fs_hz = recording.fs_hz
    lead = recording.lead_index(qrs_lead)
    signal = recording.signal
    detector = QrsDetector(fs_hz)
    cutter = StreamCutter(seg, fs_hz, recording.lead_names, peak_delay_s=PEAK_DELAY_S)
    label_of = _Labeller(recording)
    annotations = recording.ann_index if recording.ann_index is not None else np.zeros(0, np.int64)
    step = max(1, round(chunk_s * fs_hz))
    n = recording.n_samples
    last_peak = -1
    for start in range(0, n + step, step):
        end = min(start + step, n)
        chunk = signal[start:end]
        if from_annotations:
            lo, hi = np.searchsorted(annotations, [start, end])
            peaks = annotations[lo:hi]
        elif end > start:
            peaks = detector.push(chunk[:, lead])
        else:
            peaks = detector.flush()  # end of signal: decide what still waits
        peaks = peaks[peaks > last_peak]
        if peaks.size:
            last_peak = int(peaks[-1])
        r_abs, cut = cutter.push(chunk, peaks.tolist())
        arrival_s = end / fs_hz
        for i, r in enumerate(r_abs.tolist()):
            beat_class = label_of(int(r))
            yield RecordingBeat(
                r_index=int(r),
                arrival_s=arrival_s,
                samples=cut.beats[i],
                rr_prev_ms=float(cut.rr_prev_ms[i]),
                rr_local_ms=float(cut.rr_local_ms[i]),
                beat_class=beat_class,
                label=None if beat_class is None else int(beat_class == "N"),
            )
        if end >= n and start >= n:
            break
