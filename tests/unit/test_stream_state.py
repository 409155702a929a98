"""The detector's state step with fake clients: order, redelivery, crash + rebuild, silence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from beatwatch.changelog import StateRestoreError, read_partition
from beatwatch.clients import Outgoing, Partition, PublishError
from beatwatch.incident import decode_incident
from beatwatch.incident_rules import IncidentRules
from beatwatch.metrics import DetectorMetrics
from detector.batch import BatchOutcome
from detector.scored_beats import ScoredBeats
from detector.stream_state import StateSettings, StreamStateStep

BEATS = "beats"
RULES = IncidentRules(
    window_beats=8,
    min_abnormal=5,
    run_beats=3,
    run_rate_bpm=0,
    quiet_beats=4,
    quiet_s=3,
    update_interval_s=10,
    silence_s=30,
)


@dataclass
class FakeRecord:
    key: bytes | None
    value: bytes | None
    offset: int


@dataclass
class FakeBroker:
    """Topic -> partition -> records; what the fake publisher wrote and the reader reads."""

    logs: dict[str, dict[int, list[FakeRecord]]] = field(default_factory=dict)
    fail_next_flush: bool = False

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        log = self.logs.setdefault(topic, {}).setdefault(partition, [])
        log.append(FakeRecord(key, value, len(log)))

    def values(self, topic: str) -> list[bytes]:
        return [
            r.value
            for p in sorted(self.logs.get(topic, {}))
            for r in self.logs[topic][p]
            if r.value is not None
        ]


class FakeDelivery:
    def __init__(self, ok: bool, n: int) -> None:
        self.ok, self.n = ok, n

    def __len__(self) -> int:
        return self.n

    def check(self) -> None:
        if not self.ok:
            raise PublishError("not acknowledged")


class FakePublisher:
    """Messages become visible on flush; a failed flush loses them all."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.queued: list[tuple[str, Outgoing]] = []
        self.deliveries: list[FakeDelivery] = []

    def send(self, topic: str, messages: Sequence[Outgoing]) -> FakeDelivery:
        self.queued.extend((topic, m) for m in messages)
        delivery = FakeDelivery(True, len(messages))
        self.deliveries.append(delivery)
        return delivery

    def flush(self, timeout_s: float | None) -> bool:
        if self.broker.fail_next_flush:
            self.broker.fail_next_flush = False
            for delivery in self.deliveries:
                delivery.ok = False
        else:
            for topic, m in self.queued:
                partition = getattr(m, "partition", None)
                self.broker.append(topic, 0 if partition is None else partition, m.key, m.value)
        self.queued, self.deliveries = [], []
        return True


class FakeReader:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.position = 0
        self.partition: Partition | None = None
        self.fetched = False

    def assign(self, partitions: Sequence[Partition], from_beginning: bool) -> None:
        (self.partition,) = partitions
        self.position, self.fetched = 0, False

    def poll(self, timeout_ms: int, max_records: int) -> list[FakeRecord]:
        assert self.partition is not None
        log = self.broker.logs.get(self.partition.topic, {}).get(self.partition.partition, [])
        out = log[self.position : self.position + 2]  # small fetches: the loop must continue
        self.position += len(out)
        self.fetched = True
        return out

    def lag(self, partition: Partition) -> int | None:
        log = self.broker.logs.get(partition.topic, {}).get(partition.partition, [])
        return len(log) - self.position if self.fetched else None


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def _step(broker: FakeBroker, clock: Clock, lag: int | None = 0) -> StreamStateStep:
    publisher = FakePublisher(broker)
    return StreamStateStep(
        StateSettings(
            beats_topic=BEATS, state_topic="state", incidents_topic="incidents", rules=RULES
        ),
        DetectorMetrics(CollectorRegistry()),
        model_version=lambda: "mv",
        new_reader=lambda: FakeReader(broker),
        publisher=lambda: publisher,  # type: ignore[arg-type,return-value]
        lag=lambda p: lag,
        wall_ms=clock,
    )


def _batch(beats: list[tuple[int, str, int, bool]]) -> BatchOutcome:
    """(partition, stream, seq, abnormal) rows; beats 800 ms apart by seq."""
    scored = ScoredBeats()
    for partition, stream, seq, abnormal in beats:
        scored.add(
            partition=partition,
            stream=stream,
            seq=seq,
            ts_ms=1_000_000 + 800 * seq,
            score=2.0 if abnormal else 0.5,
            ratio=2.0 if abnormal else 0.5,
            abnormal=abnormal,
            rr_prev_ms=800.0,
            region="QRS" if abnormal else None,
        )
    outcome = BatchOutcome()
    outcome.beats = scored
    return outcome


def _publish(step: StreamStateStep, broker: FakeBroker, outcome: BatchOutcome) -> bool:
    """What the detector loop does with a batch: on_batch, publish, flush, check, after_commit."""
    publisher = FakePublisher(broker)
    deliveries = [publisher.send(t, m) for t, m in step.on_batch([], outcome).items()]
    publisher.flush(None)
    try:
        for delivery in deliveries:
            delivery.check()
    except PublishError:
        return False
    step.after_commit(outcome, True)
    return True


def _pattern(partition: int, stream: str, text: str, first: int = 0):
    return [(partition, stream, first + i, c == "x") for i, c in enumerate(text)]


def _events(broker: FakeBroker) -> list[tuple[str, str, int]]:
    return [
        (e["incident_id"], e["kind"], e["event_seq"])
        for e in map(decode_incident, broker.values("incidents"))
    ]


def test_beats_of_two_partitions_open_incidents_and_write_the_changelog_to_their_partition():
    broker, clock = FakeBroker(), Clock()
    step = _step(broker, clock)
    step.on_assigned([Partition(BEATS, 0), Partition(BEATS, 1)])
    assert _publish(step, broker, _batch(_pattern(0, "a", "..xxx") + _pattern(1, "b", "xxx")))
    assert _events(broker) == [("incident/a/2/mv", "open", 0), ("incident/b/0/mv", "open", 0)]
    assert {p: [r.key for r in log] for p, log in broker.logs["state"].items()} == {
        0: [b"a"],
        1: [b"b"],
    }
    assert step._metrics.incidents_open._value.get() == 2


def test_a_batch_published_twice_after_a_failed_publish_repeats_events_with_the_same_content():
    broker, clock = FakeBroker(), Clock()
    step = _step(broker, clock)
    step.on_assigned([Partition(BEATS, 0)])
    batch = _batch(_pattern(0, "a", "xxx.."))
    broker.fail_next_flush = True
    assert not _publish(step, broker, batch)
    assert broker.values("incidents") == []
    assert _publish(step, broker, batch)  # the loop rewound and read the batch again
    events = broker.values("incidents")
    assert [e["kind"] for e in map(decode_incident, events)] == ["open"]
    step.before_poll()  # between batches: the emptied outbox goes to the changelog
    # The state after the redelivery is the state of one reading.
    rebuilt = _step(broker, clock)
    rebuilt.on_assigned([Partition(BEATS, 0)])
    rebuilt.restore_pending()
    assert rebuilt.store.get(0, "a") == step.store.get(0, "a")


def test_a_crash_after_the_publish_loses_nothing_and_splits_nothing():
    broker, clock = FakeBroker(), Clock()
    first = _step(broker, clock)
    first.on_assigned([Partition(BEATS, 0)])
    batch = _batch(_pattern(0, "a", "xxx"))
    # Published (events and changelog) but killed before the commit and the outbox clearing.
    publisher = FakePublisher(broker)
    for topic, messages in first.on_batch([], batch).items():
        publisher.send(topic, messages)
    publisher.flush(None)
    second = _step(broker, clock)
    second.on_assigned([Partition(BEATS, 0)])
    assert _publish(second, broker, batch)  # the uncommitted batch comes again
    assert _publish(second, broker, _batch(_pattern(0, "a", "x....", first=3)))
    events = _events(broker)
    # The open may repeat (same id, same event_seq); there is one incident, then its close.
    assert {e for e in events} == {("incident/a/0/mv", "open", 0), ("incident/a/0/mv", "close", 1)}
    opens = [
        decode_incident(v)
        for v in broker.values("incidents")
        if decode_incident(v)["kind"] == "open"
    ]
    assert all(o == opens[0] for o in opens)


def test_a_crash_before_the_publish_recomputes_the_same_events():
    broker, clock = FakeBroker(), Clock()
    first = _step(broker, clock)
    first.on_assigned([Partition(BEATS, 0)])
    batch = _batch(_pattern(0, "a", "..xxxx"))
    first.on_batch([], batch)  # killed before the flush: nothing reached the broker
    second = _step(broker, clock)
    second.on_assigned([Partition(BEATS, 0)])
    assert _publish(second, broker, batch)
    assert _events(broker) == [("incident/a/2/mv", "open", 0)]


def test_revoke_drops_the_partition_and_its_new_owner_continues_the_incident():
    broker, clock = FakeBroker(), Clock()
    first = _step(broker, clock)
    first.on_assigned([Partition(BEATS, 0)])
    assert _publish(first, broker, _batch(_pattern(0, "a", "xxx")))
    first.on_revoked([Partition(BEATS, 0)])
    assert first.store.partitions == set() and first._metrics.incidents_open._value.get() == 0
    second = _step(broker, clock)
    second.on_assigned([Partition(BEATS, 0)])
    assert _publish(second, broker, _batch(_pattern(0, "a", "x....", first=3)))
    assert [k for _, k, _ in _events(broker)] == ["open", "close"]


def test_silence_closes_only_caught_up_partitions_after_the_silence_period():
    broker, clock = FakeBroker(), Clock()
    behind = _step(broker, clock, lag=5)
    behind.on_assigned([Partition(BEATS, 0)])
    assert _publish(behind, broker, _batch(_pattern(0, "a", "xxx")))
    clock.ms += 31_000
    behind.before_poll()
    assert [k for _, k, _ in _events(broker)] == ["open"]
    step = _step(broker, clock, lag=0)
    step.on_assigned([Partition(BEATS, 0)])
    step.before_poll()  # rebuilt; the last beat was seen 31 s ago by the first detector
    events = [decode_incident(v) for v in broker.values("incidents")]
    assert [(e["kind"], e["close_reason"]) for e in events] == [
        ("open", None),
        ("close", "silence"),
    ]
    step.before_poll()
    assert len(broker.values("incidents")) == 2


def test_restore_reads_to_the_end_in_small_fetches_and_times_out_when_the_end_never_comes():
    broker = FakeBroker()
    for i in range(5):
        broker.append("state", 2, b"k", str(i).encode())
    reader = FakeReader(broker)
    assert [v for _, v in read_partition(reader, Partition("state", 2), 5.0)] == [
        b"0",
        b"1",
        b"2",
        b"3",
        b"4",
    ]

    class Stuck(FakeReader):
        def lag(self, partition: Partition) -> int | None:
            return None

    ticks = iter(range(100))
    with pytest.raises(StateRestoreError):
        read_partition(Stuck(broker), Partition("state", 2), 3.0, clock=lambda: next(ticks))


def test_repeats_within_one_batch_change_nothing(monkeypatch: Any):
    broker, clock = FakeBroker(), Clock()
    step = _step(broker, clock)
    step.on_assigned([Partition(BEATS, 0)])
    rows = _pattern(0, "a", "xx")
    assert _publish(step, broker, _batch(rows + rows + _pattern(0, "a", "x", first=2)))
    assert (step.store.get(0, "a") or {}).get("seq") == 2
    assert _events(broker) == [("incident/a/0/mv", "open", 0)]


def test_incident_and_state_topics_must_differ_from_the_others_unless_incidents_are_off():
    from pathlib import Path

    from beatwatch.errors import ConfigError
    from beatwatch.kafka import KafkaSettings
    from detector.service import DetectorSettings

    base = {"kafka": KafkaSettings(), "model_dir": Path("m")}
    with pytest.raises(ConfigError, match="also from the incidents and state topics"):
        DetectorSettings(**base, state_topic="ecg-alerts")  # type: ignore[arg-type]
    DetectorSettings(**base, state_topic="ecg-alerts", incidents=False)  # type: ignore[arg-type]


def test_rule_options_reach_the_rules_and_bad_ones_are_refused_in_one_line():
    import argparse

    from beatwatch.errors import ConfigError
    from detector.stream_state import add_arguments, rules_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    rules = rules_from_args(
        parser.parse_args(["--incident-silence-s", "5", "--incident-run-beats", "4"])
    )
    assert rules.silence_s == 5.0 and rules.run_beats == 4 and rules.window_beats == 8
    with pytest.raises(ConfigError) as info:
        rules_from_args(parser.parse_args(["--incident-min-abnormal", "9"]))
    assert "\n" not in str(info.value)


def test_a_stream_gone_for_a_day_is_forgotten_with_a_tombstone():
    broker, clock = FakeBroker(), Clock()
    step = _step(broker, clock)
    step.on_assigned([Partition(BEATS, 0)])
    assert _publish(step, broker, _batch(_pattern(0, "a", "xxx") + _pattern(0, "b", "...")))
    clock.ms += 31_000
    step.before_poll()  # a's incident closes on silence; b has none
    clock.ms += 24 * 3600 * 1000
    step._last_scan_s = 0.0
    step.before_poll()
    assert step.store.get(0, "a") is None and step.store.get(0, "b") is None
    assert [r.value for r in broker.logs["state"][0][-2:]] == [None, None]
    rebuilt = _step(broker, clock)
    rebuilt.on_assigned([Partition(BEATS, 0)])
    rebuilt.restore_pending()
    assert rebuilt.store.stream_count() == 0
