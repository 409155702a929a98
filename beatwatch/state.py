"""Per-stream state that lives with its partition: one record per stream, a seq guard, changes.

A consumer of the beats topic owns some partitions; every stream's beats come
through one partition, in order. This module keeps, for each owned partition,
one record per stream: a JSON-able dict of named parts shared by every user of
state (``{"seq": ..., "seen_ms": ..., "incident": {...}, "patient": {...}}``).

The mechanism, after quix-streams' state store with a changelog topic:

- **Seq guard.** :meth:`StateStore.accept` lets a beat change its stream's
  record only when its ``seq`` is above the last one applied. A batch read
  again after a crash or a failed publish leaves the state as if read once.
- **Changes.** Each record changed since the last flush is returned once by
  :meth:`StateStore.changes`, encoded, to be written to a compacted changelog
  topic (key = stream id, same partition number as the beats) and flushed
  before the batch's offsets are committed.
- **Rebuild.** When a partition is assigned, its changelog partition is read
  to the end and fed to :meth:`StateStore.assign`; the last record per stream
  wins, as compaction keeps it. When a partition is revoked its records are
  dropped (:meth:`StateStore.revoke`): the next owner rebuilds them.

Nothing here talks to Kafka (see ``beatwatch.changelog``), so the logic is
tested with plain lists of records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

# Changelog value format; a record of another format is skipped on rebuild
# (counted), never guessed at.
STATE_FORMAT = 1
FORMAT_KEY = "v"
SEQ_KEY = "seq"
# A record no beat has been applied to yet.
NO_SEQ = -1


class StateFormatError(ValueError):
    """A changelog record that is not a state record of this format."""


def encode_record(record: dict[str, Any]) -> bytes:
    """A stream's record as a changelog value (UTF-8 JSON with the format number)."""
    return orjson.dumps({FORMAT_KEY: STATE_FORMAT, **record})


def decode_record(value: bytes) -> dict[str, Any]:
    """Parse a changelog value written by :func:`encode_record`.

    Raises:
        StateFormatError: not JSON, not an object, another format, or no integer ``seq``.
    """
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise StateFormatError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise StateFormatError("not a JSON object")
    if parsed.pop(FORMAT_KEY, None) != STATE_FORMAT:
        raise StateFormatError(f"not state format {STATE_FORMAT}")
    seq = parsed.get(SEQ_KEY)
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise StateFormatError("no integer seq")
    return parsed


@dataclass(frozen=True)
class Change:
    """One changed record to write to the changelog.

    Attributes:
        partition: the changelog partition (the beats partition's number).
        key: the stream id, UTF-8.
        value: the encoded record; None deletes the stream (a tombstone).
    """

    partition: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class RestoreOutcome:
    """What rebuilding one partition found.

    Attributes:
        streams: records kept (the last per stream).
        records: changelog records read.
        skipped: records not decodable as state (left out, never fatal).
    """

    streams: int
    records: int
    skipped: int


class StateStore:
    """Records of the streams of the partitions this consumer owns."""

    def __init__(self) -> None:
        self._records: dict[int, dict[str, dict[str, Any]]] = {}
        self._dirty: dict[int, set[str]] = {}
        self._deleted: dict[int, set[str]] = {}

    @property
    def partitions(self) -> set[int]:
        """Partitions whose state is present."""
        return set(self._records)

    def owns(self, partition: int) -> bool:
        """Whether ``partition``'s state is present (assigned and rebuilt)."""
        return partition in self._records

    def assign(
        self, partition: int, changelog: Iterable[tuple[bytes | None, bytes | None]]
    ) -> RestoreOutcome:
        """Rebuild ``partition`` from its changelog records ``(key, value)``, oldest first.

        The last record of a stream wins; a tombstone (value None) deletes it.
        Records that are not state (no key, bad JSON, another format) are skipped.
        """
        records: dict[str, dict[str, Any]] = {}
        read = skipped = 0
        for key, value in changelog:
            read += 1
            if key is None:
                skipped += 1
                continue
            stream = key.decode("utf-8", "replace")
            if value is None:
                records.pop(stream, None)
                continue
            try:
                records[stream] = decode_record(value)
            except StateFormatError:
                skipped += 1
        self._records[partition] = records
        self._dirty[partition] = set()
        self._deleted[partition] = set()
        return RestoreOutcome(streams=len(records), records=read, skipped=skipped)

    def revoke(self, partition: int) -> None:
        """Drop ``partition``'s records and unwritten changes (its next owner rebuilds them)."""
        self._records.pop(partition, None)
        self._dirty.pop(partition, None)
        self._deleted.pop(partition, None)

    def get(self, partition: int, stream: str) -> dict[str, Any] | None:
        """The record of ``stream``, or None; change it through :meth:`accept` or :meth:`touch`."""
        return self._records[partition].get(stream)

    def accept(self, partition: int, stream: str, seq: int) -> dict[str, Any] | None:
        """The seq guard: the record to update with beat ``seq``, or None for a repeat.

        When ``seq`` is above the last seq applied, the record (created empty
        for a new stream) gets ``seq`` and is marked changed; the caller then
        updates its parts in place. A repeat (``seq`` at or below the last)
        returns None and changes nothing.

        Raises:
            KeyError: ``partition`` is not assigned here.
        """
        records = self._records[partition]
        record = records.get(stream)
        if record is None:
            record = records[stream] = {SEQ_KEY: NO_SEQ}
        elif int(record[SEQ_KEY]) >= seq:
            return None
        record[SEQ_KEY] = seq
        self._dirty[partition].add(stream)
        self._deleted[partition].discard(stream)
        return record

    def touch(self, partition: int, stream: str) -> dict[str, Any]:
        """The existing record of ``stream``, marked changed (a change not driven by a beat).

        Raises:
            KeyError: no such partition or stream.
        """
        record = self._records[partition][stream]
        self._dirty[partition].add(stream)
        return record

    def delete(self, partition: int, stream: str) -> None:
        """Forget ``stream`` (a tombstone goes to the changelog)."""
        if self._records[partition].pop(stream, None) is not None:
            self._dirty[partition].discard(stream)
            self._deleted[partition].add(stream)

    def items(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(stream, record)`` of ``partition``; do not change records through this."""
        return iter(list(self._records.get(partition, {}).items()))

    def stream_count(self) -> int:
        """Streams held, over all partitions."""
        return sum(len(records) for records in self._records.values())

    def pending(self) -> int:
        """Records changed (or deleted) since :meth:`changes` last returned them."""
        return sum(len(s) for s in self._dirty.values()) + sum(
            len(s) for s in self._deleted.values()
        )

    def changes(self) -> list[Change]:
        """Every record changed since the last call, encoded, once; then none are pending.

        If writing them fails, the batch is not committed and is read again;
        its beats are then repeats for the seq guard, so the caller must put
        these changes back with :meth:`restore_changes` before retrying.
        """
        out: list[Change] = []
        for partition, streams in self._dirty.items():
            records = self._records[partition]
            out.extend(
                Change(partition, stream.encode(), encode_record(records[stream]))
                for stream in sorted(streams)
            )
            streams.clear()
        for partition, streams in self._deleted.items():
            out.extend(Change(partition, stream.encode(), None) for stream in sorted(streams))
            streams.clear()
        return out

    def restore_changes(self, changes: Iterable[Change]) -> None:
        """Mark ``changes`` pending again (their write failed); revoked partitions are left out."""
        for change in changes:
            if change.partition not in self._records:
                continue
            stream = change.key.decode()
            if change.value is None:
                self._deleted[change.partition].add(stream)
            elif stream in self._records[change.partition]:
                self._dirty[change.partition].add(stream)
