"""``beatwatch alerts``: tail the alerts topic, as readable lines or JSON lines.

Without ``--group-id`` it reads every partition with no consumer group (nothing
is committed, several tails see the same alerts); with one, it joins that
group like any subscribing service. Repeats of an ``alert_id`` (at-least-once
delivery) are dropped unless ``--keep-duplicates``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from beatwatch.alert import decode_alert
from beatwatch.kafka import (
    ALERTS_TOPIC,
    FETCH_MAX_WAIT_MS,
    KafkaSettings,
    add_kafka_options,
    kafka_settings_from_args,
)
from beatwatch.settings import add_flag, add_option, non_negative_float, non_negative_int
from beatwatch.signals import stop_on_signals


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


def format_alert(alert: dict[str, Any]) -> str:
    """One readable line for a terminal."""
    when = time.strftime("%H:%M:%S", time.localtime(alert["ts_ms"] / 1000))
    p_value = f" p={alert['p_value']:.3g}" if alert.get("p_value") is not None else ""
    return (
        f"{when} ALERT {alert['stream']} beat {alert['seq']}: score {alert['score']:.4g} "
        f"> {alert['threshold']:.4g}{p_value} - {alert['explanation']['summary']}"
    )


def iter_alerts(
    settings: KafkaSettings,
    topic: str,
    stop: threading.Event,
    *,
    group_id: str | None = None,
    from_beginning: bool = False,
    idle_timeout_s: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Yield alerts from ``topic`` until ``stop`` (or ``idle_timeout_s`` without any)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.client_kwargs(),
        group_id=group_id,
        enable_auto_commit=group_id is not None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    try:
        if group_id is None:
            partitions = None
            while not partitions and not stop.is_set():
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    stop.wait(0.5)
            tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
            consumer.assign(tps)
            if from_beginning:
                consumer.seek_to_beginning(*tps)
            else:
                consumer.seek_to_end(*tps)
        else:
            consumer.subscribe([topic])
        last_seen = time.monotonic()
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                for record in records:
                    last_seen = time.monotonic()
                    yield decode_alert(record.value)
            if idle_timeout_s and time.monotonic() - last_seen > idle_timeout_s:
                return
    finally:
        consumer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch alerts``."""
    add_kafka_options(parser)
    add_option(parser, "--alerts-topic", default=ALERTS_TOPIC, help="topic to read alerts from")
    add_option(parser, "--group-id", default=None, help="join this consumer group (optional)",
               env="BEATWATCH_ALERTS_GROUP_ID")  # fmt: skip
    add_flag(parser, "--from-beginning", help="start at the oldest alert, not the next one")
    add_flag(parser, "--json", help="print JSON lines instead of readable lines")
    add_flag(parser, "--keep-duplicates", help="print repeats of an alert_id too")
    add_option(parser, "--limit", default=0, type=non_negative_int,
               help="stop after this many alerts (0 = no limit)")  # fmt: skip
    add_option(parser, "--idle-timeout-s", default=0.0, type=non_negative_float,
               help="stop after this long without alerts (0 = never)")  # fmt: skip


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print alerts until Ctrl-C, ``--limit`` or ``--idle-timeout-s``."""
    import orjson

    stop = threading.Event()
    stop_on_signals(stop)
    dedup = Deduplicator()
    render: Callable[[dict[str, Any]], str] = (
        (lambda alert: orjson.dumps(alert).decode()) if args.json else format_alert
    )
    printed = 0
    for alert in iter_alerts(
        kafka_settings_from_args(args),
        args.alerts_topic,
        stop,
        group_id=args.group_id,
        from_beginning=args.from_beginning,
        idle_timeout_s=args.idle_timeout_s,
    ):
        if not args.keep_duplicates and not dedup.is_new(alert["alert_id"]):
            continue
        print(render(alert), file=out, flush=True)
        printed += 1
        if args.limit and printed >= args.limit:
            break
    return 0
