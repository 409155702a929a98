"""The partitions a detector holds, kept by the consumer's rebalance callbacks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from beatwatch.clients import Partition
from beatwatch.metrics import DetectorMetrics
from detector.steps import BatchStep

log = logging.getLogger(__name__)


class Assignment:
    """Partitions currently assigned; updated by the client's rebalance callbacks."""

    def __init__(self, metrics: DetectorMetrics, steps: list[BatchStep]) -> None:
        self.partitions: set[Partition] = set()
        self._metrics = metrics
        self._steps = steps

    def on_revoked(self, revoked: list[Partition]) -> None:
        """The consumer's revoke callback: the steps first, then the partitions are let go."""
        # Runs inside poll(): no commit here (kafka-python raises). Nothing is
        # pending anyway: every batch is committed before the next poll.
        for step in self._steps:
            step.on_revoked(revoked)
        for tp in revoked:
            self.partitions.discard(tp)
            self._forget_lag(tp.partition)
        self._publish_state()
        log.info("partitions revoked: %s", _names(revoked))

    def on_assigned(self, assigned: list[Partition]) -> None:
        """The consumer's assign callback: the partitions are held, then the steps hear of them."""
        self.partitions.update(assigned)
        self._publish_state()
        for step in self._steps:
            step.on_assigned(assigned)
        log.info("partitions assigned: %s", _names(assigned))

    def _publish_state(self) -> None:
        self._metrics.assigned_partitions.set(len(self.partitions))

    def clear(self) -> None:
        """Forget every partition (the consumer closed)."""
        self.partitions.clear()
        self._publish_state()

    def _forget_lag(self, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self._metrics.consumer_lag.remove(str(partition))


def _names(partitions: Iterable[Partition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "none"
