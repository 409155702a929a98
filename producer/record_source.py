"""Replaying continuous recordings: one stream per record, beats in the order they arrive.

Each record (a WFDB record or a CSV signal) becomes one stream whose beats are
detected and cut by :func:`beatwatch.recording_beats.recording_beats`, with the
segmentation recorded in the model artifact, so the producer cuts beats as the
model expects them. :func:`merge_streams` interleaves the streams by signal
time, which the pacer turns into wall-clock time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from beatwatch.recording import Recording, read_recording
from beatwatch.recording_beats import RecordingBeat, check_leads, recording_beats
from beatwatch.segmentation import Segmentation


@dataclass(frozen=True)
class StreamBeat:
    """A beat of one replayed stream, due at ``due_s`` of replayed signal time."""

    stream: str
    due_s: float
    ts_ms: int
    beat: RecordingBeat


@dataclass(frozen=True)
class RecordStream:
    """One record replayed as one stream."""

    stream: str
    recording: Recording


def stream_names(recordings: Sequence[Recording]) -> list[str]:
    """One stream id per record: its name, made unique with ``-2``, ``-3``..."""
    seen: dict[str, int] = {}
    names = []
    for rec in recordings:
        count = seen.get(rec.name, 0) + 1
        seen[rec.name] = count
        names.append(rec.name if count == 1 else f"{rec.name}-{count}")
    return names


def load_records(
    paths: Sequence[str],
    seg: Segmentation,
    *,
    fs_hz: float | None,
    from_annotations: bool,
    qrs_lead: str | None = None,
) -> list[RecordStream]:
    """Read every record before anything is sent, so a bad one stops the run at once.

    Raises:
        DataError: a record is missing or malformed, lacks a lead, or lacks the
            annotations ``--beats-from-annotations`` needs.
    """
    from beatwatch.errors import DataError

    recordings = [read_recording(p, fs_hz=fs_hz) for p in paths]
    for rec in recordings:
        check_leads(rec, seg)
        rec.lead_index(qrs_lead)  # the detector's lead exists
        if from_annotations and rec.ann_index is None:
            raise DataError(f"{rec.name}: --beats-from-annotations, but it has no annotations")
    return [
        RecordStream(stream=name, recording=rec)
        for name, rec in zip(stream_names(recordings), recordings, strict=True)
    ]


def _one_stream(
    record: RecordStream,
    seg: Segmentation,
    *,
    start_ms: int,
    loop: bool,
    from_annotations: bool,
    qrs_lead: str | None,
) -> Iterator[StreamBeat]:
    rec = record.recording
    offset_s = 0.0
    while True:
        base_ms = (rec.start_ms if rec.start_ms is not None else start_ms) + round(offset_s * 1000)
        for beat in recording_beats(rec, seg, from_annotations=from_annotations, qrs_lead=qrs_lead):
            yield StreamBeat(
                stream=record.stream,
                due_s=offset_s + beat.arrival_s,
                ts_ms=base_ms + round(beat.r_index * 1000.0 / rec.fs_hz),
                beat=beat,
            )
        if not loop:
            return
        offset_s += rec.duration_s


def merge_streams(
    records: Sequence[RecordStream],
    seg: Segmentation,
    *,
    start_ms: int,
    loop: bool = False,
    from_annotations: bool = False,
    qrs_lead: str | None = None,
) -> Iterator[StreamBeat]:
    """All streams' beats in order of signal time (``due_s``), each stream's in its own order.

    Args:
        records: the streams.
        seg: how to cut beats.
        start_ms: epoch ms of the replay's start: ``ts_ms`` = start + R time for
            records whose files record no start time. A loop's next pass starts
            where the previous one ended.
        loop: replay each record again when it ends.
        from_annotations: R peaks from the reference annotations.
        qrs_lead: the lead the QRS detector reads (default MLII, II or ML2, else lead 0).
    """
    streams = [
        _one_stream(
            r,
            seg,
            start_ms=start_ms,
            loop=loop,
            from_annotations=from_annotations,
            qrs_lead=qrs_lead,
        )
        for r in records
    ]
    return heapq.merge(*streams, key=lambda b: b.due_s)
