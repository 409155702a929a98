"""The state changelog on Kafka: rebuild a partition's state by reading its changelog to the end.

The changelog topic (default ``ecg-detector-state``) is compacted: Kafka keeps
the last record per key (stream id), so reading a partition from its start
gives every stream's latest state. Partition ``p`` of the changelog holds the
streams of partition ``p`` of the beats topic: the detector writes each record
to the beats partition's number explicitly, so the changelog needs at least
as many partitions as the beats topic (it is created with the same count).

The client is the project's seam (``beatwatch.clients``); only the few calls
used here are named in :class:`ChangelogReader`, so the logic is tested with a
fake in memory and the real broker in the integration tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from beatwatch.state import Change

STATE_TOPIC = "ecg-detector-state"
# Topic configuration of the changelog: compaction keeps the last record per
# stream; a tombstone is kept a day so a reader that was behind still sees it.
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "delete.retention.ms": "86400000"}
RESTORE_POLL_MS = 100
RESTORE_BATCH = 10_000


class StateRestoreError(Exception):
    """The changelog partition could not be read to its end in time."""


class ChangelogReader(Protocol):
    """What restoring needs of a consumer without a group (``beatwatch.clients.Consumer``)."""

    def assign(self, partitions: Sequence[Any], from_beginning: bool) -> None:
        """Read ``partitions`` from their start."""
        ...

    def poll(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        """Records with ``key`` and ``value``."""
        ...

    def lag(self, partition: Any) -> int | None:
        """Records behind the end; None while unknown."""
        ...


@dataclass(frozen=True)
class ChangelogMessage:
    """A changelog record to publish: the seam's ``Outgoing`` plus its partition."""

    key: bytes | None
    value: bytes | None
    partition: int
    headers: list[tuple[str, bytes]]


def changelog_messages(changes: Sequence[Change]) -> list[ChangelogMessage]:
    """The messages that write ``changes`` (each to its beats partition's number)."""
    return [ChangelogMessage(c.key, c.value, c.partition, []) for c in changes]


def read_partition(
    reader: ChangelogReader,
    partition: Any,
    timeout_s: float,
    clock: Any = time.monotonic,
) -> list[tuple[bytes | None, bytes | None]]:
    """Every ``(key, value)`` of one changelog partition, from its start to its end.

    Args:
        reader: a consumer without a group.
        partition: the seam's ``Partition(topic, number)``.
        timeout_s: longest the whole read may take.
        clock: monotonic seconds (tests pass a fake).

    Raises:
        StateRestoreError: the end was not reached within ``timeout_s``.
    """
    reader.assign([partition], from_beginning=True)
    deadline = clock() + timeout_s
    out: list[tuple[bytes | None, bytes | None]] = []
    while True:
        records = reader.poll(RESTORE_POLL_MS, RESTORE_BATCH)
        out.extend((r.key, r.value) for r in records)
        # The end is known once a fetch answered (its high watermark).
        if reader.lag(partition) == 0:
            return out
        if clock() >= deadline:
            raise StateRestoreError(
                f"changelog partition {partition[1]} not read to its end within {timeout_s:g} s "
                f"({len(out)} records so far)"
            )
