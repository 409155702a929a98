"""The detector's Kafka plumbing: consumer group, batch loop, publishing, commits, health.

Delivery is at-least-once. Per polled batch: decode -> score the whole batch in
one model call -> send alerts and dead letters -> flush -> commit offsets. A
failed send rewinds the batch and retries it (alerts may repeat; their
``alert_id`` lets subscribers drop repeats); a failed commit means the group
moved on and the new owner re-reads the batch. Nothing is acknowledged before
it is published.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener
from prometheus_client import CollectorRegistry

from beatwatch.errors import ConfigError
from beatwatch.exposition import MetricsServer
from beatwatch.kafka import (
    ALERTS_TOPIC,
    BEATS_TOPIC,
    DLQ_TOPIC,
    FETCH_MAX_WAIT_MS,
    KafkaSettings,
    TopicCreationError,
    broker_listens,
    close_producer,
    ensure_topics,
)
from beatwatch.metrics import DetectorMetrics
from beatwatch.partitioner import CachedKeyPartitioner
from detector.batch import (
    BatchOutcome,
    ModelContext,
    Outgoing,
    process_batch,
    wait_before_poll_s,
)

log = logging.getLogger(__name__)

# The longest --batch-linger-ms: a linger trades latency for CPU, and past a
# second the trade belongs to a batch job, not a monitor.
MAX_BATCH_LINGER_MS = 1000
# Longest the detector waits for the broker to commit, or to close a client:
# a broker that is gone must not hold up a stop (compose allows 10 s).
CLOSE_TIMEOUT_S = 3.0


def alert_producer_settings(partitioner: CachedKeyPartitioner) -> dict[str, Any]:
    """KafkaProducer settings for alerts and dead letters (``bench`` reuses them).

    Keyed messages get their partition from ``partitioner.for_key`` before
    ``send`` (see :func:`send_keyed`); the producer's own call of it is left
    for keyless dead letters.
    """
    return {
        "acks": "all",
        "linger_ms": 2,
        # Alerts are flushed once per batch anyway; large batches avoid a sender
        # wake-up for every few alerts.
        "batch_size": 1024 * 1024,
        "partitioner": partitioner,
        "max_in_flight_requests_per_connection": 5,
    }


def send_keyed(
    producer: Any, partitioner: CachedKeyPartitioner, topic: str, messages: list[Outgoing]
) -> list[Any]:
    """Send ``messages`` to ``topic``; return their futures.

    The topic's partitions are looked up once per call and each keyed
    message's partition is chosen here rather than by ``send``: 3-4 µs less
    per alert, and a batch may publish an alert for nearly every beat.
    """
    if not messages:
        return []
    partitions = sorted(producer.partitions_for(topic))
    return [
        producer.send(
            topic,
            key=message.key,
            value=message.value,
            headers=message.headers or None,
            partition=None if message.key is None else partitioner.for_key(message.key, partitions),
        )
        for message in messages
    ]


@dataclass(frozen=True)
class DetectorSettings:
    """Everything ``run`` needs; built from flags and ``BEATWATCH_*`` variables."""

    kafka: KafkaSettings
    model_dir: Path
    beats_topic: str = BEATS_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    group_id: str = "beatwatch-detector"
    partitions: int = 4
    replication_factor: int = 1
    max_batch: int = 1000
    batch_linger_ms: int = 0
    poll_timeout_ms: int = 100
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    auto_offset_reset: str = "earliest"
    max_message_bytes: int = 64 * 1024
    metrics_port: int = 9108
    metrics_host: str = "0.0.0.0"
    retry_backoff_max_s: float = 10.0
    publish_retry_backoff_s: float = 0.5
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    scoring_threads: int = 1
    create_topics: bool = True

    def __post_init__(self) -> None:
        self.kafka.client_kwargs()  # a malformed address is refused here, not retried forever
        topics = {"--beats-topic": self.beats_topic, "--alerts-topic": self.alerts_topic,
                  "--dlq-topic": self.dlq_topic}  # fmt: skip
        if len(set(topics.values())) < len(topics):
            # The detector would read its own alerts or dead letters as beats: a
            # dead letter of a dead letter, forever.
            raise ConfigError(
                "the beats, alerts and dead-letter topics must differ: "
                + ", ".join(f"{flag} {name}" for flag, name in topics.items())
            )
        # A linger is a sleep between polls: past the poll interval the group evicts
        # this detector, and a stop request waits for it to end.
        limit_ms = min(MAX_BATCH_LINGER_MS, self.max_poll_interval_ms // 2)
        if self.batch_linger_ms > limit_ms:
            raise ConfigError(
                f"--batch-linger-ms {self.batch_linger_ms} is over {limit_ms} ms "
                f"(at most {MAX_BATCH_LINGER_MS} ms and half of --max-poll-interval-ms)"
            )


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions currently assigned; updated by the rebalance listener without blocking."""

    def __init__(self, metrics: DetectorMetrics) -> None:
        self.partitions: set[Any] = set()
        self._metrics = metrics

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        # kafka-python 3 runs this inside poll(): no commit() here (it raises).
        # Nothing is pending anyway: every batch is committed before the next poll.
        for tp in revoked:
            self.partitions.discard(tp)
            self._forget_lag(tp.partition)
        self._publish_state()
        log.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.partitions.update(assigned)
        self._publish_state()
        log.info("partitions assigned: %s", _names(assigned))

    def _publish_state(self) -> None:
        # The model is loaded before the consumer exists, so ready == assigned.
        self._metrics.assigned_partitions.set(len(self.partitions))
        self._metrics.ready.set(1 if self.partitions else 0)

    def clear(self) -> None:
        """Forget every partition (the consumer closed)."""
        self.partitions.clear()
        self._publish_state()

    def _forget_lag(self, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self._metrics.consumer_lag.remove(str(partition))


def _names(partitions: Iterable[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "none"


class Detector:
    """One detector process: model, consumer, producer, metrics.

    Args:
        settings: configuration.
        registry: where metrics are registered (a fresh one per process or test).
    """

    def __init__(self, settings: DetectorSettings, registry: CollectorRegistry) -> None:
        from beatwatch.artifact import load_artifact
        from beatwatch.scoring import set_scoring_threads

        self.settings = settings
        self.metrics = DetectorMetrics(registry)
        # Refuse a bad artifact before touching Kafka or importing TensorFlow:
        # one clear line, non-zero exit, in well under a second.
        artifact = load_artifact(settings.model_dir)
        set_scoring_threads(settings.scoring_threads)
        self.scorer = artifact.scorer()
        self.model = ModelContext(
            input_length=artifact.input_length,
            threshold=artifact.threshold,
            model_version=artifact.model_version,
            regions=artifact.regions,
            max_message_bytes=settings.max_message_bytes,
        )
        self.metrics.model.info(
            {"model_version": artifact.model_version, "input_length": str(artifact.input_length)}
        )
        self.metrics.model_threshold.set(artifact.threshold)
        calibration = artifact.config.get("calibration", {}).get("errors") or []
        self.metrics.model_calibration_error_ratio.set_errors(
            np.asarray(calibration), artifact.threshold
        )
        # Compile the scoring graph now, not on the first beat.
        self.scorer.score(np.zeros((1, artifact.input_length), dtype=np.float32))
        self.assignment = _Assignment(self.metrics)
        # Records per poll: max_batch, less while batches overrun the poll interval.
        self.max_records = settings.max_batch
        # The previous poll: when it returned (monotonic seconds) and how many records.
        self._last_poll_s = 0.0
        self._last_batch = 0
        self.consumer: Any = None
        self.producer: Any = None
        self.partitioner = CachedKeyPartitioner()
        # Set by connect(); a publish waiting for an absent broker gives up on it.
        self._stop = threading.Event()

    @property
    def ready(self) -> bool:
        """Model loaded (always, once constructed) and partitions assigned."""
        return bool(self.assignment.partitions)

    def connect(self, stop: threading.Event) -> bool:
        """Create the consumer and producer, retrying with backoff until ``stop``.

        Returns:
            True when connected, False when stopped first.
        """
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaConfigurationError, KafkaConnectionError, KafkaError

        settings = self.settings
        self._stop = stop
        backoff_s = 0.5
        while not stop.is_set():
            try:
                # Probe first: a kafka-python client that fails to bootstrap leaks a
                # thread and sockets, and this loop may run for a whole outage.
                if not broker_listens(settings.kafka):
                    raise KafkaConnectionError("no bootstrap server accepts connections")
                if settings.create_topics and not ensure_topics(
                    settings.kafka,
                    {settings.beats_topic: settings.partitions,
                     settings.alerts_topic: settings.partitions,
                     settings.dlq_topic: 1},
                    replication_factor=settings.replication_factor,
                    timeout_s=5.0,
                    stop=stop,
                ):  # fmt: skip
                    return False
                self.producer = KafkaProducer(
                    **settings.kafka.client_kwargs(), **alert_producer_settings(self.partitioner)
                )
                self.consumer = KafkaConsumer(
                    **settings.kafka.client_kwargs(),
                    group_id=settings.group_id,
                    enable_auto_commit=False,
                    auto_offset_reset=settings.auto_offset_reset,
                    max_poll_records=settings.max_batch,
                    session_timeout_ms=settings.session_timeout_ms,
                    heartbeat_interval_ms=max(500, settings.session_timeout_ms // 6),
                    max_poll_interval_ms=settings.max_poll_interval_ms,
                    fetch_max_wait_ms=settings.fetch_max_wait_ms,
                    max_partition_fetch_bytes=4 * 1024 * 1024,
                )
                self.consumer.subscribe([settings.beats_topic], listener=self.assignment)
                log.info(
                    "connected to %s, group %s, topic %s",
                    settings.kafka.bootstrap_servers, settings.group_id, settings.beats_topic,
                )  # fmt: skip
                return True
            except TopicCreationError:
                raise  # waiting does not change the broker's answer: stop with its line
            except KafkaConfigurationError as exc:
                raise ConfigError(f"Kafka client settings: {exc}") from None
            except (KafkaError, ConfigError) as exc:  # ConfigError: ensure_topics timed out
                self.metrics.broker_errors.inc()
                log.warning(
                    "broker %s not reachable (%s); retrying in %.1f s",
                    settings.kafka.bootstrap_servers, exc, backoff_s,
                )  # fmt: skip
                self.close()
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, settings.retry_backoff_max_s)
        return False

    def run_once(self) -> int:
        """Poll one batch and process it to the commit; return the records handled."""
        linger_s = wait_before_poll_s(
            self.settings.batch_linger_ms,
            time.monotonic() - self._last_poll_s,
            self._last_batch,
            self.max_records,
        )
        if linger_s > 0:
            time.sleep(linger_s)
        polled = self.consumer.poll(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.max_records
        )
        self._last_poll_s = time.monotonic()
        records = [record for batch in polled.values() for record in batch]
        self._last_batch = len(records)
        if records:
            started = time.perf_counter()
            self.metrics.beats_consumed.inc(len(records))
            outcome = self._score(records)
            if self._publish(outcome):
                self._commit(outcome)
            else:
                self._rewind(records)
            elapsed_s = time.perf_counter() - started
            self.metrics.batch_seconds.observe(elapsed_s)
            self._fit_batch(len(records), elapsed_s)
        self._update_lag()
        return len(records)

    def _fit_batch(self, handled: int, elapsed_s: float) -> None:
        """Keep batches within half of ``max_poll_interval_ms``; grow back when fast.

        A batch that overruns the interval gets this detector evicted, its commit
        fails and the same batch comes back, just as big: without shrinking, a
        slow scorer would redeliver forever and never commit (measured: zero
        commits in a minute with a 1 s interval and 30k-beat batches).
        """
        budget_s = self.settings.max_poll_interval_ms / 2000
        if elapsed_s > budget_s and handled > 1:
            fitted = max(1, min(handled // 2, int(handled * budget_s / elapsed_s)))
            if fitted < self.max_records:
                log.warning(
                    "a batch of %d took %.1f s, over half of max_poll_interval_ms; "
                    "polling at most %d records",
                    handled, elapsed_s, fitted,
                )  # fmt: skip
                self.max_records = fitted
        elif handled >= self.max_records and elapsed_s < budget_s / 4:
            self.max_records = min(self.settings.max_batch, self.max_records * 2)

    def _score(self, records: list[Any]) -> BatchOutcome:
        outcome = process_batch(
            records, self.scorer, self.model, now_ms=time.time_ns() // 1_000_000
        )
        if outcome.scored:
            self.metrics.scoring_seconds.observe(outcome.scoring_s)
            self.metrics.batch_size.observe(outcome.scored)
            self.metrics.beats_scored.inc(outcome.scored)
            self.metrics.reconstruction_error_ratio.observe_many(
                outcome.scores / self.model.threshold
            )
            self.metrics.end_to_end_latency.observe_many(outcome.latency_s)
        for reason, count in outcome.invalid_reasons.items():
            self.metrics.invalid_beats.labels(reason).inc(count)
        if outcome.dead_letters:
            log.warning(
                "dead-lettered %d records (%s)",
                len(outcome.dead_letters),
                ", ".join(f"{r}: {n}" for r, n in sorted(outcome.invalid_reasons.items())),
            )
        return outcome

    def _publish(self, outcome: BatchOutcome) -> bool:
        """Send alerts and dead letters and wait for every acknowledgement."""
        from kafka.errors import KafkaError

        try:
            # Looking up the topic's partitions raises KafkaTimeoutError when its
            # metadata cannot be fetched: the batch is rewound like a failed flush.
            futures = send_keyed(
                self.producer, self.partitioner, self.settings.alerts_topic, outcome.alerts
            )
            dlq_futures = send_keyed(
                self.producer, self.partitioner, self.settings.dlq_topic, outcome.dead_letters
            )
            self._flush()
            for future in futures + dlq_futures:
                future.get(timeout=0)
        except KafkaError as exc:
            self.metrics.broker_errors.inc()
            log.warning("publishing failed (%s); the batch will be retried", exc)
            return False
        self.metrics.alerts.inc(len(futures))
        self.metrics.dead_letters.inc(len(dlq_futures))
        return True

    def _flush(self) -> None:
        """Wait for every acknowledgement, for as long as it takes unless a stop is requested.

        Raises:
            KafkaTimeoutError: a stop was requested while the broker was not
                answering; the batch is then rewound, never committed.
        """
        from kafka.errors import KafkaTimeoutError

        while True:
            try:
                self.producer.flush(timeout=CLOSE_TIMEOUT_S)
                return
            except KafkaTimeoutError:
                if self._stop.is_set():
                    raise

    def _commit(self, outcome: BatchOutcome) -> None:
        from kafka import OffsetAndMetadata, TopicPartition
        from kafka.errors import CommitFailedError, KafkaError

        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in outcome.next_offsets.items()
        }
        try:
            # Bounded: a commit that times out is only a later one's job (offsets
            # are cumulative), and a stop request must not wait 30 s for it.
            self.consumer.commit(offsets, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
            self.metrics.commits.inc()
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced (or the broker failed): the partitions' new owner
            # re-reads this batch. Alerts may repeat; none is lost.
            self.metrics.commit_failures.inc()
            log.warning("commit failed (%s); the batch will be redelivered", exc)

    def _rewind(self, records: list[Any]) -> None:
        """Seek back to the batch's first offsets so it is polled and published again."""
        from kafka import TopicPartition

        first: dict[tuple[str, int], int] = {}
        for record in records:
            position = (record.topic, record.partition)
            first[position] = min(first.get(position, record.offset), record.offset)
        for (topic, partition), offset in first.items():
            tp = TopicPartition(topic, partition)
            if tp in self.assignment.partitions:  # a revoked one is re-read by its new owner
                self.consumer.seek(tp, offset)
        time.sleep(self.settings.publish_retry_backoff_s)

    def _update_lag(self) -> None:
        for tp in list(self.assignment.partitions):
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except Exception:  # position unknown yet (no fetch for it so far)
                continue
            if position is not None:
                self.metrics.consumer_lag.labels(str(tp.partition)).set(
                    max(0, highwater - position)
                )

    def close(self) -> None:
        """Close the clients, waiting at most ``CLOSE_TIMEOUT_S`` each for the broker.

        The last batch was flushed and committed by ``run_once``; whatever is
        still unsent belongs to a batch that was never committed and will be
        read again, so a broker that is gone does not hold up a stop request.
        """
        if self.producer is not None:
            close_producer(self.producer, CLOSE_TIMEOUT_S)
            self.producer = None
        if self.consumer is not None:
            self.consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
            self.consumer = None
        self.assignment.clear()


def run(
    settings: DetectorSettings,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
) -> int:
    """Run the detector until ``stop`` is set; the current batch always finishes.

    Returns:
        Records handled.
    """
    registry = registry or CollectorRegistry()
    detector = Detector(settings, registry)
    server = None
    if settings.metrics_port >= 0:
        server = MetricsServer(
            registry, settings.metrics_port, host=settings.metrics_host,
            ready=lambda: detector.ready,
        ).start()  # fmt: skip
    handled = 0
    try:
        if detector.connect(stop):
            while not stop.is_set():
                handled += detector.run_once()
    finally:
        detector.close()
        if server is not None:
            server.stop()
        log.info("detector stopped after %d records", handled)
    return handled
