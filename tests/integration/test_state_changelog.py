"""The state changelog on the real broker, once per client library.

Records sent with an explicit partition land there whatever their key hashes
to; reading a partition to its end returns all of them (and nothing of the
other partitions); an empty partition reads as empty, not as a timeout; a
store rebuilt from it equals the store that wrote it.
"""

from __future__ import annotations

import pytest

from beatwatch.changelog import read_partition
from beatwatch.clients import (
    ALERT_PUBLISHER,
    ConsumerOptions,
    Outgoing,
    Partition,
    ensure_topics,
    new_consumer,
    new_publisher,
)
from beatwatch.state import StateStore
from tests.support.clients import client_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("kafka_client")]


def test_changelog_written_per_partition_rebuilds_each_partition_exactly(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings, topic = client_settings(kafka_bootstrap), f"{topic_prefix}-state"
    ensure_topics(settings, {topic: 4})
    store = StateStore()
    for partition in (0, 1, 2):
        store.assign(partition, [])
    # 300 streams on partitions 0-2 (not where murmur2 would put them), two writes each.
    for round_ in range(2):
        for i in range(300):
            record = store.accept(i % 3, f"p-{i:04d}", round_)
            assert record is not None
            record["incident"] = {"round": round_, "n": i}
        publisher = new_publisher(settings, ALERT_PUBLISHER)
        try:
            changes = store.changes()
            delivery = publisher.send(
                topic, [Outgoing(c.key, c.value, partition=c.partition) for c in changes]
            )
            assert publisher.flush(30)
            delivery.check()
        finally:
            publisher.close(5)
    reader = new_consumer(settings, ConsumerOptions(group_id=None))
    try:
        for partition in (0, 1, 2, 3):
            records = read_partition(reader, Partition(topic, partition), timeout_s=30)
            rebuilt = StateStore()
            outcome = rebuilt.assign(partition, records)
            expected = dict(store.items(partition)) if partition < 3 else {}
            assert dict(rebuilt.items(partition)) == expected
            assert outcome.records == 2 * len(expected) and outcome.skipped == 0
    finally:
        reader.close(5)
