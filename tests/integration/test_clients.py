"""The client seam against the real broker, once per client library: same behaviour either way."""

from __future__ import annotations

import threading
import time

import pytest

from beatwatch.clients import (
    ALERT_PUBLISHER,
    ConsumerOptions,
    Outgoing,
    Partition,
    PublisherOptions,
    PublishError,
    Record,
    ensure_topics,
    new_consumer,
    new_publisher,
    next_offsets,
)
from beatwatch.kafka import KafkaSettings
from beatwatch.partitioner import CachedKeyPartitioner
from beatwatch.tools.broker import free_port
from tests.support.clients import client_settings


def drain(consumer: object, n: int, timeout_s: float = 60.0) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < n and time.monotonic() < deadline:
        records += consumer.poll(timeout_ms=200, max_records=1000)  # type: ignore[attr-defined]
    return records


@pytest.mark.usefixtures("kafka_client")
def test_keyed_messages_land_where_kafkas_default_partitioner_puts_them_and_come_back_whole(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings, topic = client_settings(kafka_bootstrap), f"{topic_prefix}-keys"
    ensure_topics(settings, {topic: 4})
    publisher = new_publisher(settings, ALERT_PUBLISHER)
    messages = [
        Outgoing(f"p-{i % 37:04d}".encode(), f"v{i}".encode(), [("h", b"x")]) for i in range(500)
    ]
    delivery = publisher.send(topic, messages)
    assert publisher.flush(timeout_s=30)
    delivery.check()
    assert len(delivery) == 500
    consumer = new_consumer(settings, ConsumerOptions(group_id=topic, session_timeout_ms=6000))
    consumer.subscribe([topic])
    records = drain(consumer, 500)
    keys = CachedKeyPartitioner()
    assert len(records) == 500
    for record in records:
        assert record.key is not None
        # The partition Java's (and kafka-python's) default partitioner chooses.
        assert record.partition == keys.for_key(record.key, [0, 1, 2, 3])
        assert list(record.headers) == [("h", b"x")]
    assert sorted(r.value or b"" for r in records) == sorted(m.value or b"" for m in messages)
    consumer.close(timeout_s=5)
    assert publisher.close(timeout_s=5)


@pytest.mark.usefixtures("kafka_client")
def test_commit_seek_lag_and_rebalance_callbacks(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings, topic = client_settings(kafka_bootstrap), f"{topic_prefix}-group"
    ensure_topics(settings, {topic: 2})
    publisher = new_publisher(settings, ALERT_PUBLISHER)
    publisher.send(topic, [Outgoing(f"k{i}".encode(), b"v") for i in range(200)])
    assert publisher.flush(timeout_s=30)
    options = ConsumerOptions(group_id=f"{topic}-g", session_timeout_ms=6000, max_batch=1000)
    assigned: list[Partition] = []
    revoked: list[Partition] = []
    consumer = new_consumer(settings, options)
    consumer.subscribe([topic], on_assign=assigned.extend, on_revoke=revoked.extend)
    records = drain(consumer, 200)
    assert sorted(assigned) == [Partition(topic, 0), Partition(topic, 1)]
    # Rewind one partition: its records come again, the other's do not.
    first = min(r.offset for r in records if r.partition == 0)
    consumer.seek(Partition(topic, 0), first)
    again = drain(consumer, sum(1 for r in records if r.partition == 0), timeout_s=20)
    assert again and {r.partition for r in again} == {0}
    # Commit all but the last 10 records of partition 1; lag is known once fetched.
    offsets = next_offsets(records)
    offsets[(topic, 1)] -= 10
    consumer.commit(offsets, timeout_s=5)
    assert consumer.lag(Partition(topic, 1)) == 0
    consumer.close(timeout_s=5)
    assert sorted(revoked) == sorted(assigned)  # leaving the group revokes everything
    # A new member of the group starts at the committed offsets.
    consumer = new_consumer(settings, options)
    consumer.subscribe([topic])
    rest = drain(consumer, 10, timeout_s=30)
    assert [(r.partition, r.offset) for r in rest] == [
        (1, offset) for offset in range(offsets[(topic, 1)], offsets[(topic, 1)] + 10)
    ]
    consumer.close(timeout_s=5)


@pytest.mark.usefixtures("kafka_client")
def test_a_tail_without_group_reads_from_the_end_and_never_creates_a_topic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings, topic = client_settings(kafka_bootstrap), f"{topic_prefix}-tail"
    consumer = new_consumer(settings, ConsumerOptions(allow_auto_create_topics=False))
    assert consumer.partitions_for(topic) == set()
    ensure_topics(settings, {topic: 1})
    publisher = new_publisher(settings, ALERT_PUBLISHER)
    publisher.send(topic, [Outgoing(b"k", b"old")])
    assert publisher.flush(timeout_s=30)
    assert consumer.partitions_for(topic) == {0}
    consumer.assign([Partition(topic, 0)], from_beginning=False)
    consumer.poll(timeout_ms=500, max_records=10)  # positioned at the end
    publisher.send(topic, [Outgoing(b"k", b"new")])
    assert publisher.flush(timeout_s=30)
    assert [r.value for r in drain(consumer, 1, timeout_s=20)] == [b"new"]
    consumer.close(timeout_s=5)


def test_confluent_with_no_broker_fails_deliveries_and_closes_within_its_timeout() -> None:
    # kafka-python bootstraps when a client is created and fails there (R8, R12).
    pytest.importorskip("confluent_kafka")
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", client="confluent")
    publisher = new_publisher(settings, PublisherOptions(block_s=0.5))
    outcomes: list[BaseException | None] = []
    done = threading.Event()
    started = time.monotonic()
    with pytest.raises(PublishError):
        delivery = publisher.send("nowhere", [Outgoing(b"k", b"v")])
        publisher.flush(timeout_s=0.5)
        delivery.check()

    def delivered(error: BaseException | None) -> None:
        outcomes.append(error)
        done.set()

    publisher.send_one("nowhere", b"k", b"v", None, delivered)
    assert not publisher.close(timeout_s=1.0)
    assert done.wait(5) and isinstance(outcomes[0], BaseException)
    assert time.monotonic() - started < 30  # bounded, not timed: no hang


@pytest.mark.usefixtures("kafka_client")
def test_an_empty_partition_read_from_its_start_has_no_lag(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    # How a state restore knows it has read a changelog partition to its end.
    settings, topic = client_settings(kafka_bootstrap), f"{topic_prefix}-empty"
    ensure_topics(settings, {topic: 1})
    consumer = new_consumer(settings, ConsumerOptions())
    consumer.assign([Partition(topic, 0)], from_beginning=True)
    deadline = time.monotonic() + 20
    while consumer.lag(Partition(topic, 0)) != 0 and time.monotonic() < deadline:
        assert consumer.poll(timeout_ms=100, max_records=10) == []
    assert consumer.lag(Partition(topic, 0)) == 0
    consumer.close(timeout_s=5)
