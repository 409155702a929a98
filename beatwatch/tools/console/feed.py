"""The console's Kafka access, all of it: the live feed of alerts and incidents, and beat reads.

Clients come from the Kafka client seam (:mod:`beatwatch.clients`), so the
console runs on either client library (``--kafka-client``). The feed joins its
own consumer group and survives broker restarts the way ``beatwatch alerts``
starts: it probes the broker before creating a client (no leaked threads or
sockets through an outage), waits for the alerts topic without creating it,
and while connected probes the broker every few seconds; when the broker is
gone the consumer is closed and the whole wait starts again. The incidents
topic is optional: it is read, from its start, once it appears.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from beatwatch.clients import (
    ClientError,
    Consumer,
    ConsumerOptions,
    Partition,
    Record,
    new_consumer,
    next_offsets,
)
from beatwatch.kafka import KafkaSettings, broker_listens, wait_for_broker
from beatwatch.tools.console.state import BadMessage, Store, parse_alert, parse_incident

log = logging.getLogger(__name__)

# How often a connected feed checks that the broker still listens, and looks
# for the incidents topic when it is not read yet.
PROBE_S = 2.0
TOPIC_RETRY_S = 0.5
# A fetch the broker may hold while nothing is new: the page needs no lower latency.
FETCH_MAX_WAIT_MS = 100
POLL_RECORDS = 1000
# How often the feed commits what it has read (a --group-id console resumes there).
COMMIT_S = 5.0
CLOSE_TIMEOUT_S = 3.0
# A stream's recent beats are looked for around its newest alert: records per
# step backwards, and records read in all.
STRIP_STEP_RECORDS = 2000
STRIP_SCAN_RECORDS = 20_000
READ_TIMEOUT_S = 5.0


class Feed:
    """Reads the alerts (and incidents) topic into a :class:`Store` until ``stop``.

    Args:
        settings: how to reach the broker.
        store: where alerts, incidents and bad messages go.
        alerts_topic: the detector's alerts topic.
        incidents_topic: the incidents topic, or None; read once it exists.
        group_id: the console's own consumer group.
        from_latest: a group without committed offsets starts at new alerts,
            not at the oldest the topic keeps.
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
        self.options = ConsumerOptions(
            group_id=group_id,
            # Committed in the loop, never on close: a close after a broker
            # restart would commit to (and so recreate) a topic that is gone.
            auto_commit=False,
            # "earliest" by default also after a broker restart that lost the
            # group's offsets (memory storage): a recreated topic's alerts are all new.
            auto_offset_reset="latest" if from_latest else "earliest",
            max_batch=POLL_RECORDS,
            session_timeout_ms=10_000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            allow_auto_create_topics=False,
        )
        self.incident_options = ConsumerOptions(
            group_id=None,
            max_batch=POLL_RECORDS,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            allow_auto_create_topics=False,
        )

    def run(self, stop: threading.Event) -> None:
        """Feed the store until ``stop``, reconnecting through every outage.

        Alerts are read in the console's group; incidents, if asked for, in a
        thread of their own without a group, from the topic's start: the topic
        is small, its whole history gives the open incidents, and a group
        joined while alerts flow would make the alerts' group rebalance
        (on tansu, changing a live subscription left the group without an
        assignment after the rejoin).
        """
        if self.incidents_topic:
            threading.Thread(
                target=self._lane,
                args=(stop, self.incidents_topic, False),
                name="incidents",
                daemon=True,
            ).start()
        self._lane(stop, self.alerts_topic, True)

    def _lane(self, stop: threading.Event, topic: str, alerts: bool) -> None:
        """Read ``topic`` until ``stop``, reconnecting; only the alerts lane sets the status."""
        while not stop.is_set():
            if alerts:
                self.store.set_status("connecting to the broker")
            if not wait_for_broker(self.settings, float("inf"), stop):
                return
            try:
                self._session(stop, topic, alerts)
            except Exception as exc:  # a client error must not end the console
                log.warning("console feed: %s; reconnecting", type(exc).__name__)
                stop.wait(1.0)

    def _session(self, stop: threading.Event, topic: str, alerts: bool) -> None:
        consumer = new_consumer(self.settings, self.options if alerts else self.incident_options)
        try:
            partitions = self._wait_for_topic(consumer, topic, stop, alerts)
            if not partitions:
                return
            if alerts:
                consumer.subscribe([topic])
                self.store.set_status("connected")
            else:
                consumer.assign([Partition(topic, p) for p in sorted(partitions)], True)
            log.info("console feed reading %s", "alerts" if alerts else "incidents")
            next_probe = next_commit = time.monotonic() + PROBE_S
            offsets: dict[tuple[str, int], int] = {}
            while not stop.is_set():
                records = consumer.poll(timeout_ms=500, max_records=POLL_RECORDS)
                for record in records:
                    self._handle(record)
                if alerts:
                    offsets.update(next_offsets(records))
                    if offsets and time.monotonic() >= next_commit:
                        next_commit = time.monotonic() + COMMIT_S
                        offsets = self._commit(consumer, offsets)
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + PROBE_S
                    if not broker_listens(self.settings):
                        if alerts:
                            self.store.set_status("broker unreachable; reconnecting")
                            log.warning("console feed: broker unreachable; reconnecting")
                        return
        finally:
            consumer.close(timeout_s=CLOSE_TIMEOUT_S)

    @staticmethod
    def _commit(
        consumer: Consumer, offsets: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Commit ``offsets``; return what is still to commit (all of it after a failure)."""
        try:
            consumer.commit(offsets, timeout_s=CLOSE_TIMEOUT_S)
            return {}
        except ClientError:
            return offsets  # a rebalance or an outage; the next commit covers these

    def _wait_for_topic(
        self, consumer: Consumer, topic: str, stop: threading.Event, alerts: bool
    ) -> set[int]:
        """The partitions of ``topic`` once it exists (asking never creates it)."""
        while not stop.is_set():
            partitions = consumer.partitions_for(topic)
            if partitions:
                return partitions
            if alerts:
                self.store.set_status(f"waiting for topic {topic}")
            stop.wait(TOPIC_RETRY_S if alerts else PROBE_S)
        return set()

    def _handle(self, record: Record) -> None:
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
                record.topic,
                record.partition,
                record.offset,
            )


class BeatReader:
    """Reads single records and a stream's recent beats from the beats topic.

    One consumer without a group, created on first use and recreated after an
    error; calls are serialised (a page click at a time is plenty).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            if not broker_listens(self.settings):
                raise ConnectionError("the broker is not reachable")
            self._consumer = new_consumer(
                self.settings,
                ConsumerOptions(
                    group_id=None,
                    # An offset the broker no longer keeps reads on from the oldest kept.
                    auto_offset_reset="earliest",
                    max_batch=POLL_RECORDS,
                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                    connect_timeout_s=READ_TIMEOUT_S,
                    allow_auto_create_topics=False,
                ),
            )
        return self._consumer

    def _reset(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close(timeout_s=CLOSE_TIMEOUT_S)

    def read(self, topic: str, partition: int, offset: int) -> Record | None:
        """The record at ``topic``/``partition``/``offset``, or None when it is gone.

        Raises:
            ConnectionError: the broker is not reachable.
            ClientError: the client failed.
        """
        with self._lock:
            try:
                return next(iter(self._scan(topic, partition, offset, offset + 1)), None)
            except Exception:
                self._reset()
                raise

    def recent(
        self, topic: str, partition: int, key: bytes, anchor: int, count: int
    ) -> list[Record]:
        """The last ``count`` records with ``key`` in ``partition``, oldest first.

        Reads forward from ``anchor`` (the stream's newest alert) to the
        partition's end, then backwards from ``anchor`` in steps while fewer
        than ``count`` are found, at most ``STRIP_SCAN_RECORDS`` records in all.
        """
        with self._lock:
            try:
                found = [
                    r
                    for r in self._scan(topic, partition, anchor, anchor + STRIP_SCAN_RECORDS)
                    if r.key == key
                ]
                stop_at, scanned = anchor, STRIP_STEP_RECORDS
                while stop_at > 0 and len(found) < count and scanned <= STRIP_SCAN_RECORDS:
                    start = max(0, stop_at - STRIP_STEP_RECORDS)
                    step = [r for r in self._scan(topic, partition, start, stop_at) if r.key == key]
                    found = step + found
                    stop_at, scanned = start, scanned + STRIP_STEP_RECORDS
                return found[-count:]
            except Exception:
                self._reset()
                raise

    def _scan(self, topic: str, partition: int, start: int, stop: int) -> Iterator[Record]:
        """Records of ``[start, stop)``; fewer when the partition ends first or it times out.

        The partition's end shows as polls that return nothing.
        """
        consumer = self._client()
        where = Partition(topic, partition)
        consumer.assign([where], from_beginning=True)
        consumer.seek(where, start)
        deadline = time.monotonic() + READ_TIMEOUT_S
        position, empty = start, 0
        while position < stop and time.monotonic() < deadline:
            records = consumer.poll(
                timeout_ms=2 * FETCH_MAX_WAIT_MS + 100, max_records=POLL_RECORDS
            )
            # The first poll after a seek may come back before its fetch: two in a row.
            empty = 0 if records else empty + 1
            if empty == 2:
                return
            for record in records:
                position = record.offset + 1
                if record.offset >= stop:
                    return
                if record.offset >= start:
                    yield record

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            self._reset()
