"""The producer's loop: pace, encode, send, report progress, flush on exit.

Beat ``i`` of the replay goes to stream ``i % streams`` with that stream's next
``seq``; keying by stream keeps each stream's beats in order within one
partition. Each stream's ``seq`` starts at ``first_seq``, by default the run's
start time in microseconds since the epoch: alerts are identified by stream,
seq and model, so a rerun that numbered its beats from 0 again would have its
alerts dropped as repeats by every subscriber that deduplicates. The
idempotent producer (kafka-python 3 default, ``acks=all``) keeps broker
retries from duplicating beats.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from prometheus_client import CollectorRegistry

from beatwatch.exposition import MetricsServer
from beatwatch.kafka import BEATS_TOPIC, KafkaSettings, ensure_topics
from beatwatch.metrics import ProducerMetrics
from beatwatch.partitioner import CachedKeyPartitioner
from beatwatch.wire import Beat, encode
from producer.pacing import Pacer
from producer.source import ReplaySource, stream_id

log = logging.getLogger(__name__)

# Why 20 ms rather than the common 5: each partition opens a new batch every
# linger, and each new batch wakes kafka-python's sender thread (~200 µs of CPU
# a wake-up). At 2,000 beats/s that made the 5 ms producer the pipeline's
# second-largest user of CPU, and fewer, larger batches also cost the broker
# and the detector less. Measured: docs/performance.md, "Producer linger".
DEFAULT_LINGER_MS = 20


@dataclass(frozen=True)
class ProducerSettings:
    """Everything ``run`` needs; built from flags and ``BEATWATCH_*`` variables."""

    kafka: KafkaSettings
    topic: str = BEATS_TOPIC
    partitions: int = 4
    replication_factor: int = 1
    rate_hz: float = 100.0
    streams: int = 32
    limit: int = 0
    loop: bool = False
    wire_format: str = "json"
    include_labels: bool = True
    metrics_port: int = -1
    metrics_host: str = "0.0.0.0"
    progress_interval_s: float = 2.0
    linger_ms: int = DEFAULT_LINGER_MS
    create_topics: bool = True
    first_seq: int | None = None  # None: the run's start time, µs since the epoch


@dataclass
class ProducerStats:
    """What a run sent."""

    attempted: int = 0
    acknowledged: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    per_stream_seq: dict[str, int] = field(default_factory=dict)  # the next seq of each

    @property
    def rate_hz(self) -> float:
        """Average beats per second over the run."""
        return self.attempted / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Progress:
    """One progress line every ``interval_s``: sent, rate, errors."""

    def __init__(self, interval_s: float, out: TextIO) -> None:
        self._interval_s = interval_s
        self._out = out
        self._last_time = time.monotonic()
        self._last_count = 0

    def maybe_print(self, stats: ProducerStats, force: bool = False) -> None:
        now = time.monotonic()
        if self._interval_s <= 0 or (not force and now - self._last_time < self._interval_s):
            return
        window_rate = (stats.attempted - self._last_count) / max(now - self._last_time, 1e-9)
        print(
            f"produced {stats.attempted} beats ({window_rate:,.0f}/s), "
            f"acknowledged {stats.acknowledged}, errors {stats.errors}",
            file=self._out,
            flush=True,
        )
        self._last_time, self._last_count = now, stats.attempted


def run(
    settings: ProducerSettings,
    source: ReplaySource,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    progress_out: TextIO = sys.stderr,
) -> ProducerStats:
    """Replay ``source`` until it ends (or ``limit``), or ``stop`` is set; flush; return stats."""
    from kafka import KafkaProducer

    registry = registry or CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.target_rate.set(settings.rate_hz)
    server = None
    if settings.metrics_port >= 0:
        server = MetricsServer(registry, settings.metrics_port, host=settings.metrics_host).start()
    try:
        if settings.create_topics:
            ensure_topics(
                settings.kafka,
                {settings.topic: settings.partitions},
                replication_factor=settings.replication_factor,
            )
        producer = KafkaProducer(
            **settings.kafka.client_kwargs(), acks="all", linger_ms=settings.linger_ms,
            batch_size=256 * 1024,
            partitioner=CachedKeyPartitioner(),
        )  # fmt: skip
    except BaseException:
        if server is not None:  # free its port: run() may be called again in-process
            server.stop()
        raise
    stats = ProducerStats()
    lock = threading.Lock()

    def acknowledged(_: Any) -> None:
        with lock:
            stats.acknowledged += 1
        metrics.beats_sent.inc()

    def failed(exc: BaseException) -> None:
        with lock:
            stats.errors += 1
        metrics.send_errors.inc()
        log.warning("beat not delivered: %s", exc)

    streams = [stream_id(i) for i in range(settings.streams)]
    # Microseconds: no stream can take two beats in one, so no two runs, even
    # concurrent ones, share a (stream, seq); and 2**53 (exact in JavaScript)
    # is two centuries away.
    first_seq = time.time_ns() // 1000 if settings.first_seq is None else settings.first_seq
    seqs = np.full(settings.streams, first_seq, dtype=np.int64)
    progress = _Progress(settings.progress_interval_s, progress_out)
    pacer = Pacer(settings.rate_hz)
    started = time.monotonic()
    n_source = int(source.samples.shape[0])
    try:
        index = 0
        while not stop.is_set():
            if settings.limit and index >= settings.limit:
                break
            if index >= n_source and not settings.loop:
                break
            row = index % n_source
            stream = index % settings.streams
            label = None
            if settings.include_labels and source.labels is not None:
                label = int(source.labels[row])
            if not pacer.wait(stop.is_set):
                break
            beat = Beat(
                stream=streams[stream],
                seq=int(seqs[stream]),
                ts_ms=time.time_ns() // 1_000_000,
                samples=source.samples[row],
                label=label,
            )
            key, value, headers = encode(beat, settings.wire_format)
            future = producer.send(settings.topic, key=key, value=value, headers=headers or None)
            future.add_callback(acknowledged).add_errback(failed)
            seqs[stream] += 1
            index += 1
            stats.attempted = index
            progress.maybe_print(stats)
    finally:
        producer.flush()
        producer.close()
        stats.elapsed_s = time.monotonic() - started
        stats.per_stream_seq = {streams[i]: int(seqs[i]) for i in range(settings.streams)}
        progress.maybe_print(stats, force=True)
        if server is not None:
            server.stop()
    return stats
