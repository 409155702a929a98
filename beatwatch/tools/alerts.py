"""``beatwatch alerts``: tail the alerts topic, as readable lines or JSON lines.

Without ``--group-id`` it reads every partition with no consumer group (nothing
is committed, several tails see the same alerts); with one, it joins that
group like any subscribing service. Repeats of an ``alert_id`` (at-least-once
delivery) are dropped unless ``--keep-duplicates``.

It waits for the broker (at most ``CONNECT_TIMEOUT_S``) and for the topic to
exist, so it can be started before the detector that creates the topic; it
never creates the topic itself. A stop signal ends either wait promptly.
A message that is not an alert (or, with ``--incidents``, not an incident
event) is skipped with a warning: a bad message does not stop the tail.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar, cast

from beatwatch.alert import Alert, AlertFormatError, decode_alert
from beatwatch.clients import (
    ClientError,
    Consumer,
    ConsumerOptions,
    Partition,
    new_consumer,
)
from beatwatch.errors import ConfigError
from beatwatch.incident import (
    INCIDENTS_TOPIC,
    IncidentEvent,
    IncidentFormatError,
    decode_incident,
    describe,
)
from beatwatch.kafka import (
    ALERTS_TOPIC,
    FETCH_MAX_WAIT_MS,
    KafkaSettings,
    add_kafka_options,
    kafka_settings_from_args,
    wait_for_broker,
)
from beatwatch.settings import add_flag, add_option, non_negative_float, non_negative_int
from beatwatch.signals import stop_on_signals

log = logging.getLogger(__name__)

# How long to wait for an unreachable broker before giving up with one line
# (``--idle-timeout-s`` shortens it).
CONNECT_TIMEOUT_S = 30.0
# Longest a stopping tail waits to leave its group.
CLOSE_TIMEOUT_S = 3.0
# How often to ask the broker again whether a missing topic exists yet.
TOPIC_RETRY_S = 0.5

Message = TypeVar("Message")


class Deduplicator:
    """Remembers the last ``capacity`` alert ids and says whether one is new."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def is_new(self, alert_id: str) -> bool:
        """True the first time ``alert_id`` is seen (within the window)."""
        if alert_id in self._seen:
            return False
        self._seen[alert_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


def format_alert(alert: Alert) -> str:
    """One readable line for a terminal."""
    when = time.strftime("%H:%M:%S", time.localtime(alert.ts_ms / 1000))
    p_value = f" p={alert.p_value:.3g}" if alert.p_value is not None else ""
    return (
        f"{when} ALERT {alert.stream} beat {alert.seq}: score {alert.score:.4g} "
        f"> {alert.threshold:.4g}{p_value} - {alert.explanation.summary}"
    )


def decode_incident_event(value: bytes) -> dict[str, Any]:
    """An incident event as a plain dict (see :func:`beatwatch.incident.decode_incident`)."""
    return dict(decode_incident(value))


def format_incident(event: dict[str, Any]) -> str:
    """One readable line for an incident event."""
    when = time.strftime("%H:%M:%S", time.localtime(event["event_ts_ms"] / 1000))
    return f"{when} {describe(cast(IncidentEvent, event))}"


def iter_alerts(
    settings: KafkaSettings,
    topic: str,
    stop: threading.Event,
    *,
    group_id: str | None = None,
    from_beginning: bool = False,
    idle_timeout_s: float = 0.0,
) -> Iterator[Alert]:
    """Yield alerts from ``topic`` until ``stop`` (or ``idle_timeout_s`` without any).

    See :func:`iter_messages`; a message that is not an alert is skipped with a warning.
    """
    return iter_messages(
        settings,
        topic,
        stop,
        decode_alert,
        group_id=group_id,
        from_beginning=from_beginning,
        idle_timeout_s=idle_timeout_s,
    )


def iter_messages(
    settings: KafkaSettings,
    topic: str,
    stop: threading.Event,
    decode: Callable[[bytes], Message],
    *,
    group_id: str | None = None,
    from_beginning: bool = False,
    idle_timeout_s: float = 0.0,
) -> Iterator[Message]:
    """Yield the messages of ``topic`` as ``decode`` reads them, until ``stop`` or idle.

    ``decode`` parses each message value (:func:`~beatwatch.alert.decode_alert`,
    :func:`decode_incident_event`); a value it refuses with
    :class:`~beatwatch.alert.AlertFormatError` or
    :class:`~beatwatch.incident.IncidentFormatError` is skipped with a warning
    naming its partition and offset.

    The idle clock starts at once, so ``idle_timeout_s`` also bounds the waits
    for the broker and for the topic; with 0 the topic is awaited until ``stop``.

    Raises:
        ConfigError: the broker was not reachable within ``CONNECT_TIMEOUT_S``
            (or ``idle_timeout_s``), or ``topic`` did not exist within ``idle_timeout_s``.
    """
    started = time.monotonic()
    connect_timeout_s = min(CONNECT_TIMEOUT_S, idle_timeout_s or CONNECT_TIMEOUT_S)
    consumer = _connect(
        settings,
        stop,
        ConsumerOptions(
            group_id=group_id,
            auto_commit=group_id is not None,
            auto_offset_reset="earliest" if from_beginning else "latest",
            session_timeout_ms=10_000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            connect_timeout_s=connect_timeout_s,
            # Waiting for the topic before subscribing is what prevents its creation.
            allow_auto_create_topics=False,
        ),
    )
    if consumer is None:
        return  # stopped while waiting for the broker
    try:
        deadline = started + idle_timeout_s if idle_timeout_s else None
        partitions = _wait_for_topic(consumer, settings, topic, stop, deadline)
        if not partitions:
            return  # stopped while waiting for the topic
        if group_id is None:
            consumer.assign([Partition(topic, p) for p in sorted(partitions)], from_beginning)
        else:
            consumer.subscribe([topic])
        last_seen = started
        while not stop.is_set():
            for record in consumer.poll(timeout_ms=200, max_records=500):
                last_seen = time.monotonic()
                try:
                    message = decode(record.value or b"")
                except (AlertFormatError, IncidentFormatError) as exc:
                    log.warning(
                        "skipping partition %d offset %d of %s: %s",
                        record.partition,
                        record.offset,
                        topic,
                        exc,
                    )
                    continue
                yield message
            if idle_timeout_s and time.monotonic() - last_seen > idle_timeout_s:
                return
    finally:
        consumer.close(timeout_s=CLOSE_TIMEOUT_S)


def _connect(
    settings: KafkaSettings, stop: threading.Event, options: ConsumerOptions
) -> Consumer | None:
    """Create a consumer once the broker listens, waiting until ``stop`` or ``connect_timeout_s``.

    Returns:
        The consumer, or None when ``stop`` was set first.

    Raises:
        ConfigError: the broker did not answer within ``options.connect_timeout_s``,
            or the client rejected the settings (e.g. a port that is not a number).
    """
    timeout_s = options.connect_timeout_s
    # Probe first: a kafka-python client that fails to bootstrap leaks a thread and sockets.
    if not wait_for_broker(settings, timeout_s, stop):
        if stop.is_set():
            return None
        raise ConfigError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: no answer within {timeout_s:g} s"
        )
    try:
        return new_consumer(settings, options)
    except ClientError as exc:
        raise ConfigError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None


def _wait_for_topic(
    consumer: Consumer,
    settings: KafkaSettings,
    topic: str,
    stop: threading.Event,
    deadline: float | None,
) -> set[int]:
    """Return the partitions of ``topic`` once it exists; empty when ``stop`` came first.

    The consumer's ``partitions_for`` never makes the broker auto-create the topic.

    Raises:
        ConfigError: ``topic`` still did not exist at ``deadline`` (None = no deadline).
    """
    waiting_logged = False
    while not stop.is_set():
        partitions = consumer.partitions_for(topic)
        if partitions:
            if waiting_logged:
                log.info("topic %s exists now; reading it", topic)
            return partitions
        if deadline is not None and time.monotonic() >= deadline:
            raise ConfigError(
                f"topic {topic} does not exist on {settings.bootstrap_servers} "
                "(check --alerts-topic, or start the detector, which creates it)"
            )
        if not waiting_logged:
            log.info("topic %s does not exist yet; waiting for it to be created", topic)
            waiting_logged = True
        stop.wait(TOPIC_RETRY_S)
    return set()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch alerts``.

    Options of this command alone read ``BEATWATCH_ALERTS_*`` variables, so that
    they never pick up another command's (``BEATWATCH_LIMIT`` counts beats for
    ``produce``); the topic and the Kafka options share theirs with the detector.
    """
    add_kafka_options(parser)
    add_option(
        parser,
        "--alerts-topic",
        default=ALERTS_TOPIC,
        help="topic to read alerts from; a missing one is waited for (never created), "
        "for at most --idle-timeout-s if given",
    )
    add_flag(
        parser,
        "--incidents",
        env="BEATWATCH_ALERTS_INCIDENTS",
        help="tail incident events (open, update, close) instead of per-beat alerts; "
        "repeats of an (incident_id, event_seq) are dropped",
    )
    add_option(
        parser,
        "--incidents-topic",
        default=INCIDENTS_TOPIC,
        help="topic to read incident events from, with --incidents",
    )
    add_option(
        parser,
        "--group-id",
        default=None,
        help="join this consumer group (optional)",
        env="BEATWATCH_ALERTS_GROUP_ID",
    )
    add_flag(
        parser,
        "--from-beginning",
        env="BEATWATCH_ALERTS_FROM_BEGINNING",
        help="start at the oldest alert, not the next one",
    )
    add_flag(
        parser,
        "--json",
        env="BEATWATCH_ALERTS_JSON",
        help="print JSON lines instead of readable lines",
    )
    add_flag(
        parser,
        "--keep-duplicates",
        env="BEATWATCH_ALERTS_KEEP_DUPLICATES",
        help="print repeats of an alert_id too",
    )
    add_option(
        parser,
        "--limit",
        default=0,
        type=non_negative_int,
        env="BEATWATCH_ALERTS_LIMIT",
        help="stop after this many alerts (0 = no limit)",
    )
    add_option(
        parser,
        "--idle-timeout-s",
        default=0.0,
        type=non_negative_float,
        env="BEATWATCH_ALERTS_IDLE_TIMEOUT_S",
        help="stop after this long without alerts (0 = never); counted from the start, "
        "so it also bounds the waits for the broker and for a missing topic, "
        "which are then an error",
    )


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print alerts until Ctrl-C, ``--limit`` or ``--idle-timeout-s``."""
    import orjson

    stop = threading.Event()
    stop_on_signals(stop)
    dedup = Deduplicator()
    incidents = bool(getattr(args, "incidents", False))

    # Each message as (identity for dropping repeats, JSON object, readable line).
    def incident_view(value: bytes) -> tuple[str, dict[str, Any], Callable[[], str]]:
        event = decode_incident_event(value)
        return f"{event['incident_id']}#{event['event_seq']}", event, lambda: format_incident(event)

    def alert_view(value: bytes) -> tuple[str, dict[str, Any], Callable[[], str]]:
        alert = decode_alert(value)
        return alert.alert_id, alert.to_json(), lambda: format_alert(alert)

    printed = 0
    for identity, body, readable in iter_messages(
        kafka_settings_from_args(args),
        args.incidents_topic if incidents else args.alerts_topic,
        stop,
        incident_view if incidents else alert_view,
        group_id=args.group_id,
        from_beginning=args.from_beginning,
        idle_timeout_s=args.idle_timeout_s,
    ):
        if not args.keep_duplicates and not dedup.is_new(identity):
            continue
        print(orjson.dumps(body).decode() if args.json else readable(), file=out, flush=True)
        printed += 1
        if args.limit and printed >= args.limit:
            break
    return 0
