"""The console's Kafka access, all of it: the live feed of alerts and incidents, and beat reads.

Kept in this one module so that it moves onto another client with one edit.
The feed joins its own consumer group and survives broker restarts the way
``beatwatch alerts`` starts: it probes the broker before creating a client
(no leaked threads or sockets through an outage), waits for the alerts topic
without creating it, and while connected probes the broker every few seconds;
when the broker is gone the consumer is closed and the whole wait starts again.
The incidents topic is optional: it is joined when it appears.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from beatwatch.kafka import KafkaSettings, broker_listens, wait_for_broker
from beatwatch.tools.console.state import BadMessage, Store, parse_alert, parse_incident

log = logging.getLogger(__name__)

# How often a connected feed checks that the broker still listens, and looks
# for the incidents topic when it is not read yet.
PROBE_S = 2.0
TOPIC_RETRY_S = 0.5
# A fetch the broker may hold while nothing is new: the page needs no lower latency.
FETCH_MAX_WAIT_MS = 100
# Backward scan of a partition for a stream's recent beats: records per step, and in all.
STRIP_STEP_RECORDS = 2000
STRIP_SCAN_RECORDS = 20_000
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Record:
    """One record read from the beats topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _consumer(settings: KafkaSettings, **config: Any) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(**settings.client_kwargs(), **config)


def _partition(topic: str, partition: int) -> Any:
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


class Feed:
    """Reads the alerts (and incidents) topic into a :class:`Store` until ``stop``.

    Args:
        settings: how to reach the broker.
        store: where alerts, incidents and bad messages go.
        alerts_topic: the detector's alerts topic.
        incidents_topic: the incidents topic, or None; read once it exists.
        group_id: the console's own consumer group.
        from_latest: start at new alerts instead of the oldest the topic keeps.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        store: Store,
        *,
        alerts_topic: str,
        incidents_topic: str | None,
        group_id: str,
        from_latest: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.alerts_topic = alerts_topic
        self.incidents_topic = incidents_topic
        self.group_id = group_id
        self.from_latest = from_latest
        self._positioned: set[tuple[str, int]] = set()

    def run(self, stop: threading.Event) -> None:
        """Feed the store until ``stop``, reconnecting through every outage."""
        while not stop.is_set():
            self.store.set_status("connecting to the broker")
            if not wait_for_broker(self.settings, float("inf"), stop):
                return
            try:
                self._session(stop)
            except Exception as exc:  # a client error must not end the console
                log.warning("alerts feed: %s; reconnecting", type(exc).__name__)
                stop.wait(1.0)

    def _session(self, stop: threading.Event) -> None:
        consumer = _consumer(
            self.settings,
            group_id=self.group_id,
            enable_auto_commit=True,
            # "earliest" also after a broker restart that lost offsets (memory
            # storage): the alerts of a recreated topic are all new.
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            allow_auto_create_topics=False,
        )
        try:
            topics = self._wait_for_topics(consumer, stop)
            if not topics:
                return
            self._subscribe(consumer, topics)
            self.store.set_status("connected")
            log.info("alerts feed connected (%d topic(s))", len(topics))
            next_probe = time.monotonic() + PROBE_S
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._handle(record)
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + PROBE_S
                    if not broker_listens(self.settings):
                        self.store.set_status("broker unreachable; reconnecting")
                        log.warning("alerts feed: broker unreachable; reconnecting")
                        return
                    grown = self._existing(consumer)
                    if grown != topics:
                        topics = grown
                        self._subscribe(consumer, topics)
        finally:
            consumer.close(autocommit=False)

    def _existing(self, consumer: Any) -> list[str]:
        """The console's topics that exist; asks for all topics, so nothing is auto-created."""
        existing = consumer.topics()
        wanted = [self.alerts_topic] + ([self.incidents_topic] if self.incidents_topic else [])
        return [topic for topic in wanted if topic in existing]

    def _wait_for_topics(self, consumer: Any, stop: threading.Event) -> list[str]:
        while not stop.is_set():
            topics = self._existing(consumer)
            if self.alerts_topic in topics:
                return topics
            self.store.set_status(f"waiting for topic {self.alerts_topic}")
            stop.wait(TOPIC_RETRY_S)
        return []

    def _subscribe(self, consumer: Any, topics: list[str]) -> None:
        from kafka import ConsumerRebalanceListener

        feed = self

        class Position(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                # --from-latest: skip the history once, at the first assignment of
                # each partition; later (reconnects) the feed resumes where it was.
                fresh = [tp for tp in assigned if (tp.topic, tp.partition) not in feed._positioned]
                feed._positioned.update((tp.topic, tp.partition) for tp in fresh)
                if feed.from_latest and fresh:
                    consumer.seek_to_end(*fresh)

        consumer.subscribe(topics, listener=Position())

    def _handle(self, record: Any) -> None:
        try:
            if record.topic == self.alerts_topic:
                self.store.add_alert(parse_alert(record.value))
            else:
                self.store.add_incident(parse_incident(record.value))
        except BadMessage as exc:
            self.store.add_error(record.topic, record.partition, record.offset, str(exc))
            # Where, and why in general terms: never the content (patient data).
            log.warning(
                "unreadable message on %s partition %d offset %d",
                record.topic, record.partition, record.offset,
            )  # fmt: skip


class BeatReader:
    """Reads single records and a stream's recent beats from the beats topic.

    One consumer without a group, created on first use and recreated after an
    error; calls are serialised (a page click at a time is plenty).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._consumer: Any = None

    def _client(self) -> Any:
        if self._consumer is None:
            if not broker_listens(self.settings):
                raise ConnectionError("the broker is not reachable")
            self._consumer = _consumer(
                self.settings,
                enable_auto_commit=False,
                # An offset the broker no longer keeps reads on from the oldest kept.
                auto_offset_reset="earliest",
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                allow_auto_create_topics=False,
            )
        return self._consumer

    def _reset(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close(autocommit=False)

    def read(self, topic: str, partition: int, offset: int) -> Record | None:
        """The record at ``topic``/``partition``/``offset``, or None when it is gone.

        Raises:
            ConnectionError: the broker is not reachable.
        """
        with self._lock:
            try:
                for record in self._scan(topic, partition, offset, offset + 1):
                    return record
                return None
            except Exception:
                self._reset()
                raise

    def recent(self, topic: str, partition: int, key: bytes, count: int) -> list[Record]:
        """The last ``count`` records of ``partition`` with ``key``, oldest first.

        Reads backwards from the partition's end in steps, at most
        ``STRIP_SCAN_RECORDS`` records in all.
        """
        with self._lock:
            try:
                end = self._end(topic, partition)
                found: list[Record] = []
                stop_at = end
                while stop_at > 0 and len(found) < count and end - stop_at < STRIP_SCAN_RECORDS:
                    start = max(0, stop_at - STRIP_STEP_RECORDS)
                    step = [r for r in self._scan(topic, partition, start, stop_at) if r.key == key]
                    found = step + found
                    stop_at = start
                return found[-count:]
            except Exception:
                self._reset()
                raise

    def _end(self, topic: str, partition: int) -> int:
        consumer = self._client()
        tp = _partition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        return int(consumer.position(tp, timeout_ms=int(READ_TIMEOUT_S * 1000)) or 0)

    def _scan(self, topic: str, partition: int, start: int, stop: int) -> Iterator[Record]:
        """Records of ``[start, stop)`` (fewer when some are gone or it times out)."""
        consumer = self._client()
        tp = _partition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + READ_TIMEOUT_S
        position = start
        while position < stop and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=200).get(tp, []):
                position = record.offset + 1
                if record.offset >= stop:
                    return
                if record.offset >= start:
                    yield Record(record.partition, record.offset, record.key, record.value,
                                 list(record.headers or []))  # fmt: skip

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            self._reset()
