"""The producer's loop: pace, encode, send, report progress, flush on exit.

Beat ``i`` of the replay goes to stream ``i % streams`` with that stream's next
``seq``; keying by stream keeps each stream's beats in order within one
partition. Each stream's ``seq`` starts at ``first_seq``, by default the run's
start time in microseconds since the epoch: alerts are identified by stream,
seq and model, so a rerun that numbered its beats from 0 again would have its
alerts dropped as repeats by every subscriber that deduplicates. The
idempotent producer (``acks=all``, with either client) keeps broker retries
from duplicating beats.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from prometheus_client import CollectorRegistry

from beatwatch.clients import (
    ClientError,
    ClientSettingsError,
    Publisher,
    PublisherOptions,
    SendTimeout,
    ensure_topics,
    new_publisher,
)
from beatwatch.errors import ConfigError
from beatwatch.exposition import MetricsServer
from beatwatch.kafka import BEATS_TOPIC, KafkaSettings
from beatwatch.metrics import ProducerMetrics
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
# How long one send may wait for buffer space; a stop request is seen this often.
SEND_BLOCK_S = 1.0
# How long a stopped producer waits to deliver its buffered beats.
STOP_FLUSH_S = 5.0
WARNING_INTERVAL_S = 5.0


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


class DeliveryCount:
    """Counts each sent beat's outcome into ``stats`` and the metrics (client callbacks).

    A failure is logged at most once per ``WARNING_INTERVAL_S``, not once per
    beat: an outage at 300 beats/s would otherwise write thousands of lines.
    """

    def __init__(self, stats: ProducerStats, metrics: ProducerMetrics) -> None:
        self._stats = stats
        self._metrics = metrics
        self._lock = threading.Lock()
        self._last_warning = -math.inf

    def acknowledged(self, _: Any) -> None:
        """One beat acknowledged."""
        with self._lock:
            self._stats.acknowledged += 1
        self._metrics.beats_sent.inc()

    def failed(self, exc: BaseException) -> None:
        """One beat not delivered."""
        self._metrics.send_errors.inc()
        with self._lock:
            self._stats.errors += 1
            now = time.monotonic()
            if now - self._last_warning < WARNING_INTERVAL_S:
                return
            self._last_warning = now
        log.warning("beats not delivered: %d so far (latest: %s)", self._stats.errors, exc)


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


def _new_producer(settings: ProducerSettings) -> Publisher:
    """The beats producer: every beat acknowledged by all in-sync replicas.

    Raises:
        ConfigError: the broker cannot be reached (kafka-python bootstraps here),
            or the client rejected its settings.
    """
    options = PublisherOptions(
        linger_ms=settings.linger_ms, batch_bytes=256 * 1024, block_s=SEND_BLOCK_S
    )
    try:
        return new_publisher(settings.kafka, options)
    except ClientSettingsError:
        raise
    except ClientError as exc:
        raise ConfigError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}"
        ) from None


class _Sent:
    """The outcome of one sent beat: callbacks run once it is acknowledged or has failed.

    The client reports from its own thread, possibly before a callback is
    added; a callback added after the outcome runs at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._errbacks: list[Callable[[BaseException], None]] = []

    def resolve(self, error: BaseException | None) -> None:
        """The client's delivery callback."""
        with self._lock:
            self._done, self._error = True, error
            callbacks, errbacks = self._callbacks, self._errbacks
            self._callbacks, self._errbacks = [], []
        if error is None:
            for callback in callbacks:
                callback(None)
        else:
            for errback in errbacks:
                errback(error)

    def add_callback(self, callback: Callable[[Any], None]) -> _Sent:
        """Run ``callback(None)`` once the beat is acknowledged."""
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return self
        if self._error is None:
            callback(None)
        return self

    def add_errback(self, errback: Callable[[BaseException], None]) -> _Sent:
        """Run ``errback(error)`` if the beat is not delivered."""
        with self._lock:
            if not self._done:
                self._errbacks.append(errback)
                return self
        if self._error is not None:
            errback(self._error)
        return self


def _send(
    producer: Publisher,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]] | None,
    stop: threading.Event,
) -> _Sent | None:
    """Send one beat; while the broker is away, wait for it instead of dropping the beat.

    ``send`` blocks while the client's buffer is full (the broker stopped taking
    beats) and gives up after ``max_block_ms``; the beat is then offered again,
    so the replay pauses rather than skips, and a stop request is seen within
    ``SEND_BLOCK_S``.

    Returns:
        The beat's outcome, or None when ``stop`` was set first.
    """
    waited_s = 0.0
    while not stop.is_set():
        sent = _Sent()
        try:
            producer.send_one(topic, key, value, headers, sent.resolve)
            return sent
        except SendTimeout:
            waited_s += SEND_BLOCK_S
            if waited_s >= WARNING_INTERVAL_S:
                log.warning("the broker is not taking beats; replay paused for %.0f s", waited_s)
                waited_s = 0.0
    return None


def _flush_and_close(producer: Publisher, stop: threading.Event, stats: ProducerStats) -> None:
    """Deliver what is buffered; after a stop request, wait at most ``STOP_FLUSH_S``.

    A replay that ends waits for every beat. A stopped one must end within
    compose's 10 s grace even with the broker gone: beats still unsent then
    fail (counted, so the run exits non-zero) instead of holding the stop.
    """
    if not stop.is_set():
        producer.flush(timeout_s=None)
    pending = stats.attempted - stats.acknowledged - stats.errors
    if not producer.close(STOP_FLUSH_S):
        log.error("stopping: %d beats not delivered within %.0f s", pending, STOP_FLUSH_S)


def run(
    settings: ProducerSettings,
    source: ReplaySource,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    progress_out: TextIO = sys.stderr,
) -> ProducerStats:
    """Replay ``source`` until it ends (or ``limit``), or ``stop`` is set; flush; return stats."""
    registry = registry or CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.target_rate.set(settings.rate_hz)
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
        if server is not None:  # free its port: run() may be called again in-process
            server.stop()
        raise
    if producer is None:  # stopped while waiting for the broker: nothing was sent
        if server is not None:
            server.stop()
        return ProducerStats()
    stats = ProducerStats()
    deliveries = DeliveryCount(stats, metrics)

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
            sent = _send(producer, settings.topic, key, value, headers, stop)
            if sent is None:
                break
            sent.add_callback(deliveries.acknowledged).add_errback(deliveries.failed)
            seqs[stream] += 1
            index += 1
            stats.attempted = index
            progress.maybe_print(stats)
    finally:
        _flush_and_close(producer, stop, stats)
        stats.elapsed_s = time.monotonic() - started
        stats.per_stream_seq = {streams[i]: int(seqs[i]) for i in range(settings.streams)}
        progress.maybe_print(stats, force=True)
        if server is not None:
            server.stop()
    return stats
