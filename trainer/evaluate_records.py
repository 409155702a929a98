"""Evaluate on continuous annotated records the way a live monitor runs: EC57 figures.

Each record goes exactly the live path: read -> causal QRS detection -> cut with
the artifact's segmentation (:func:`beatwatch.recording_beats.recording_beats`,
the producer's own pipeline) -> scored in order by the artifact's sequential
stream scorer, one patient-adaptive state per record -> matched to the
reference annotations (:mod:`trainer.ec57`).

Without a scorer (``--qrs-only``) only the QRS detection is evaluated, with
the CPU time the detector needs per hour of signal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.errors import DataError
from beatwatch.qrs import detect_qrs
from beatwatch.recording import Recording, read_wfdb
from beatwatch.recording_beats import RecordingBeat, recording_beats
from beatwatch.segmentation import Segmentation
from beatwatch.wire import Beat
from trainer.ec57 import PACED_RECORDS, RecordResult, score_record, summarize

# Beats are fed a second of signal at a time: the beats do not depend on it
# (the pipeline is chunk-independent), and larger steps cost less overhead.
EVALUATION_CHUNK_S = 1.0

# One stream's beats in order, scored from a fresh per-stream state:
# (scores, alerts, predicted AAMI class of each beat or None for binary alerting).
StreamScoring = Callable[[str, list[Beat]], tuple[np.ndarray, np.ndarray, list[str | None] | None]]


def record_names(wfdb_dir: str | Path, records: Sequence[str] | None) -> list[str]:
    """The records to evaluate: those named, or every ``*.hea`` in the directory.

    Raises:
        DataError: the directory does not exist or holds no record.
    """
    directory = Path(wfdb_dir)
    if not directory.is_dir():
        raise DataError(f"--wfdb: {directory} is not a directory")
    if records:
        return list(records)
    names = sorted(p.stem for p in directory.glob("*.hea"))
    if not names:
        raise DataError(f"--wfdb: no WFDB record (*.hea) in {directory}")
    return names


def wire_beats(stream: str, rec: Recording, beats: Sequence[RecordingBeat]) -> list[Beat]:
    """The beats as the detector receives them (seq from 0, ts_ms = R time from 0)."""
    return [
        Beat(
            stream=stream,
            seq=i,
            ts_ms=round(b.r_index * 1000.0 / rec.fs_hz),
            samples=b.samples,
            label=b.label,
            rr_prev_ms=b.rr_prev_ms,
            rr_local_ms=b.rr_local_ms,
            beat_class=b.beat_class,
        )
        for i, b in enumerate(beats)
    ]


@dataclass
class RecordRun:
    """One record through the live path, with CPU times."""

    result: RecordResult
    duration_s: float
    qrs_cpu_s: float
    pipeline_cpu_s: float
    scoring_cpu_s: float


def evaluate_record(
    rec: Recording,
    seg: Segmentation,
    scoring: StreamScoring | None,
    *,
    from_annotations: bool = False,
) -> RecordRun:
    """Detect, cut, score and match one record.

    Raises:
        DataError: the record has no reference annotations.
    """
    if rec.ann_index is None or rec.ann_symbol is None:
        raise DataError(f"{rec.name}: no reference annotations (.atr) to evaluate against")
    started = time.process_time()
    detect_qrs(rec.lead(), rec.fs_hz)  # timed alone: the detector's own cost
    qrs_cpu_s = time.process_time() - started
    started = time.process_time()
    beats = list(
        recording_beats(rec, seg, from_annotations=from_annotations, chunk_s=EVALUATION_CHUNK_S)
    )
    pipeline_cpu_s = time.process_time() - started
    test_index = np.asarray([b.r_index for b in beats], dtype=np.int64)
    scores: np.ndarray | None = None
    alerts: np.ndarray | None = None
    classes: list[str | None] | None = None
    scoring_cpu_s = 0.0
    if scoring is not None:
        started = time.process_time()
        scores, alerts, classes = scoring(rec.name, wire_beats(rec.name, rec, beats))
        scoring_cpu_s = time.process_time() - started
    result = score_record(
        rec.name,
        rec.fs_hz,
        rec.n_samples,
        rec.ann_index,
        rec.ann_class,
        test_index,
        scores,
        alerts,
        classes,
        paced=rec.is_paced or rec.name in PACED_RECORDS,
        excluded=rec.vf_intervals,
    )
    return RecordRun(result, rec.duration_s, qrs_cpu_s, pipeline_cpu_s, scoring_cpu_s)


def evaluate_records(
    wfdb_dir: str | Path,
    records: Sequence[str] | None,
    seg: Segmentation,
    scoring: StreamScoring | None,
    *,
    from_annotations: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every record; the :func:`trainer.ec57.summarize` report plus costs.

    Raises:
        DataError: a record is missing, malformed or unannotated.
    """
    names = record_names(wfdb_dir, records)
    for name in names:  # all checked before the first long computation
        if not (Path(wfdb_dir) / f"{name}.hea").is_file():
            raise DataError(f"--records: no record {name} in {wfdb_dir} ({name}.hea not found)")
    runs: list[RecordRun] = []
    for name in names:
        rec = read_wfdb(Path(wfdb_dir) / name)
        runs.append(evaluate_record(rec, seg, scoring, from_annotations=from_annotations))
        if progress is not None:
            progress(name)
    report = summarize([r.result for r in runs])
    hours = sum(r.duration_s for r in runs) / 3600.0
    report["beats_from"] = "annotations" if from_annotations else "qrs-detector"
    report["segmentation"] = seg.to_dict()
    report["cost"] = {
        "signal_hours": hours,
        "qrs_cpu_s_per_hour": sum(r.qrs_cpu_s for r in runs) / hours,
        "detect_and_cut_cpu_s_per_hour": sum(r.pipeline_cpu_s for r in runs) / hours,
        "scoring_cpu_s_per_hour": sum(r.scoring_cpu_s for r in runs) / hours,
    }
    return report
