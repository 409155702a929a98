"""The detector loop's extension point: a :class:`BatchStep` sees every batch and rebalance.

Features that keep state or publish more than alerts (per-stream state and
incidents, live model updates) plug into the loop of :mod:`detector.service`
as steps, so the loop itself stays one path: poll, score, publish, commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from beatwatch.clients import Outgoing, Partition, Record
from detector.batch import BatchOutcome


class BatchStep:
    """A step of the detector loop; override what the feature needs (each default does nothing).

    Order per batch: ``before_poll`` -> poll -> score -> ``on_batch`` -> publish
    alerts, dead letters and the steps' messages -> flush and check every
    delivery -> commit -> ``after_commit``. A batch whose publish fails is
    rewound and comes back: ``on_batch`` may then see the same records again
    (no ``after_commit`` in between), so per-stream state should ignore beats
    it has already counted (by ``seq``). A commit that fails after a good
    publish is followed by ``after_commit(outcome, committed=False)``: the new
    owner of those partitions will read the batch again.

    ``on_revoked`` runs inside the poll, before the partitions go to another
    member; the previous batch is already committed then. It may publish (and
    flush) but must not commit (kafka-python forbids it there).
    """

    def before_poll(self) -> None:
        """Between batches, on the loop's thread (e.g. swap in a new model)."""

    def on_batch(
        self, records: Sequence[Record], outcome: BatchOutcome
    ) -> Mapping[str, Sequence[Outgoing]]:
        """See a scored batch before it is published; return more messages (topic -> messages).

        The returned messages are published and their deliveries checked
        before the batch's offsets are committed, like the alerts.
        """
        return {}

    def after_commit(self, outcome: BatchOutcome, committed: bool) -> None:
        """The batch was published; ``committed`` says whether its offsets were committed."""

    def on_assigned(self, partitions: list[Partition]) -> None:
        """Partitions just assigned to this detector."""

    def on_revoked(self, partitions: list[Partition]) -> None:
        """Partitions about to be taken away (everything read from them is committed)."""

    def close(self) -> None:
        """The detector stops (after its last commit)."""
