"""The cached key partitioner (and the kafka-python adapter's) choose what kafka-python's default does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from beatwatch.clients.kafka_python import _KeyPartitioner
from beatwatch.partitioner import CachedKeyPartitioner


class _Cluster:
    """The metadata calls the partitioners make."""

    def __init__(self, partitions: set[int]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@given(
    keys=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=30),
    partitions=st.sets(st.integers(0, 63), min_size=1, max_size=12),
)
def test_partition_and_for_key_match_the_default_partitioner(
    keys: list[bytes], partitions: set[int]
) -> None:
    cluster = _Cluster(partitions)
    cached = CachedKeyPartitioner()
    adapter = _KeyPartitioner(cached)
    for key in keys + keys:  # the second pass is served from the cache
        expected = DefaultPartitioner().partition("t", key, key, b"v", b"v", cluster)
        assert adapter.partition("t", key, key, b"v", b"v", cluster) == expected
        assert cached.for_key(key, sorted(partitions)) == expected


def test_unknown_topic_is_refused() -> None:
    class _NoTopic(_Cluster):
        def partitions_for_topic(self, topic: str) -> None:  # type: ignore[override]
            return None

    with pytest.raises(ValueError, match="not found"):
        _KeyPartitioner(CachedKeyPartitioner()).partition(
            "t", b"k", b"k", None, None, _NoTopic({0})
        )
