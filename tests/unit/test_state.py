"""The per-stream state store: seq guard, changes, rebuild from a changelog, revoke."""

from __future__ import annotations

import pytest

from beatwatch.state import (
    Change,
    StateFormatError,
    StateStore,
    decode_record,
    encode_record,
)


def _apply(store: StateStore, partition: int, beats: list[tuple[str, int]]) -> None:
    """A toy user of state: counts the beats of each stream."""
    for stream, seq in beats:
        record = store.accept(partition, stream, seq)
        if record is not None:
            record["count"] = record.get("count", 0) + 1


def _changelog(changes: list[Change]) -> list[tuple[bytes | None, bytes | None]]:
    return [(c.key, c.value) for c in changes]


def test_a_batch_read_again_leaves_the_state_as_if_read_once():
    store = StateStore()
    store.assign(0, [])
    batch = [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    _apply(store, 0, batch)
    once = {s: dict(r) for s, r in store.items(0)}
    _apply(store, 0, batch)  # redelivered
    assert {s: dict(r) for s, r in store.items(0)} == once
    assert once == {"a": {"seq": 2, "count": 3}, "b": {"seq": 0, "count": 1}}


def test_a_partly_applied_batch_read_again_applies_only_the_new_beats():
    store = StateStore()
    store.assign(0, [])
    _apply(store, 0, [("a", 0), ("a", 1)])
    _apply(store, 0, [("a", 0), ("a", 1), ("a", 2)])
    assert store.get(0, "a") == {"seq": 2, "count": 3}


def test_changes_are_returned_once_and_rebuild_another_store_exactly():
    store = StateStore()
    store.assign(3, [])
    _apply(store, 3, [("a", 0), ("b", 5)])
    first = store.changes()
    assert {c.key for c in first} == {b"a", b"b"} and all(c.partition == 3 for c in first)
    assert store.changes() == [] and store.pending() == 0
    _apply(store, 3, [("a", 1)])
    second = store.changes()
    assert [c.key for c in second] == [b"a"]
    rebuilt = StateStore()
    outcome = rebuilt.assign(3, _changelog(first + second))
    assert outcome.streams == 2 and outcome.records == 3 and outcome.skipped == 0
    assert dict(rebuilt.items(3)) == dict(store.items(3))
    # The rebuilt store keeps guarding: the beats already applied are repeats.
    _apply(rebuilt, 3, [("a", 0), ("a", 1), ("b", 5)])
    assert rebuilt.get(3, "a") == {"seq": 1, "count": 2}


def test_rebuild_skips_foreign_records_and_honours_tombstones():
    store = StateStore()
    good = encode_record({"seq": 4, "x": 1})
    outcome = store.assign(
        1,
        [
            (b"a", good),
            (b"b", b"not json"),
            (None, good),
            (b"c", b'{"v": 99, "seq": 1}'),
            (b"d", good),
            (b"d", None),
        ],
    )
    assert outcome.streams == 1 and outcome.skipped == 3
    assert store.get(1, "a") == {"seq": 4, "x": 1} and store.get(1, "d") is None


def test_revoke_drops_records_and_pending_changes():
    store = StateStore()
    store.assign(0, [])
    store.assign(1, [])
    _apply(store, 0, [("a", 0)])
    _apply(store, 1, [("b", 0)])
    store.revoke(0)
    assert store.partitions == {1}
    assert [c.key for c in store.changes()] == [b"b"]
    with pytest.raises(KeyError):
        store.accept(0, "a", 1)


def test_failed_changes_are_put_back_but_not_for_revoked_partitions():
    store = StateStore()
    store.assign(0, [])
    store.assign(1, [])
    _apply(store, 0, [("a", 0)])
    _apply(store, 1, [("b", 0)])
    changes = store.changes()
    store.revoke(1)
    store.restore_changes(changes)
    assert [c.key for c in store.changes()] == [b"a"]


def test_delete_writes_a_tombstone():
    store = StateStore()
    store.assign(0, [])
    _apply(store, 0, [("a", 0)])
    store.changes()
    store.delete(0, "a")
    assert store.changes() == [Change(0, b"a", None)]


@pytest.mark.parametrize(
    "value", [b"[]", b"{", b'{"v": 1}', b'{"v": 1, "seq": "3"}', b'{"v": 1, "seq": true}']
)
def test_decode_refuses_what_is_not_a_state_record(value):
    with pytest.raises(StateFormatError):
        decode_record(value)
