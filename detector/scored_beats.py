"""The scored beats of one batch as columns, in record order: what per-stream state reads.

``process_batch`` fills it next to the alerts; the state step walks it row by
row (each partition's beats in their order) without decoding anything again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ScoredBeats:
    """One row per scored beat, in the order the records were polled.

    Attributes:
        partitions: source partition.
        streams: stream id.
        seqs: per-stream beat number.
        ts_ms: the beat's time, epoch ms.
        scores: the model's score.
        ratios: score / threshold (None when the threshold is 0).
        abnormal: whether the beat alerted.
        rr_prev_ms: the RR interval before the beat, when the beat carries one.
        regions: for an abnormal beat, the region where its reconstruction failed most.
        parts: named parts of the stream's state record that the beat sets once
            the stream's seq guard accepts it (``{"patient": ...}`` from a
            patient-adaptive model); empty when no scorer keeps state.
    """

    partitions: list[int] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    ratios: list[float | None] = field(default_factory=list)
    abnormal: list[bool] = field(default_factory=list)
    rr_prev_ms: list[float | None] = field(default_factory=list)
    regions: list[str | None] = field(default_factory=list)
    parts: list[dict[str, Any] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seqs)

    def add(
        self,
        *,
        partition: int,
        stream: str,
        seq: int,
        ts_ms: int,
        score: float,
        ratio: float | None,
        abnormal: bool,
        rr_prev_ms: float | None = None,
        region: str | None = None,
    ) -> None:
        """Append one row (tests and small batches; ``process_batch`` fills columns)."""
        self.partitions.append(partition)
        self.streams.append(stream)
        self.seqs.append(seq)
        self.ts_ms.append(ts_ms)
        self.scores.append(score)
        self.ratios.append(ratio)
        self.abnormal.append(abnormal)
        self.rr_prev_ms.append(rr_prev_ms)
        self.regions.append(region)
