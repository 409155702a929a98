"""Per-stream state and incidents in the detector loop: a :class:`BatchStep`.

Each scored beat, in the order of its partition, passes the stream's seq guard
(:class:`beatwatch.state.StateStore`) and drives the stream's incident machine
(:mod:`beatwatch.incident_rules`). The state lives with its partition:

- the records changed by a batch go to the compacted changelog topic in the
  same publish as the batch's alerts and incident events, which is flushed and
  checked before the batch's offsets are committed;
- an assigned partition is rebuilt from its changelog before any of its beats
  is applied; a revoked one is dropped.

Incident events use an outbox: the events of a beat are kept in the stream's
record until their publish was acknowledged, and the record (outbox included)
goes to the changelog with them. Whatever a crash leaves behind, the next owner
either re-reads the beats (same events, same ids) or finds the events in the
outbox and sends them again: an event may repeat, with the same
``incident_id``, ``event_seq`` and content; none is lost.

Silence: between batches, every partition that is caught up (no lag) is
scanned once a second; an open incident whose stream has had no beat for
``silence_s`` on the detector's clock is closed.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beatwatch.changelog import STATE_TOPIC, ChangelogReader, StateRestoreError, read_partition
from beatwatch.clients import (
    Outgoing,
    Partition,
    Publisher,
    PublishError,
    Record,
)
from beatwatch.incident import INCIDENTS_TOPIC, IncidentEvent, encode_incident
from beatwatch.incident_rules import (
    PART,
    BeatVerdict,
    IncidentRules,
    close_silent,
    is_open,
    new_state,
    step,
)
from beatwatch.metrics import DetectorMetrics
from beatwatch.settings import (
    add_flag,
    add_option,
    non_negative_float,
    positive_float,
    positive_int,
)
from beatwatch.state import Change, StateStore
from detector.batch import BatchOutcome
from detector.steps import BatchStep

log = logging.getLogger(__name__)

OUTBOX = "outbox"
SEEN = "seen_ms"
SILENCE_SCAN_INTERVAL_S = 1.0
# Restoring retries a broker that does not answer for this long, then gives up
# (the detector stops without committing; its partitions go to another member).
RESTORE_TIMEOUT_S = 60.0
# A stream without an open incident and without beats for this long is
# forgotten (a tombstone in the changelog); if it comes back, it starts afresh.
FORGET_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class StateSettings:
    """Topics and rules of the state step."""

    beats_topic: str
    state_topic: str = STATE_TOPIC
    incidents_topic: str = INCIDENTS_TOPIC
    rules: IncidentRules = field(default_factory=IncidentRules)
    restore_timeout_s: float = RESTORE_TIMEOUT_S
    forget_after_s: float = FORGET_AFTER_S


@dataclass
class _Inflight:
    """What the last publish carried, until it is known to be acknowledged."""

    changes: list[Change]
    outboxes: set[tuple[int, str]]


class StreamStateStep(BatchStep):
    """Keeps each stream's record, runs the incident machine, writes the changelog.

    Args:
        settings: topics and rules.
        metrics: the detector's metrics.
        model_version: the version scoring the current batch.
        new_reader: a consumer without a group for restoring (created on first use).
        publisher: the detector's publisher (for events between batches).
        lag: the detector consumer's lag of a beats partition (None while unknown).
        wall_ms: the detector's clock, epoch ms (silence).
    """

    def __init__(
        self,
        settings: StateSettings,
        metrics: DetectorMetrics,
        *,
        model_version: Callable[[], str],
        new_reader: Callable[[], ChangelogReader],
        publisher: Callable[[], Publisher | None],
        lag: Callable[[Partition], int | None],
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.settings = settings
        self.store = StateStore()
        self._metrics = metrics
        self._model_version = model_version
        self._new_reader = new_reader
        self._reader: ChangelogReader | None = None
        self._publisher = publisher
        self._lag = lag
        self._wall_ms = wall_ms
        self._to_restore: set[int] = set()
        self._unsent: set[tuple[int, str]] = set()
        self._inflight: _Inflight | None = None
        self._open: dict[int, int] = {}
        self._last_scan_s = 0.0

    # Rebalances -----------------------------------------------------------

    def on_assigned(self, partitions: list[Partition]) -> None:
        """Rebuild the new partitions' state before their first beat (deferred to the loop)."""
        self._to_restore.update(
            p.partition for p in partitions if p.topic == self.settings.beats_topic
        )

    def on_revoked(self, partitions: list[Partition]) -> None:
        """Write what is pending, then drop the partitions' state (the next owner rebuilds it).

        Pending records are mostly emptied outboxes: written now, the next
        owner does not send those events again.
        """
        if self._unsent or self.store.pending():
            self._publish_now()
        for p in partitions:
            if p.topic != self.settings.beats_topic:
                continue
            self._to_restore.discard(p.partition)
            self.store.revoke(p.partition)
            self._open.pop(p.partition, None)
            self._unsent = {key for key in self._unsent if key[0] != p.partition}
        self._update_gauges()

    def restore_pending(self) -> None:
        """Rebuild every partition assigned since the last call.

        Raises:
            StateRestoreError: a changelog partition could not be read in time.
        """
        for number in sorted(self._to_restore):
            started = time.perf_counter()
            if self._reader is None:
                self._reader = self._new_reader()
            records = read_partition(
                self._reader,
                Partition(self.settings.state_topic, number),
                self.settings.restore_timeout_s,
            )
            outcome = self.store.assign(number, records)
            self._to_restore.discard(number)
            # Events a previous owner may not have published go out again (same content).
            self._open[number] = 0
            for stream, record in self.store.items(number):
                if record.get(OUTBOX):
                    self._unsent.add((number, stream))
                if is_open(record.get(PART)):
                    self._open[number] += 1
            elapsed_s = time.perf_counter() - started
            self._metrics.state_restore_seconds.observe(elapsed_s)
            self._metrics.state_skipped_records.inc(outcome.skipped)
            log.info(
                "state of partition %d rebuilt: %d streams from %d changelog records in %.3f s",
                number,
                outcome.streams,
                outcome.records,
                elapsed_s,
            )
        self._update_gauges()

    # The loop -------------------------------------------------------------

    def before_poll(self) -> None:
        """Rebuild new partitions, close silent streams, publish what is pending."""
        self._retry_failed()
        self.restore_pending()
        now_s = time.monotonic()
        if now_s - self._last_scan_s >= SILENCE_SCAN_INTERVAL_S:
            self._last_scan_s = now_s
            self._close_silent()
        if self._unsent or self.store.pending():
            self._publish_now()

    def on_batch(
        self, records: Sequence[Record], outcome: BatchOutcome
    ) -> Mapping[str, Sequence[Outgoing]]:
        """Apply the batch's beats in order; return its incident events and changelog records."""
        self._retry_failed()
        self.restore_pending()
        beats = outcome.beats
        if beats is not None:
            model_version = self._model_version()
            now_ms = self._wall_ms()
            rules = self.settings.rules
            for row in range(len(beats)):
                partition, stream = beats.partitions[row], beats.streams[row]
                if not self.store.owns(partition):
                    continue  # revoked during this poll: its new owner applies it
                record = self.store.accept(partition, stream, beats.seqs[row])
                if record is None:
                    continue  # a repeat: applied before this redelivery
                record[SEEN] = now_ms
                parts = beats.parts[row] if beats.parts else None
                if parts is not None:
                    record.update(parts)  # e.g. the patient-adaptive score's state
                machine = record.get(PART)
                if machine is None:
                    machine = record[PART] = new_state()
                rr = beats.rr_prev_ms[row]
                verdict = BeatVerdict(
                    seq=beats.seqs[row],
                    ts_ms=beats.ts_ms[row],
                    score=beats.scores[row],
                    ratio=beats.ratios[row],
                    abnormal=beats.abnormal[row],
                    rr_prev_ms=None if rr is None or math.isnan(rr) else rr,
                    region=beats.regions[row],
                )
                events = step(
                    machine, verdict, stream=stream, model_version=model_version, rules=rules
                )
                if events:
                    self._to_outbox(partition, stream, record, events)
        return self._outgoing()

    def after_commit(self, outcome: BatchOutcome, committed: bool) -> None:
        """The publish was acknowledged: its events are out, its outboxes can be emptied."""
        self._acknowledged()

    def close(self) -> None:
        """Nothing to close: the restore reader belongs to the detector's client factory."""
        closer = getattr(self._reader, "close", None)
        if closer is not None:
            closer(3.0)
        self._reader = None

    # Internals ------------------------------------------------------------

    def _to_outbox(
        self, partition: int, stream: str, record: dict[str, Any], events: list[IncidentEvent]
    ) -> None:
        record.setdefault(OUTBOX, []).extend(events)
        self._unsent.add((partition, stream))
        for event in events:
            if event["kind"] == "open":
                self._open[partition] = self._open.get(partition, 0) + 1
            elif event["kind"] == "close":
                self._open[partition] = self._open.get(partition, 0) - 1

    def _outgoing(self) -> dict[str, list[Outgoing]]:
        """Every unsent outbox event and every changed record, remembered as in flight."""
        events: list[Outgoing] = []
        for partition, stream in sorted(self._unsent):
            record = self.store.get(partition, stream)
            if record is None:
                continue
            events.extend(
                Outgoing(stream.encode(), encode_incident(event))
                for event in record.get(OUTBOX, [])
            )
        changes = self.store.changes()
        self._inflight = _Inflight(changes, set(self._unsent))
        self._update_gauges()
        out: dict[str, list[Outgoing]] = {}
        if events:
            out[self.settings.incidents_topic] = events
        if changes:
            out[self.settings.state_topic] = [
                Outgoing(c.key, c.value, partition=c.partition) for c in changes
            ]
        return out

    def _retry_failed(self) -> None:
        """A publish that was never acknowledged: its records become pending again."""
        if self._inflight is not None:
            self.store.restore_changes(self._inflight.changes)
            self._inflight = None

    def _acknowledged(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        self._metrics.state_changelog_records.inc(len(inflight.changes))
        for partition, stream in inflight.outboxes:
            record = self.store.get(partition, stream) if self.store.owns(partition) else None
            if record is None:
                continue
            for event in record.get(OUTBOX, []):
                self._metrics.incident_events.labels(event["kind"]).inc()
            # Emptied outboxes reach the changelog with the next publish.
            record[OUTBOX] = []
            self.store.touch(partition, stream)
            self._unsent.discard((partition, stream))

    def _close_silent(self) -> None:
        silence_ms = self.settings.rules.silence_s * 1000
        now_ms = self._wall_ms()
        for partition in sorted(self.store.partitions):
            if self._lag(Partition(self.settings.beats_topic, partition)) != 0:
                continue  # beats may be waiting: not silence
            for stream, record in self.store.items(partition):
                machine = record.get(PART)
                silent_ms = now_ms - int(record.get(SEEN, now_ms))
                if machine is None or not is_open(machine):
                    if silent_ms >= self.settings.forget_after_s * 1000 and not record.get(OUTBOX):
                        # A stream gone for good (a discharged patient): its state
                        # would otherwise stay in memory and in the changelog forever.
                        self.store.delete(partition, stream)
                    continue
                if silent_ms < silence_ms:
                    continue
                event = close_silent(machine, stream)
                if event is not None:
                    self.store.touch(partition, stream)
                    self._to_outbox(partition, stream, record, [event])

    def _publish_now(self) -> None:
        """Publish outbox events and changes between batches (no offsets to commit)."""
        publisher = self._publisher()
        if publisher is None:
            return
        self._retry_failed()
        outgoing = self._outgoing()
        try:
            deliveries = [publisher.send(topic, messages) for topic, messages in outgoing.items()]
            if not publisher.flush(3.0):
                raise PublishError("deliveries pending")
            for delivery in deliveries:
                delivery.check()
        except PublishError as exc:
            log.warning("publishing state and incident events failed (%s); retrying", exc)
            self._retry_failed()
            return
        self._acknowledged()

    def _update_gauges(self) -> None:
        self._metrics.incidents_open.set(sum(self._open.values()))
        self._metrics.state_streams.set(self.store.stream_count())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch detect`` for per-stream state and incidents (docs/incidents.md)."""
    group = parser.add_argument_group("incidents and per-stream state")
    add_option(
        group,
        "--incidents-topic",
        default=INCIDENTS_TOPIC,
        help="topic to publish incident events to",
    )
    add_option(
        group,
        "--state-topic",
        default=STATE_TOPIC,
        help="compacted changelog topic of the per-stream state",
    )
    add_flag(group, "--no-incidents", help="keep no per-stream state and publish no incidents")
    defaults = IncidentRules()
    for name, kind, text in _RULE_OPTIONS:
        add_option(
            group,
            "--incident-" + name.replace("_", "-"),
            default=getattr(defaults, name),
            type=kind,
            help=text,
        )


_RULE_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("window_beats", positive_int, "k-of-n rule: the last n beats"),
    ("min_abnormal", positive_int, "k-of-n rule: k abnormal beats among them"),
    ("run_beats", positive_int, "run rule: abnormal beats in a row"),
    ("run_rate_bpm", non_negative_float, "run rule: at this rate or faster (when RR is known)"),
    ("critical_run_beats", positive_int, "critical fast run: abnormal beats in a row"),
    ("critical_rate_bpm", non_negative_float, "critical fast run: at this rate or faster"),
    ("quiet_beats", positive_int, "close after this many normal beats in a row ..."),
    ("quiet_s", non_negative_float, "... and this many seconds since the last abnormal beat"),
    ("update_interval_s", non_negative_float, "at most one update per this many seconds"),
    ("silence_s", positive_float, "close when a stream sends no beat for this long"),
]


def rules_from_args(args: argparse.Namespace) -> IncidentRules:
    """The incident rules from parsed options.

    Raises:
        ConfigError: inconsistent rules (one line).
    """
    return IncidentRules(
        **{name: getattr(args, "incident_" + name) for name, _, _ in _RULE_OPTIONS}
    )


__all__ = ["StateRestoreError", "StateSettings", "StreamStateStep"]
