"""The confluent-kafka adapter (``--kafka-client confluent``): the seam over librdkafka.

Installed with ``pip install 'beatwatch[confluent]'``. Every librdkafka
workaround of the project lives here:

- keyed messages go to Kafka's default murmur2 partition (``murmur2_random``):
  librdkafka's own default (CRC32) would put a stream on another partition
  than kafka-python or a Java producer does;
- a poll returns what has arrived at once and waits only when nothing has
  (``consume(n, timeout)`` waits for ``n`` messages or the whole timeout);
- delivery reports and rebalance callbacks run only inside ``poll``/``flush``
  and ``consume`` on the caller's thread, so sending serves them as it goes;
- commits and closes, which have no timeout in librdkafka, run on a helper
  thread and are waited for at most the caller's timeout;
- on tansu, ``queued.max.messages.kbytes`` below ~1 MB collapses consumption
  to ~2.5k messages/s: it is kept at 64 MB here; and librdkafka's default
  45 s session timeout delays a first join by about half of it (the options'
  10 s default is used).

TLS and SASL settings are mapped from their kafka-python names to librdkafka's;
the configuration is never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Message as _Message
from confluent_kafka import Producer as _Producer
from confluent_kafka import TopicPartition as _TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from beatwatch.clients.client import (
    ClientError,
    ClientSettingsError,
    CommitError,
    ConsumedRecord,
    ConsumerOptions,
    DeliveryCallback,
    Headers,
    Outgoing,
    Partition,
    PartitionsCallback,
    PublisherOptions,
    PublishError,
    Record,
    SendTimeout,
    TopicsRefused,
)
from beatwatch.kafka import KafkaSettings

log = logging.getLogger(__name__)

# kafka-python's names of the settings KafkaSettings.extra may hold -> librdkafka's.
EXTRA_KEYS = {
    "client_id": "client.id",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}
# Consumer prefetch: at least 8 MB on tansu (see the module's docstring).
QUEUED_MAX_KBYTES = 64 * 1024
# kafka-python's delivery_timeout_ms: a message not acknowledged by then fails.
MESSAGE_TIMEOUT_MS = 120_000
# One line per this many seconds for each kind of client error (an outage repeats them).
ERROR_LOG_INTERVAL_S = 10.0
# librdkafka's "no offset" marker (OFFSET_INVALID) and unknown watermark.
_NO_OFFSET = -1001

T = TypeVar("T")


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """Librdkafka settings common to producers, consumers and admin clients.

    Raises:
        ClientSettingsError: a bad address, or a security setting with no librdkafka name.
    """
    kwargs = settings.client_kwargs()  # validates the bootstrap servers
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(kwargs["bootstrap_servers"]),
        "security.protocol": settings.security_protocol.lower(),
        "logger": logging.getLogger("beatwatch.clients.librdkafka"),
        "error_cb": _ErrorLog().error,
    }
    for key, value in settings.extra.items():
        name = EXTRA_KEYS.get(key)
        if name is None:
            raise ClientSettingsError(f"Kafka client settings: {key} has no librdkafka equivalent")
        config[name] = value
    return config


class _ErrorLog:
    """librdkafka's error callback: one warning per kind of error per interval."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}

    def error(self, error: KafkaError) -> None:
        now = time.monotonic()
        code = error.code()
        if now - self._last.get(code, -ERROR_LOG_INTERVAL_S) < ERROR_LOG_INTERVAL_S:
            return
        self._last[code] = now
        log.warning("Kafka client: %s", error.str())


def _build(factory: Callable[[dict[str, Any]], T], config: dict[str, Any]) -> T:
    try:
        return factory(config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ClientSettingsError(f"Kafka client settings: {_text(exc)}") from None


def _text(exc: BaseException) -> str:
    """The readable part of a librdkafka exception."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return str(exc)


def contact_in_stats(stats: dict[str, Any], in_group: bool, silence_limit_us: int) -> bool:
    """Whether librdkafka's statistics show a live connection.

    In a group, the coordinator's connection must be up and must have received
    something (heartbeat answers) within ``silence_limit_us``; without a group,
    any broker's. A cut link leaves a connection "UP" until a request times out
    (a minute by default), so the state alone says nothing during a silent cut.

    Args:
        stats: one statistics document (librdkafka's STATISTICS.md).
        in_group: the consumer is a group member.
        silence_limit_us: longest silence of a live connection, in microseconds.
    """
    if in_group and stats.get("cgrp", {}).get("state") != "up":
        return False
    for name, broker in stats.get("brokers", {}).items():
        if in_group and not str(name).startswith("GroupCoordinator"):
            continue
        received_us = broker.get("rxidle", -1)
        if broker.get("state") == "UP" and 0 <= received_us < silence_limit_us:
            return True
    return False


class _Reports:
    """The delivery reports of one ``send``: counts of acknowledged and failed messages."""

    __slots__ = ("acknowledged", "count", "first_error")

    def __init__(self, count: int) -> None:
        self.count = count
        self.acknowledged = 0
        self.first_error: str | None = None

    def __len__(self) -> int:
        return self.count

    def report(self, error: KafkaError | None, _: Any) -> None:
        """Librdkafka's delivery callback, run inside ``poll``/``flush``."""
        if error is None:
            self.acknowledged += 1
        elif self.first_error is None:
            self.first_error = str(error.str())

    def check(self) -> None:
        if self.first_error is not None:
            raise PublishError(self.first_error)
        if self.acknowledged < self.count:
            raise PublishError(f"{self.count - self.acknowledged} messages not acknowledged")


class ConfluentPublisher:
    """A librdkafka producer: idempotent, ``acks=all``, Kafka's default key partitioning.

    Raises:
        ClientSettingsError: librdkafka rejected the settings.
    """

    def __init__(self, settings: KafkaSettings, options: PublisherOptions) -> None:
        self._block_s = options.block_s
        self._producer = _build(
            _Producer,
            {
                **client_config(settings),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": options.linger_ms,
                "batch.size": options.batch_bytes,
                "message.max.bytes": options.max_request_bytes,
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "partitioner": "murmur2_random",
            },
        )

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        callback: Callable[[Any, Any], None],
        partition: int | None = None,
    ) -> None:
        """Queue one message; while the queue is full, serve reports for up to ``block_s``."""
        # librdkafka's "unassigned" partition: its partitioner chooses from the key.
        chosen = -1 if partition is None else partition
        producer = self._producer
        deadline = None
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    headers=headers or None,  # type: ignore[arg-type]
                    on_delivery=callback,
                    partition=chosen,
                )
                return
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._block_s
                if now >= deadline:
                    raise SendTimeout(
                        f"the client's queue stayed full for {self._block_s:g} s"
                    ) from None
                producer.poll(min(0.1, deadline - now))
            except KafkaException as exc:
                raise PublishError(_text(exc)) from exc

    def send(self, topic: str, messages: Sequence[Outgoing]) -> _Reports:
        """Queue ``messages``; their reports arrive with :meth:`flush`."""
        reports = _Reports(len(messages))
        for message in messages:
            self._produce(
                topic,
                message.key,
                message.value,
                message.headers,
                reports.report,
                message.partition,
            )
        return reports

    def send_one(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        """Queue one message and serve the reports that are ready."""

        def report(error: KafkaError | None, _: Any) -> None:
            on_delivery(None if error is None else PublishError(str(error.str())))

        self._produce(topic, key, value, headers, report)
        self._producer.poll(0)

    def flush(self, timeout_s: float | None) -> bool:
        """Wait for every queued message; True when none is pending."""
        try:
            remaining = (
                self._producer.flush() if timeout_s is None else self._producer.flush(timeout_s)
            )
        except SystemError as exc:
            # confluent-kafka raises this when an exception was left pending while
            # it served a delivery report (seen once while the broker was killed).
            # The reports it skipped count as not acknowledged: the batch is retried.
            raise PublishError(f"the client failed while serving delivery reports: {exc}") from exc
        return int(remaining) == 0

    def close(self, timeout_s: float) -> bool:
        """Deliver within ``timeout_s``; then purge the rest, whose reports say they failed."""
        if self.flush(timeout_s):
            return True
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)  # serves the purged messages' reports: each fails
        return False


class _Helper:
    """One daemon thread that runs librdkafka calls without a timeout, waited for with one.

    A daemon thread, not an executor's: a call still blocked when the process
    exits (a close with the broker gone) must not hold up the exit.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any], str] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name="confluent-helper", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        me = threading.current_thread()
        while (item := self._calls.get()) is not None:
            call, future, caller = item
            # Under the caller's name: callbacks the call runs (a close revokes
            # the partitions) log as the caller's, as they would without a helper.
            me.name = caller
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)
            me.name = "confluent-helper"

    def run(self, call: Callable[[], T], timeout_s: float) -> T:
        """Return ``call()``'s result.

        Raises:
            TimeoutError: not done within ``timeout_s`` (it goes on in the background).
        """
        future: Future[T] = Future()
        self._calls.put((call, future, threading.current_thread().name))
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def shutdown(self) -> None:
        """Let the thread end once its current call returns."""
        self._calls.put(None)


class ConfluentConsumer:
    """A librdkafka consumer with explicit commits.

    Raises:
        ClientSettingsError: librdkafka rejected the settings.
    """

    def __init__(self, settings: KafkaSettings, options: ConsumerOptions) -> None:
        self._helper = _Helper()
        self._errors = _ErrorLog()
        self._in_group = options.group_id is not None
        self._contact = True
        # A connection silent this long is taken as lost: the broker would have
        # ended the session by then.
        self._silence_limit_us = options.session_timeout_ms * 1000
        # Statistics are served only while the application polls: none for a
        # session means the loop is stuck, and what they last said is stale.
        self._stats_at = time.monotonic()
        # Per partition not fetched from yet: when the broker was last asked
        # whether it is empty, and the lag that answer gave (0, or unknown).
        self._empty_checked: dict[Partition, float] = {}
        self._empty: dict[Partition, int | None] = {}
        self._consumer = _build(
            _Consumer,
            {
                **client_config(settings),
                # librdkafka needs a group even to read assigned partitions; one
                # without members or commits costs the broker nothing.
                "group.id": options.group_id or f"beatwatch-nogroup-{id(self):x}",
                "enable.auto.commit": options.auto_commit,
                "auto.offset.reset": options.auto_offset_reset,
                "session.timeout.ms": options.session_timeout_ms,
                "heartbeat.interval.ms": max(500, options.session_timeout_ms // 6),
                "max.poll.interval.ms": options.max_poll_interval_ms,
                "fetch.wait.max.ms": options.fetch_max_wait_ms,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
                "queued.max.messages.kbytes": QUEUED_MAX_KBYTES,
                "allow.auto.create.topics": options.allow_auto_create_topics,
                "enable.partition.eof": False,
                # Statistics once a second say whether the group coordinator is up
                # (in_contact); librdkafka has no call that answers it directly.
                "statistics.interval.ms": 1000,
                "stats_cb": self._on_stats,
            },
        )

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        """Join the group on ``topics``; callbacks run inside :meth:`poll`."""

        def assigned(_: Any, partitions: list[_TopicPartition]) -> None:
            if on_assign is not None:
                on_assign([Partition(tp.topic, tp.partition) for tp in partitions])

        def revoked(_: Any, partitions: list[_TopicPartition]) -> None:
            if on_revoke is not None:
                on_revoke([Partition(tp.topic, tp.partition) for tp in partitions])

        # on_lost (the session expired) falls back to on_revoke: the same for us.
        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked)

    def assign(self, partitions: Sequence[Partition], from_beginning: bool) -> None:
        """Read ``partitions`` without a group, from their start or end."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self._consumer.assign([_TopicPartition(p.topic, p.partition, start) for p in partitions])

    def partitions_for(self, topic: str) -> set[int]:
        """Partitions of ``topic``, empty when missing.

        Asks for every topic's metadata: a request naming the topic may make
        the broker create it.
        """
        try:
            metadata = self._consumer.list_topics(timeout=10.0)
        except KafkaException:
            return set()
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        """Up to ``max_records`` records: what has arrived, or the first within ``timeout_ms``."""
        consumer = self._consumer
        messages = consumer.consume(max_records, 0)
        if not messages and timeout_ms > 0:
            first = consumer.poll(timeout_ms / 1000)
            if first is None:
                return []
            messages = [first]
            if max_records > 1:
                messages += consumer.consume(max_records - 1, 0)
        records: list[Record] = []
        for message in messages:
            if message.error() is not None:
                self._on_error(message)
                continue
            records.append(
                ConsumedRecord(
                    message.topic(),  # type: ignore[arg-type]
                    message.partition(),  # type: ignore[arg-type]
                    message.offset(),  # type: ignore[arg-type]
                    message.key(),  # type: ignore[arg-type]
                    message.value(),  # type: ignore[arg-type]
                    message.headers() or (),  # type: ignore[arg-type]
                )
            )
        return records

    def _on_stats(self, text: str) -> None:
        try:
            stats = json.loads(text)
        except ValueError:
            return
        self._contact = contact_in_stats(stats, self._in_group, self._silence_limit_us)
        self._stats_at = time.monotonic()

    def in_contact(self) -> bool:
        """The group coordinator answers (a broker, without a group), per recent statistics."""
        fresh = time.monotonic() - self._stats_at < self._silence_limit_us / 1e6
        return self._contact and fresh

    def _on_error(self, message: _Message) -> None:
        error = message.error()
        assert error is not None
        if error.fatal():
            raise ClientError(str(error.str()))
        self._errors.error(error)

    def commit(self, offsets: Mapping[tuple[str, int], int], timeout_s: float) -> None:
        """Commit ``offsets`` synchronously, waiting at most ``timeout_s``.

        librdkafka's synchronous commit has no timeout; it runs on the helper
        thread and a commit not answered in time counts as failed (offsets are
        cumulative: the next one covers it).
        """
        partitions = [
            _TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ]
        try:
            result = self._helper.run(
                lambda: self._consumer.commit(offsets=partitions, asynchronous=False), timeout_s
            )
        except KafkaException as exc:
            raise CommitError(_text(exc)) from exc
        except (TimeoutError, RuntimeError) as exc:
            raise CommitError(str(exc)) from exc
        for tp in result or ():
            if tp.error is not None:
                raise CommitError(f"{tp.topic}[{tp.partition}]: {tp.error.str()}")

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` at the next poll.

        Raises:
            ClientError: librdkafka refused the seek; the caller must not go on
                as if the records after ``offset`` had been handled.
        """
        try:
            self._consumer.seek(_TopicPartition(partition.topic, partition.partition, offset))
        except KafkaException as exc:
            raise ClientError(
                f"seek {partition.topic}[{partition.partition}]: {_text(exc)}"
            ) from exc

    def lag(self, partition: Partition) -> int | None:
        """Records behind the partition's end, or None while unknown.

        librdkafka knows a partition's end (high watermark) and the position
        only once a fetch has returned records from it. Before that, the
        broker is asked (at most once a second per partition) whether the
        partition is empty: then the lag is 0. Otherwise it stays unknown
        until the first record: tansu's answer for a partition with records
        is not its end (``end_offsets`` is broken there too).
        """
        tp = _TopicPartition(partition.topic, partition.partition)
        consumer = self._consumer
        try:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            position = consumer.position([tp])[0].offset
        except KafkaException:
            return None
        if high >= 0 and position >= 0:
            return max(0, int(high) - int(position))
        now = time.monotonic()
        if now - self._empty_checked.get(partition, -1.0) < 1.0:
            return self._empty.get(partition)
        self._empty_checked[partition] = now
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
        except KafkaException:
            return None
        self._empty[partition] = 0 if low == high else None
        return self._empty[partition]

    def close(self, timeout_s: float) -> None:
        """Leave the group (committing only with auto-commit on), waiting at most ``timeout_s``."""
        try:
            self._helper.run(self._consumer.close, timeout_s)
        except (TimeoutError, KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", _text(exc))
        finally:
            self._helper.shutdown()


class ConfluentAdmin:
    """A librdkafka admin client.

    Raises:
        ClientSettingsError: librdkafka rejected the settings.
        ClientError: the broker did not answer within ``connect_timeout_s``.
    """

    def __init__(self, settings: KafkaSettings, connect_timeout_s: float) -> None:
        self._timeout_s = max(1.0, connect_timeout_s)
        self._admin = _build(AdminClient, client_config(settings))
        self._topics = self._list()  # fails here, like kafka-python's bootstrap, if unreachable

    def _list(self) -> set[str]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise ClientError(_text(exc)) from exc
        return {name for name, topic in metadata.topics.items() if topic.error is None}

    def topics(self) -> set[str]:
        """Names of the existing topics."""
        topics, self._topics = self._topics, set()
        return topics or self._list()

    def create_topics(self, topics: Mapping[str, int], replication_factor: int) -> None:
        """Create ``topics``; one that another process created meanwhile is fine."""
        futures = self._admin.create_topics(
            [NewTopic(name, count, replication_factor) for name, count in topics.items()],
            request_timeout=10.0,
        )
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    continue  # another process won the race
                raise TopicsRefused(_text(exc)) from exc

    def close(self) -> None:
        """Nothing to release: librdkafka closes the handle when it is collected."""


def new_consumer(settings: KafkaSettings, options: ConsumerOptions) -> ConfluentConsumer:
    """The factory's entry point for consumers."""
    return ConfluentConsumer(settings, options)


def new_publisher(settings: KafkaSettings, options: PublisherOptions) -> ConfluentPublisher:
    """The factory's entry point for publishers."""
    return ConfluentPublisher(settings, options)


def new_admin(settings: KafkaSettings, connect_timeout_s: float) -> ConfluentAdmin:
    """The factory's entry point for admin clients."""
    return ConfluentAdmin(settings, connect_timeout_s)
