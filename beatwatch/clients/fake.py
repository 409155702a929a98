"""In-memory stand-ins for the seam's consumer and publisher, for pure tests of the loop.

They record what the loop does (commits, seeks, sends) and fail on request;
they speak no protocol. Tests of Kafka behaviour use a real broker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from beatwatch.clients.client import (
    CommitError,
    DeliveryCallback,
    Headers,
    Outgoing,
    Partition,
    PartitionsCallback,
    PublishError,
    Record,
)


@dataclass
class FakeDelivery:
    """The acknowledgements of one fake send: all good unless ``error`` is set."""

    count: int
    error: str | None = None

    def __len__(self) -> int:
        return self.count

    def check(self) -> None:
        """Raise ``PublishError`` when the send was told to fail."""
        if self.error is not None:
            raise PublishError(self.error)


@dataclass
class FakePublisher:
    """Records every message; ``fail_send`` / ``fail_delivery`` make sends fail.

    Attributes:
        sent: ``(topic, message)`` in send order.
        fail_send: when set, ``send`` raises ``PublishError`` with it (no metadata).
        fail_delivery: when set, deliveries fail with it at ``check``.
        flushes: how many times ``flush`` was called.
    """

    sent: list[tuple[str, Outgoing]] = field(default_factory=list)
    fail_send: str | None = None
    fail_delivery: str | None = None
    flushes: int = 0
    closed: bool = False

    def send(self, topic: str, messages: Sequence[Outgoing]) -> FakeDelivery:
        """Record ``messages`` (or raise ``PublishError`` when ``fail_send`` is set)."""
        if messages and self.fail_send is not None:
            raise PublishError(self.fail_send)
        self.sent.extend((topic, message) for message in messages)
        return FakeDelivery(len(messages), self.fail_delivery)

    def send_one(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        """Record one message and report its delivery at once."""
        self.sent.append((topic, Outgoing(key, value, list(headers or []))))
        on_delivery(None if self.fail_delivery is None else PublishError(self.fail_delivery))

    def flush(self, timeout_s: float | None) -> bool:
        """Nothing is ever pending."""
        self.flushes += 1
        return True

    def close(self, timeout_s: float) -> bool:
        """Mark closed."""
        self.closed = True
        return True


@dataclass
class FakeConsumer:
    """Hands out ``batches`` one per poll, then empty polls; records commits and seeks.

    Attributes:
        batches: what successive polls return.
        commits: every ``commit``'s offsets.
        seeks: the latest ``seek`` per partition.
        fail_commit: when set, ``commit`` raises ``CommitError`` with it.
        lags: what ``lag`` reports per partition.
        contact: what ``in_contact`` reports.
    """

    batches: list[list[Record]] = field(default_factory=list)
    commits: list[dict[tuple[str, int], int]] = field(default_factory=list)
    seeks: dict[Partition, int] = field(default_factory=dict)
    fail_commit: str | None = None
    lags: dict[Partition, int] = field(default_factory=dict)
    contact: bool = True
    on_assign: PartitionsCallback | None = None
    on_revoke: PartitionsCallback | None = None
    closed: bool = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        """Keep the callbacks; :meth:`rebalance` calls them."""
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def rebalance(self, revoked: list[Partition], assigned: list[Partition]) -> None:
        """Call the callbacks as a client does inside a poll: revoked first, then assigned."""
        if revoked and self.on_revoke is not None:
            self.on_revoke(revoked)
        if assigned and self.on_assign is not None:
            self.on_assign(assigned)

    def assign(self, partitions: Sequence[Partition], from_beginning: bool) -> None:
        """Nothing to do."""

    def partitions_for(self, topic: str) -> set[int]:
        """Partitions of the records handed out so far and still to come."""
        return {r.partition for batch in self.batches for r in batch if r.topic == topic}

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        """The next batch, or nothing."""
        return list(self.batches.pop(0)) if self.batches else []

    def commit(self, offsets: Mapping[tuple[str, int], int], timeout_s: float) -> None:
        """Record ``offsets`` (or raise ``CommitError`` when ``fail_commit`` is set)."""
        if self.fail_commit is not None:
            raise CommitError(self.fail_commit)
        self.commits.append(dict(offsets))

    def seek(self, partition: Partition, offset: int) -> None:
        """Record the seek."""
        self.seeks[partition] = offset

    def lag(self, partition: Partition) -> int | None:
        """From ``lags``."""
        return self.lags.get(partition)

    def in_contact(self) -> bool:
        """From ``contact``."""
        return self.contact

    def close(self, timeout_s: float) -> None:
        """Mark closed."""
        self.closed = True
