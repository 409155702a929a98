"""Helpers for pipeline integration tests: run a real detector, produce, read topics back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from beatwatch.clients import ensure_topics
from beatwatch.kafka import KafkaSettings
from beatwatch.tools import promtext
from beatwatch.tools.broker import free_port
from detector.runner import run
from detector.settings import DetectorSettings
from tests.support.clients import client_settings

# Re-exported: the pipeline and fault tests import them from here.
from tests.support.paths import MODEL_DIR as MODEL_DIR
from tests.support.paths import REPO_ROOT as REPO_ROOT
from tests.support.waiting import wait_for as wait_for


@dataclass(frozen=True)
class Topics:
    beats: str
    alerts: str
    dlq: str

    @classmethod
    def named(cls, prefix: str) -> Topics:
        return cls(f"{prefix}-beats", f"{prefix}-alerts", f"{prefix}-dlq")


def create_topics(bootstrap: str, topics: Topics, partitions: int = 4) -> KafkaSettings:
    settings = client_settings(bootstrap)
    ensure_topics(settings, {topics.beats: partitions, topics.alerts: partitions, topics.dlq: 1})
    return settings


def detector_settings(
    bootstrap: str, topics: Topics, group: str, **overrides: Any
) -> DetectorSettings:
    values: dict[str, Any] = {
        "kafka": client_settings(bootstrap),
        "model_dir": MODEL_DIR,
        "beats_topic": topics.beats,
        "alerts_topic": topics.alerts,
        "dlq_topic": topics.dlq,
        "group_id": group,
        "session_timeout_ms": 6000,
        "metrics_port": free_port(),
        "metrics_host": "127.0.0.1",
    }
    values.update(overrides)
    return DetectorSettings(**values)


@dataclass
class RunningDetector:
    stop: threading.Event
    thread: threading.Thread
    registry: CollectorRegistry

    def value(self, name: str, **labels: str) -> float:
        if not self.thread.is_alive() and not self.stop.is_set():
            raise AssertionError("the detector stopped on its own (see the log above)")
        return float(self.registry.get_sample_value(name, labels) or 0.0)


@contextmanager
def running_detector(settings: DetectorSettings) -> Iterator[RunningDetector]:
    """A detector in a thread, as ``beatwatch detect`` runs it; stopped on exit."""
    stop = threading.Event()
    registry = CollectorRegistry()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(settings, stop, registry)
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    running = RunningDetector(stop, thread, registry)
    try:
        yield running
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors


def read_topic(
    settings: KafkaSettings, topic: str, expected: int, timeout_s: float = 30
) -> list[Any]:
    """Read ``topic`` from the beginning until ``expected`` records (then 1 s more for extras)."""
    consumer = KafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    partitions = None
    deadline = time.monotonic() + timeout_s
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        time.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[Any] = []
    extra_until = None
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        if len(records) >= expected:
            extra_until = extra_until or time.monotonic() + 1.0
            if time.monotonic() > extra_until:
                break
    consumer.close()
    return records


def scrape_port(port: int) -> promtext.Samples:
    return promtext.scrape(f"http://127.0.0.1:{port}/metrics")
