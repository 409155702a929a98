"""The detector's loop over the Kafka client seam: consumer group, batches, publishing, commits.

Delivery is at-least-once. Per polled batch: decode -> score the whole batch in
one model call -> send alerts and dead letters -> flush -> commit offsets. A
failed send rewinds the batch and retries it (alerts may repeat; their
``alert_id`` lets subscribers drop repeats); a failed commit means the group
moved on and the new owner re-reads the batch. Nothing is acknowledged before
it is published.

Features plug into the loop as :class:`BatchStep` objects (``Detector.add_step``):
a step runs between batches, sees every scored batch before its publish and
may add messages to it, hears of commits, and of partitions assigned and about
to be revoked.

Around it: the settings (:mod:`detector.settings`), the partitions held
(:mod:`detector.assignment`) and the process's lifetime, ``run``
(:mod:`detector.runner`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from beatwatch.changelog import ChangelogReader
from beatwatch.clients import (
    ALERT_PUBLISHER,
    ClientError,
    ClientSettingsError,
    CommitError,
    Consumer,
    ConsumerOptions,
    Delivery,
    Partition,
    Publisher,
    PublishError,
    Record,
    TopicCreationError,
    ensure_topics,
    first_offsets,
    new_consumer,
    new_publisher,
)
from beatwatch.errors import ConfigError
from beatwatch.kafka import broker_listens
from beatwatch.metrics import DetectorMetrics
from detector.assignment import Assignment
from detector.batch import (
    BatchOutcome,
    Outgoing,
    process_batch,
    wait_before_poll_s,
)
from detector.model_watch import LoadedModel, ModelWatcher, open_model
from detector.patient_scoring import StoreAccess, score_patient_batch

# DetectorSettings is re-exported: callers imported it from here before detector.settings.
from detector.settings import DetectorSettings as DetectorSettings
from detector.steps import BatchStep
from detector.stream_state import StateSettings, StreamStateStep

log = logging.getLogger(__name__)

# Longest the detector waits for the broker to commit, or to close a client:
# a broker that is gone must not hold up a stop (compose allows 10 s).
CLOSE_TIMEOUT_S = 3.0
# How often a wait for acknowledgements looks whether a stop was requested.
STOP_CHECK_INTERVAL_S = 0.5
# How long a stop waits for pending acknowledgements. What is pending then
# belongs to a batch not yet committed (each batch is flushed before its
# commit), which the partitions' next owner re-reads.
STOP_DELIVERY_WAIT_S = 1.0


class Detector:
    """One detector process: model, consumer, producer, metrics.

    Args:
        settings: configuration.
        registry: where metrics are registered (a fresh one per process or test).
    """

    def __init__(self, settings: DetectorSettings, registry: CollectorRegistry) -> None:
        from beatwatch.scoring import set_scoring_threads

        self.settings = settings
        self.metrics = DetectorMetrics(registry, settings.drift_window_beats)
        # Refuse a bad artifact (or model root) before touching Kafka or importing
        # TensorFlow: one clear line, non-zero exit, in well under a second.
        opened = open_model(settings.model_dir, settings.max_message_bytes)
        set_scoring_threads(settings.scoring_threads)
        self._use_model(opened.warm())  # compiles the scoring graph now, not on the first beat
        # A model root is watched for new versions, loaded off this thread (docs/models.md).
        self.watcher: ModelWatcher | None = None
        if opened.pointer is not None:
            self.watcher = ModelWatcher(
                settings.model_dir,
                self.loaded,
                lambda reason: self.metrics.model_refusals.labels(reason).inc(),
                interval_s=settings.model_poll_s,
            )
        self.steps: list[BatchStep] = []
        self.assignment = Assignment(self.metrics, self.steps)
        # Read when scraped, like /ready: a blocked loop cannot leave it stale.
        self.metrics.ready.set_function(lambda: 1.0 if self.ready else 0.0)
        # Where a patient-adaptive model's per-stream state lives: the state step's store.
        self.patient_state: StoreAccess | None = None
        if settings.incidents:
            step = self._state_step()
            self.add_step(step)
            self.patient_state = StoreAccess(step.restore_pending, step.store.owns, step.store.get)
        if self.loaded.patient is not None and self.patient_state is None:
            raise ConfigError(
                f"{settings.model_dir} is a patient-adaptive model: it keeps per-stream state, "
                "which --no-incidents turns off"
            )
        # Records per poll: max_batch, less while batches overrun the poll interval.
        self.max_records = settings.max_batch
        # The previous poll: when it returned (monotonic seconds) and how many records.
        self._last_poll_s = 0.0
        # True while a flush has waited past CLOSE_TIMEOUT_S for acknowledgements.
        self._publish_stalled = False
        self._last_batch = 0
        self.consumer: Consumer | None = None
        self.producer: Publisher | None = None
        # Set by connect(); a publish waiting for an absent broker gives up on it.
        self._stop = threading.Event()

    def _use_model(self, loaded: LoadedModel) -> None:
        """Score with ``loaded`` from the next batch on; the model metrics follow it."""
        self.loaded = loaded
        self.scorer = loaded.scorer
        self.model = loaded.context
        artifact = loaded.artifact
        self.metrics.model.info(
            {"model_version": artifact.model_version, "input_length": str(artifact.input_length)}
        )
        self.metrics.model_threshold.set(artifact.threshold)
        calibration = artifact.config.calibration_errors()
        calibration = np.asarray([] if calibration is None else calibration)
        self.metrics.model_calibration_error_ratio.set_errors(calibration, artifact.threshold)
        self.metrics.score_drift.set_reference(calibration)

    def _switch_model(self) -> None:
        """Between two batches: take up the new version the watcher loaded, if any."""
        loaded = self.watcher.take() if self.watcher is not None else None
        if loaded is None or loaded.version == self.model.model_version:
            return
        if loaded.patient is not None and self.patient_state is None:
            log.error(
                "model %s refused: patient-adaptive, and per-stream state is off", loaded.version
            )
            self.metrics.model_refusals.labels("artifact").inc()
            return
        previous = self.model.model_version
        self._use_model(loaded)
        self.metrics.model_switches.inc()
        log.info("model switched from %s to %s", previous, loaded.version)

    def _state_step(self) -> StreamStateStep:
        """The per-stream state and incidents step, reading settings, clients and model lazily."""
        settings = self.settings

        def new_reader() -> ChangelogReader:
            options = ConsumerOptions(
                group_id=None, max_batch=10_000, fetch_max_wait_ms=settings.fetch_max_wait_ms
            )
            return new_consumer(settings.kafka, options)

        def lag(partition: Partition) -> int | None:
            return None if self.consumer is None else self.consumer.lag(partition)

        return StreamStateStep(
            StateSettings(
                beats_topic=settings.beats_topic,
                state_topic=settings.state_topic,
                incidents_topic=settings.incidents_topic,
                rules=settings.incident_rules,
            ),
            self.metrics,
            model_version=lambda: self.model.model_version,
            new_reader=new_reader,
            publisher=lambda: self.producer,
            lag=lag,
        )

    def add_step(self, step: BatchStep) -> None:
        """Run ``step`` in the loop from now on (after the steps added before it)."""
        self.steps.append(step)

    @property
    def ready(self) -> bool:
        """Model loaded (always, once constructed), partitions assigned and the broker answering.

        The broker counts as answering while the consumer knows its group
        coordinator and no publish has waited more than ``CLOSE_TIMEOUT_S`` for
        its acknowledgements: a silently cut link turns this False within a
        session timeout, and True again once the client has found the
        coordinator and the pending messages are acknowledged.
        """
        consumer = self.consumer
        return (
            bool(self.assignment.partitions)
            and consumer is not None
            and consumer.in_contact()
            and not self._publish_stalled
        )

    def connect(self, stop: threading.Event) -> bool:
        """Create the consumer and producer, retrying with backoff until ``stop``.

        Returns:
            True when connected, False when stopped first.
        """
        settings = self.settings
        self._stop = stop
        backoff_s = 0.5
        while not stop.is_set():
            try:
                # Probe first: a kafka-python client that fails to bootstrap leaks a
                # thread and sockets, and this loop may run for a whole outage.
                if not broker_listens(settings.kafka):
                    raise ClientError("no bootstrap server accepts connections")
                if settings.create_topics and not ensure_topics(
                    settings.kafka,
                    {
                        settings.beats_topic: settings.partitions,
                        settings.alerts_topic: settings.partitions,
                        settings.dlq_topic: 1,
                        **(
                            {
                                settings.incidents_topic: settings.partitions,
                                settings.state_topic: settings.partitions,
                            }
                            if settings.incidents
                            else {}
                        ),
                    },
                    replication_factor=settings.replication_factor,
                    timeout_s=5.0,
                    stop=stop,
                ):
                    return False
                self.producer = new_publisher(settings.kafka, ALERT_PUBLISHER)
                self.consumer = new_consumer(settings.kafka, settings.consumer_options())
                self.consumer.subscribe(
                    [settings.beats_topic],
                    on_assign=self.assignment.on_assigned,
                    on_revoke=self.assignment.on_revoked,
                )
                log.info(
                    "connected to %s, group %s, topic %s",
                    settings.kafka.bootstrap_servers,
                    settings.group_id,
                    settings.beats_topic,
                )
                return True
            except (TopicCreationError, ClientSettingsError):
                raise  # waiting does not change the answer: stop with its line
            except (ClientError, ConfigError) as exc:  # ConfigError: ensure_topics timed out
                self.metrics.broker_errors.inc()
                log.warning(
                    "broker %s not reachable (%s); retrying in %.1f s",
                    settings.kafka.bootstrap_servers,
                    exc,
                    backoff_s,
                )
                self.close()
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, settings.retry_backoff_max_s)
        return False

    def run_once(self) -> int:
        """Poll one batch and process it to the commit; return the records handled."""
        assert self.consumer is not None, "connect() first"
        self._switch_model()
        for step in self.steps:
            step.before_poll()
        linger_s = wait_before_poll_s(
            self.settings.batch_linger_ms,
            time.monotonic() - self._last_poll_s,
            self._last_batch,
            self.max_records,
        )
        if linger_s > 0:
            time.sleep(linger_s)
        records = self.consumer.poll(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.max_records
        )
        self._last_poll_s = time.monotonic()
        self._last_batch = len(records)
        if records:
            started = time.perf_counter()
            self.metrics.beats_consumed.inc(len(records))
            outcome = self._score(records)
            extra = [
                (topic, messages)
                for step in self.steps
                for topic, messages in step.on_batch(records, outcome).items()
            ]
            if self._publish(outcome, extra):
                committed = self._commit(outcome)
                for step in self.steps:
                    step.after_commit(outcome, committed)
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
                    handled,
                    elapsed_s,
                    fitted,
                )
                self.max_records = fitted
        elif handled >= self.max_records and elapsed_s < budget_s / 4:
            self.max_records = min(self.settings.max_batch, self.max_records * 2)

    def _score(self, records: Sequence[Record]) -> BatchOutcome:
        now_ms = time.time_ns() // 1_000_000
        patient = self.loaded.patient
        if patient is not None and self.patient_state is not None:
            outcome = score_patient_batch(records, patient, self.model, self.patient_state, now_ms)
        else:
            outcome = process_batch(records, self.scorer, self.model, now_ms=now_ms)
        if outcome.scored:
            self.metrics.scoring_seconds.observe(outcome.scoring_s)
            self.metrics.batch_size.observe(outcome.scored)
            self.metrics.beats_scored.inc(outcome.scored)
            self.metrics.reconstruction_error_ratio.observe_many(
                outcome.scores / self.model.threshold
            )
            self.metrics.score_drift.observe_many(outcome.scores)
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

    def _publish(
        self, outcome: BatchOutcome, extra: Sequence[tuple[str, Sequence[Outgoing]]] = ()
    ) -> bool:
        """Send alerts, dead letters and the steps' messages; wait for every acknowledgement."""
        assert self.producer is not None, "connect() first"
        try:
            # A topic whose metadata cannot be fetched raises PublishError here:
            # the batch is rewound like a failed flush.
            alerts = self.producer.send(self.settings.alerts_topic, outcome.alerts)
            dead_letters = self.producer.send(self.settings.dlq_topic, outcome.dead_letters)
            deliveries: list[Delivery] = [alerts, dead_letters]
            deliveries += [self.producer.send(topic, messages) for topic, messages in extra]
            self._flush(self.producer)
            for delivery in deliveries:
                delivery.check()
        except PublishError as exc:
            self.metrics.broker_errors.inc()
            log.warning("publishing failed (%s); the batch will be retried", exc)
            return False
        self.metrics.alerts.inc(len(alerts))
        self.metrics.dead_letters.inc(len(dead_letters))
        return True

    def _flush(self, producer: Publisher) -> None:
        """Wait for every acknowledgement, for as long as it takes unless a stop is requested.

        Raises:
            PublishError: a stop was requested while the broker was not
                answering; the batch is then rewound, never committed.
        """
        waited_s = 0.0
        try:
            while not producer.flush(timeout_s=STOP_CHECK_INTERVAL_S):
                waited_s += STOP_CHECK_INTERVAL_S
                # Acknowledgements overdue: the broker is not answering, and a
                # loop blocked here polls nothing that could tell the consumer so.
                self._publish_stalled = waited_s >= CLOSE_TIMEOUT_S
                if self._stop.is_set() and waited_s >= STOP_DELIVERY_WAIT_S:
                    raise PublishError("stopping while deliveries are pending")
        finally:
            self._publish_stalled = False

    def _commit(self, outcome: BatchOutcome) -> bool:
        """Commit the batch's offsets; True when committed."""
        assert self.consumer is not None, "connect() first"
        try:
            # Bounded: a commit that times out is only a later one's job (offsets
            # are cumulative), and a stop request must not wait 30 s for it.
            self.consumer.commit(outcome.next_offsets, timeout_s=CLOSE_TIMEOUT_S)
            self.metrics.commits.inc()
            return True
        except CommitError as exc:
            # The group rebalanced (or the broker failed): the partitions' new owner
            # re-reads this batch. Alerts may repeat; none is lost.
            self.metrics.commit_failures.inc()
            log.warning("commit failed (%s); the batch will be redelivered", exc)
            return False

    def _rewind(self, records: Sequence[Record]) -> None:
        """Seek back to the batch's first offsets so it is polled and published again."""
        assert self.consumer is not None, "connect() first"
        for partition, offset in first_offsets(records).items():
            if partition in self.assignment.partitions:  # a revoked one: its new owner re-reads
                self.consumer.seek(partition, offset)
        time.sleep(self.settings.publish_retry_backoff_s)

    def _update_lag(self) -> None:
        assert self.consumer is not None, "connect() first"
        for partition in list(self.assignment.partitions):
            lag = self.consumer.lag(partition)
            if lag is not None:
                self.metrics.consumer_lag.labels(str(partition.partition)).set(lag)

    def close(self) -> None:
        """Close the clients, waiting at most ``CLOSE_TIMEOUT_S`` each for the broker.

        The last batch was flushed and committed by ``run_once``; whatever is
        still unsent belongs to a batch that was never committed and will be
        read again, so a broker that is gone does not hold up a stop request.
        """
        if self.producer is not None:
            self.producer.close(STOP_DELIVERY_WAIT_S)
            self.producer = None
        if self.consumer is not None:
            self.consumer.close(CLOSE_TIMEOUT_S)
            self.consumer = None
        self.assignment.clear()
