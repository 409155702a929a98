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
    live: RecordResult | None = None  # the live alerts' figures, when given
    offline_same_convention: RecordResult | None = None  # evaluate's, counted as live's
    live_comparison: dict[str, Any] | None = None


def evaluate_record(
    rec: Recording,
    seg: Segmentation,
    scoring: StreamScoring | None,
    *,
    from_annotations: bool = False,
    live_alerts: Sequence[LiveAlert] | None = None,
    qrs_lead: str | None = None,
) -> RecordRun:
    """Detect, cut, score and match one record.

    With ``live_alerts`` (the alerts a detector published for this record's
    replay), their figures are computed too, beat for beat beside evaluate's.

    Raises:
        DataError: the record has no reference annotations.
    """
    if rec.ann_index is None or rec.ann_symbol is None:
        raise DataError(f"{rec.name}: no reference annotations (.atr) to evaluate against")
    started = time.process_time()
    detect_qrs(rec.lead(qrs_lead), rec.fs_hz)  # timed alone: the detector's own cost
    qrs_cpu_s = time.process_time() - started
    started = time.process_time()
    beats = list(
        recording_beats(
            rec,
            seg,
            from_annotations=from_annotations,
            qrs_lead=qrs_lead,
            chunk_s=EVALUATION_CHUNK_S,
        )
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

    def scored(alerted: np.ndarray | None, predicted: Sequence[str | None] | None) -> RecordResult:
        assert rec.ann_index is not None
        return score_record(
            rec.name,
            rec.fs_hz,
            rec.n_samples,
            rec.ann_index,
            rec.ann_class,
            test_index,
            scores,
            alerted,
            predicted,
            paced=rec.is_paced or rec.name in PACED_RECORDS,
            excluded=rec.vf_intervals,
        )

    run = RecordRun(
        scored(alerts, classes), rec.duration_s, qrs_cpu_s, pipeline_cpu_s, scoring_cpu_s
    )
    if live_alerts is not None:
        beat_ms = np.round(test_index * 1000.0 / rec.fs_hz).astype(np.int64)
        at = align_alerts(beat_ms, live_alerts)
        live_alerted = np.zeros(test_index.size, dtype=bool)
        live_alerted[at[at >= 0]] = True
        with_kind = any(a.kind is not None for a in live_alerts)
        live_classes: list[str | None] | None = None
        if with_kind:
            live_classes = [None] * test_index.size
            for a, i in zip(live_alerts, at.tolist(), strict=True):
                if i >= 0:
                    live_classes[i] = a.kind
        run.live = scored(live_alerted, live_classes)
        # Evaluate's alerts counted the way the live ones can be (binary without kinds).
        run.offline_same_convention = scored(alerts, classes if with_kind else None)
        offline_alerted = np.zeros(test_index.size, bool) if alerts is None else alerts
        run.live_comparison = {
            "record": rec.name,
            "live_alerts": len(live_alerts),
            "live_alerts_not_on_a_beat": int(np.count_nonzero(at < 0)),
            "beats_alerted_differently": int(np.count_nonzero(live_alerted != offline_alerted)),
            "kinds_compared": with_kind,
            "kinds_differ": int(
                sum(
                    1
                    for i in range(test_index.size)
                    if with_kind
                    and classes is not None
                    and live_classes is not None
                    and live_alerted[i]
                    and offline_alerted[i]
                    and live_classes[i] != classes[i]
                )
            ),
        }
    return run


def evaluate_records(
    wfdb_dir: str | Path,
    records: Sequence[str] | None,
    seg: Segmentation,
    scoring: StreamScoring | None,
    *,
    from_annotations: bool = False,
    progress: Callable[[str], None] | None = None,
    live_alerts: dict[str, list[LiveAlert]] | None = None,
    qrs_lead: str | None = None,
) -> dict[str, Any]:
    """Evaluate every record; the :func:`trainer.ec57.summarize` report plus costs.

    With ``live_alerts`` (by stream id = record name), the report also holds
    ``live``: the live alerts' figures, evaluate's counted the same way, and
    per record how many beats were alerted differently.

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
        live = None if live_alerts is None else live_alerts.get(name, [])
        runs.append(
            evaluate_record(
                rec,
                seg,
                scoring,
                from_annotations=from_annotations,
                live_alerts=live,
                qrs_lead=qrs_lead,
            )
        )
        if progress is not None:
            progress(name)
    report = summarize([r.result for r in runs])
    hours = sum(r.duration_s for r in runs) / 3600.0
    report["beats_from"] = "annotations" if from_annotations else "qrs-detector"
    report["segmentation"] = seg.to_dict()
    if live_alerts is not None:
        live_runs = [r.live for r in runs if r.live is not None]
        same = [r.offline_same_convention for r in runs if r.offline_same_convention is not None]
        comparison = [r.live_comparison for r in runs if r.live_comparison is not None]
        report["live"] = {
            "live": summarize(live_runs)["gross"],
            "evaluate": summarize(same)["gross"],
            "per_record": comparison,
            "equal": all(
                c["beats_alerted_differently"] == 0 and c["kinds_differ"] == 0 for c in comparison
            ),
        }
    report["cost"] = {
        "signal_hours": hours,
        "qrs_cpu_s_per_hour": sum(r.qrs_cpu_s for r in runs) / hours,
        "detect_and_cut_cpu_s_per_hour": sum(r.pipeline_cpu_s for r in runs) / hours,
        "scoring_cpu_s_per_hour": sum(r.scoring_cpu_s for r in runs) / hours,
    }
    return report


KIND_FIELDS = ("kind", "alert_kind", "beat_kind")


@dataclass(frozen=True)
class LiveAlert:
    """What the comparison needs of one alert from the alerts topic."""

    stream: str
    ts_ms: int
    kind: str | None  # "V" or "S" when the alert says which, else None


def read_live_alerts(path: str | Path) -> dict[str, list[LiveAlert]]:
    """Alerts as ``beatwatch alerts --json`` prints them (JSON lines), by stream.

    Raises:
        DataError: the file cannot be read or a line is not an alert.
    """
    import json

    where = Path(path)
    try:
        lines = where.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{where}: cannot read: {exc.strerror or exc}") from None
    out: dict[str, list[LiveAlert]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            alert = json.loads(line)
            stream, ts_ms = str(alert["stream"]), int(alert["ts_ms"])
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"{where}: line {number} is not an alert (JSON with stream, ts_ms)"
            ) from None
        kind = next((alert[k] for k in KIND_FIELDS if isinstance(alert.get(k), str)), None)
        out.setdefault(stream, []).append(
            LiveAlert(stream, ts_ms, kind if kind in ("V", "S") else None)
        )
    return out


def align_alerts(beat_ms: np.ndarray, alerts: Sequence[LiveAlert]) -> np.ndarray:
    """Index of the beat each alert is about, or -1.

    A replayed beat's ``ts_ms`` is the replay's start plus its R time, so the
    alerts' times are the beats' R times (``beat_ms``) shifted by one unknown
    start; the start is the shift that puts the most alerts exactly on a beat.
    """
    if not alerts or beat_ms.size == 0:
        return np.full(len(alerts), -1, dtype=np.int64)
    ts = np.asarray([a.ts_ms for a in alerts], dtype=np.int64)
    # The most common difference between an alert's time and a beat's R time.
    shifts, counts = np.unique(ts[:200, None] - beat_ms[None, :], return_counts=True)
    start = int(shifts[np.argmax(counts)])
    position = np.minimum(np.searchsorted(beat_ms, ts - start), beat_ms.size - 1)
    found = beat_ms[position] == ts - start
    return np.where(found, position, -1).astype(np.int64)
