"""The detector loop over the client seam, with fakes: publish failures rewind, steps run in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from beatwatch.clients import ConsumedRecord, Outgoing, Partition, Record
from beatwatch.clients.fake import FakeConsumer, FakePublisher
from beatwatch.kafka import KafkaSettings
from beatwatch.wire import Beat, encode
from detector.batch import BatchOutcome
from detector.service import Detector, DetectorSettings
from detector.steps import BatchStep

# The detector loads the shipped model (TensorFlow, whose import runs `uname -p`).
pytestmark = [pytest.mark.tensorflow, pytest.mark.subprocess]

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg5000"
P0, P1 = Partition("ecg-beats", 0), Partition("ecg-beats", 1)


def alerting_records(offsets: Sequence[int]) -> list[Record]:
    """Beats that all alert (a flat line reconstructs badly), on partitions 0 and 1."""
    records: list[Record] = []
    for offset in offsets:
        key, value, headers = encode(
            Beat(stream="p-0001", seq=offset, ts_ms=1, samples=np.full(140, 5.0, np.float32)),
            "json",
        )
        records.append(ConsumedRecord("ecg-beats", offset % 2, offset, key, value, headers or []))
    return records


@pytest.fixture(scope="module")
def settings() -> DetectorSettings:
    # No state step: these tests count the loop's own messages (tests/unit/test_stream_state.py
    # covers the step with fakes).
    return DetectorSettings(
        kafka=KafkaSettings(),
        model_dir=MODEL_DIR,
        metrics_port=-1,
        publish_retry_backoff_s=0,
        incidents=False,
    )


def connected(
    settings: DetectorSettings,
    registry: CollectorRegistry,
    consumer: FakeConsumer,
    publisher: FakePublisher,
) -> Detector:
    detector = Detector(settings, registry)
    detector.consumer, detector.producer = consumer, publisher
    consumer.subscribe(
        [settings.beats_topic],
        on_assign=detector.assignment.on_assigned,
        on_revoke=detector.assignment.on_revoked,
    )
    consumer.rebalance([], [P0, P1])
    return detector


def test_a_metadata_timeout_on_send_rewinds_the_batch_instead_of_escaping(
    settings: DetectorSettings,
) -> None:
    registry = CollectorRegistry()
    consumer = FakeConsumer(batches=[alerting_records([7, 8, 9])])
    # As kafka-python's partitions_for when the topic's metadata never comes.
    publisher = FakePublisher(fail_send="Failed to update metadata for ecg-alerts")
    detector = connected(settings, registry, consumer, publisher)

    handled = detector.run_once()

    assert handled == 3
    assert consumer.commits == []
    # Each partition goes back to its first offset of the batch.
    assert consumer.seeks == {P1: 7, P0: 8}
    assert registry.get_sample_value("beatwatch_broker_errors_total") == 1
    assert registry.get_sample_value("beatwatch_alerts_total") in (None, 0)


def test_a_failed_delivery_is_never_committed(settings: DetectorSettings) -> None:
    registry = CollectorRegistry()
    consumer = FakeConsumer(batches=[alerting_records([4, 5])])
    publisher = FakePublisher(fail_delivery="NotEnoughReplicas")
    detector = connected(settings, registry, consumer, publisher)

    detector.run_once()

    assert consumer.commits == []
    assert consumer.seeks == {P0: 4, P1: 5}


def test_a_revoked_partition_is_not_rewound(settings: DetectorSettings) -> None:
    consumer = FakeConsumer(batches=[alerting_records([7, 8])])
    detector = connected(settings, CollectorRegistry(), consumer, FakePublisher(fail_send="x"))
    consumer.rebalance([P1], [])

    detector.run_once()

    assert consumer.seeks == {P0: 8}


class RecordingStep(BatchStep):
    """Notes every hook call; adds one message per batch."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_poll(self) -> None:
        self.calls.append("before_poll")

    def on_batch(
        self, records: Sequence[Record], outcome: BatchOutcome
    ) -> Mapping[str, Sequence[Outgoing]]:
        self.calls.append(f"on_batch {len(records)}")
        return {"ecg-incidents": [Outgoing(b"p-0001", b"{}")]}

    def after_commit(self, outcome: BatchOutcome, committed: bool) -> None:
        self.calls.append(f"after_commit {committed}")

    def on_assigned(self, partitions: list[Partition]) -> None:
        self.calls.append(f"assigned {sorted(p.partition for p in partitions)}")

    def on_revoked(self, partitions: list[Partition]) -> None:
        self.calls.append(f"revoked {sorted(p.partition for p in partitions)}")


def test_steps_see_each_batch_publish_with_it_and_hear_of_commits_and_rebalances(
    settings: DetectorSettings,
) -> None:
    step = RecordingStep()
    consumer, publisher = FakeConsumer(batches=[alerting_records([7, 8])]), FakePublisher()
    detector = Detector(settings, CollectorRegistry())
    detector.add_step(step)
    detector.consumer, detector.producer = consumer, publisher
    consumer.subscribe(
        ["ecg-beats"],
        on_assign=detector.assignment.on_assigned,
        on_revoke=detector.assignment.on_revoked,
    )
    consumer.rebalance([], [P0, P1])

    detector.run_once()
    consumer.rebalance([P1], [])

    assert step.calls == [
        "assigned [0, 1]",
        "before_poll",
        "on_batch 2",
        "after_commit True",
        "revoked [1]",
    ]
    assert [topic for topic, _ in publisher.sent] == ["ecg-alerts", "ecg-alerts", "ecg-incidents"]
    assert consumer.commits == [{("ecg-beats", 1): 8, ("ecg-beats", 0): 9}]
    assert detector.assignment.partitions == {P0}
