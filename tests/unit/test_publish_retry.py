"""A batch whose alerts cannot be published is rewound and polled again, never committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from beatwatch.kafka import KafkaSettings
from beatwatch.wire import Beat, encode
from detector.service import Detector, DetectorSettings
from tests.unit.test_batch import FakeRecord

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg5000"


class UnreachableProducer:
    """``partitions_for`` waits for metadata that never comes, as kafka-python's does."""

    def partitions_for(self, topic: str) -> set[int]:
        raise KafkaTimeoutError(f"Failed to update metadata for {topic}")

    def send(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("nothing may be sent without the topic's partitions")

    def flush(self) -> None:
        pass


class RecordingConsumer:
    """Hands out one batch, then records what the detector does with it."""

    def __init__(self, records: list[FakeRecord]) -> None:
        self.records = records
        self.commits: list[Any] = []
        self.seeks: dict[TopicPartition, int] = {}

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[FakeRecord]]:
        polled: dict[TopicPartition, list[FakeRecord]] = {}
        for record in self.records:
            polled.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return polled

    def commit(self, offsets: Any) -> None:
        self.commits.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    def highwater(self, tp: TopicPartition) -> None:
        return None


def test_a_metadata_timeout_on_send_rewinds_the_batch_instead_of_escaping() -> None:
    registry = CollectorRegistry()
    settings = DetectorSettings(
        kafka=KafkaSettings(), model_dir=MODEL_DIR, metrics_port=-1, publish_retry_backoff_s=0
    )
    detector = Detector(settings, registry)
    # A flat line reconstructs badly: every beat is over threshold, so every one alerts.
    records = []
    for offset in (7, 8, 9):
        key, value, headers = encode(
            Beat(stream="p-0001", seq=offset, ts_ms=1, samples=np.full(140, 5.0, np.float32)),
            "json",
        )
        records.append(FakeRecord("ecg-beats", offset % 2, offset, key, value, headers or []))
    consumer = RecordingConsumer(records)
    detector.consumer, detector.producer = consumer, UnreachableProducer()
    detector.assignment.partitions.update(
        {TopicPartition("ecg-beats", 0), TopicPartition("ecg-beats", 1)}
    )

    handled = detector.run_once()

    assert handled == 3
    assert consumer.commits == []
    # Each partition goes back to its first offset of the batch.
    assert consumer.seeks == {TopicPartition("ecg-beats", 1): 7, TopicPartition("ecg-beats", 0): 8}
    assert registry.get_sample_value("beatwatch_broker_errors_total") == 1
    assert registry.get_sample_value("beatwatch_alerts_total") in (None, 0)
