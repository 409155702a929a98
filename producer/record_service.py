"""The producer's loop for recordings: beats sent as their windows arrive, paced by signal time.

A beat whose window ends at signal time ``t`` leaves at ``start + t / speed``
(``speed`` 1 = real time; 0 = as fast as possible), scheduled against the start
so that slow sends never make the replay drift. Each record is one stream,
keyed by its stream id; sending, delivery accounting, progress lines and the
flush on exit are those of the row replay (:mod:`producer.service`).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from prometheus_client import CollectorRegistry

from beatwatch.clients import ensure_topics
from beatwatch.exposition import MetricsServer
from beatwatch.metrics import ProducerMetrics
from beatwatch.segmentation import Segmentation
from beatwatch.wire import Beat, encode
from producer.record_source import RecordStream, StreamBeat, merge_streams
from producer.service import (
    DeliveryCount,
    ProducerSettings,
    ProducerStats,
    _flush_and_close,
    _new_producer,
    _Progress,
    _send,
)

MAX_SLEEP_S = 0.1  # longest single sleep, so a stop request is seen promptly


@dataclass(frozen=True)
class RecordReplaySettings:
    """What a replay of recordings adds to :class:`ProducerSettings`.

    Attributes:
        speed: signal seconds per wall-clock second (0 = as fast as possible).
        from_annotations: R peaks from the reference annotations, not the detector.
        qrs_lead: the lead the QRS detector reads (None: MLII, II or ML2, else lead 0).
    """

    speed: float = 1.0
    from_annotations: bool = False
    qrs_lead: str | None = None


def _wait_until(due: float, stop: threading.Event) -> bool:
    """Sleep until monotonic time ``due``; False when a stop request came first."""
    while (delay := due - time.monotonic()) > 0:
        if stop.is_set():
            return False
        time.sleep(min(delay, MAX_SLEEP_S))
    return not stop.is_set()


def to_wire(item: StreamBeat, seq: int, include_labels: bool) -> Beat:
    """The wire beat of a replayed stream beat."""
    b = item.beat
    return Beat(
        stream=item.stream,
        seq=seq,
        ts_ms=item.ts_ms,
        samples=b.samples,
        label=b.label if include_labels else None,
        rr_prev_ms=None if math.isnan(b.rr_prev_ms) else b.rr_prev_ms,
        rr_local_ms=None if math.isnan(b.rr_local_ms) else b.rr_local_ms,
        beat_class=b.beat_class if include_labels else None,
    )


def run_records(
    settings: ProducerSettings,
    replay: RecordReplaySettings,
    records: Sequence[RecordStream],
    seg: Segmentation,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    progress_out: TextIO = sys.stderr,
) -> ProducerStats:
    """Replay ``records`` until they end (or ``limit`` beats, or ``stop``); flush; return stats."""
    registry = registry or CollectorRegistry()
    metrics = ProducerMetrics(registry)
    server = None
    if settings.metrics_port >= 0:
        server = MetricsServer(registry, settings.metrics_port, host=settings.metrics_host).start()
    try:
        ready = not settings.create_topics or ensure_topics(
            settings.kafka,
            {settings.topic: settings.partitions},
            replication_factor=settings.replication_factor,
            stop=stop,
        )
        producer = _new_producer(settings) if ready else None
    except BaseException:
        if server is not None:
            server.stop()
        raise
    if producer is None:
        if server is not None:
            server.stop()
        return ProducerStats()
    stats = ProducerStats()
    deliveries = DeliveryCount(stats, metrics)

    first_seq = time.time_ns() // 1000 if settings.first_seq is None else settings.first_seq
    seqs = {r.stream: first_seq for r in records}
    progress = _Progress(settings.progress_interval_s, progress_out)
    beats: Iterator[StreamBeat] = merge_streams(
        records,
        seg,
        start_ms=time.time_ns() // 1_000_000,
        loop=settings.loop,
        from_annotations=replay.from_annotations,
        qrs_lead=replay.qrs_lead,
    )
    started = time.monotonic()
    try:
        for item in beats:
            if stop.is_set() or (settings.limit and stats.attempted >= settings.limit):
                break
            if replay.speed > 0 and not _wait_until(started + item.due_s / replay.speed, stop):
                break
            beat = to_wire(item, seqs[item.stream], settings.include_labels)
            key, value, headers = encode(beat, settings.wire_format)
            future = _send(producer, settings.topic, key, value, headers, stop)
            if future is None:
                break
            future.add_callback(deliveries.acknowledged).add_errback(deliveries.failed)
            seqs[item.stream] += 1
            stats.attempted += 1
            progress.maybe_print(stats)
    finally:
        _flush_and_close(producer, stop, stats)
        stats.elapsed_s = time.monotonic() - started
        stats.per_stream_seq = dict(seqs)
        progress.maybe_print(stats, force=True)
        if server is not None:
            server.stop()
    return stats
