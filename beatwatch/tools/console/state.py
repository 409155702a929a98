"""What the console holds in memory: streams, their last alerts, incidents, bad messages.

Pure logic, no Kafka and no HTTP, so it is tested with plain values. Memory is
bounded by construction: at most ``max_streams`` streams (the least recently
active one is forgotten first), ``alerts_per_stream`` alerts each (a compact
row, not the whole message), ``max_errors`` unreadable messages.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from beatwatch.alert import Alert, AlertFormatError, decode_alert

# The stream id is a message key; the beat contract caps it at this length.
# Defaults of the store, also those of the console's options.
DEFAULT_MAX_STREAMS = 1000
DEFAULT_ALERTS_PER_STREAM = 50
DEFAULT_ALERTING_WINDOW_S = 60.0
MAX_STREAM_CHARS = 128
# Open incidents remembered per stream (a stream rarely has more than one).
MAX_OPEN_INCIDENTS = 8
# Characters of a reason or summary kept for display.
MAX_TEXT_CHARS = 300
# Longest identifier held (alert id, incident id, model version, topic): a
# message cannot make the console hold megabytes per alert.
MAX_ID_CHARS = 512
INCIDENT_EVENTS = ("open", "update", "close")


class BadMessage(Exception):  # noqa: N818 - reads as a verdict on a record
    """A message on the alerts or incidents topic the console cannot show as one."""


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The part of an alert the console keeps (the explanation's summary, not its lists)."""

    alert_id: str
    stream: str
    seq: int
    ts_ms: int
    detected_ts_ms: int | None
    score: float
    threshold: float
    p_value: float | None
    model_version: str
    topic: str | None
    partition: int
    offset: int
    summary: str

    @classmethod
    def of(cls, alert: Alert) -> AlertRow:
        """The row of ``alert``, its identifiers within the console's bounds.

        Raises:
            BadMessage: the stream id or another identifier is too long (or empty).
        """
        if len(alert.stream) > MAX_STREAM_CHARS:
            raise BadMessage(f"stream id longer than {MAX_STREAM_CHARS} characters")
        for name in ("alert_id", "model_version", "topic"):
            if not 0 < len(getattr(alert, name)) <= MAX_ID_CHARS:
                raise BadMessage(f"field {name!r} empty or longer than {MAX_ID_CHARS} characters")
        return cls(
            alert_id=alert.alert_id,
            stream=alert.stream,
            seq=alert.seq,
            ts_ms=alert.ts_ms,
            detected_ts_ms=alert.detected_ts_ms,
            score=alert.score,
            threshold=alert.threshold,
            p_value=alert.p_value,
            model_version=alert.model_version,
            topic=alert.topic,
            partition=alert.partition,
            offset=alert.offset,
            summary=alert.explanation.summary[:MAX_TEXT_CHARS],
        )

    def to_json(self) -> dict[str, Any]:
        """The row as the page receives it."""
        return {
            "alert_id": self.alert_id,
            "stream": self.stream,
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "detected_ts_ms": self.detected_ts_ms,
            "score": self.score,
            "threshold": self.threshold,
            "score_ratio": self.score / self.threshold if self.threshold > 0 else None,
            "p_value": self.p_value,
            "model_version": self.model_version,
            "partition": self.partition,
            "offset": self.offset,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """One event of the incidents topic: ``open``, ``update`` or ``close`` of an episode."""

    stream: str
    event: str
    incident_id: str
    severity: str | None
    ts_ms: int | None


def _field(body: dict[str, Any], name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise BadMessage(f"field {name!r} missing or not {'/'.join(k.__name__ for k in kinds)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadMessage(f"field {name!r} is not finite")
    return value


def _object(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise BadMessage("empty message")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadMessage("not JSON") from None
    if not isinstance(body, dict):
        raise BadMessage("not a JSON object")
    return body


def _identifier(body: dict[str, Any], name: str, optional: bool = False) -> str | None:
    value = _field(body, name, (str,), optional=optional)
    if value is not None and not 0 < len(value) <= MAX_ID_CHARS:
        raise BadMessage(f"field {name!r} empty or longer than {MAX_ID_CHARS} characters")
    return None if value is None else str(value)


def _stream(body: dict[str, Any]) -> str:
    stream = _field(body, "stream", (str,))
    if not stream or len(stream) > MAX_STREAM_CHARS:
        raise BadMessage(f"stream id empty or longer than {MAX_STREAM_CHARS} characters")
    return str(stream)


def parse_alert(value: bytes | None) -> AlertRow:
    """Check an alert message (``beatwatch.alert.decode_alert``) and keep what the console shows.

    Raises:
        BadMessage: not an alert (the reason names the field), or an identifier
            longer than the console holds.
    """
    try:
        alert = decode_alert(value or b"")
    except AlertFormatError as exc:
        raise BadMessage(str(exc)) from None
    return AlertRow.of(alert)


def parse_incident(value: bytes | None) -> IncidentEvent:
    """Check an incident event; only what the stream's state needs is read.

    The event kind is read from ``kind`` (the incident contract), else
    ``event`` or ``type``, so small differences in format do not blank the page.

    Raises:
        BadMessage: not a JSON object, or no stream, kind or incident id.
    """
    body = _object(value)
    stream = _stream(body)
    event = body.get("kind", body.get("event", body.get("type")))
    if event not in INCIDENT_EVENTS:
        raise BadMessage(f"incident event must be one of {', '.join(INCIDENT_EVENTS)}")
    incident_id = str(_identifier(body, "incident_id"))
    severity = body.get("severity")
    ts_ms = body.get("event_ts_ms")
    return IncidentEvent(
        stream,
        str(event),
        incident_id,
        str(severity)[:32] if severity is not None else None,
        ts_ms if isinstance(ts_ms, int) and not isinstance(ts_ms, bool) else None,
    )


@dataclass(slots=True)
class StreamState:
    """One stream: its last alerts (newest last), totals, open incidents."""

    alerts: deque[AlertRow]
    total: int = 0
    last_s: float = 0.0
    last_ts_ms: int = 0
    last_alert_s: float = 0.0
    version: int = 0
    open_incidents: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """An unreadable message: where it was and why (never its content)."""

    topic: str
    partition: int
    offset: int
    reason: str
    received_ms: int


class Store:
    """The console's bounded memory, shared by the Kafka thread and the web handlers.

    Args:
        max_streams: streams remembered; the least recently active is dropped beyond it.
        alerts_per_stream: alerts kept per stream (newest).
        max_errors: unreadable messages kept (newest).
        alerting_window_s: a stream is ``alerting`` this long after its last alert.
        clock: wall-clock seconds (injected by tests).
    """

    def __init__(
        self,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        alerts_per_stream: int = DEFAULT_ALERTS_PER_STREAM,
        max_errors: int = 50,
        alerting_window_s: float = DEFAULT_ALERTING_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_streams = max_streams
        self.alerts_per_stream = alerts_per_stream
        self.alerting_window_s = alerting_window_s
        self._clock = clock
        self._streams: OrderedDict[str, StreamState] = OrderedDict()
        self._errors: deque[ErrorRow] = deque(maxlen=max_errors)
        self._changed = threading.Condition()
        self.version = 0
        self.alerts_total = 0
        self.duplicates = 0
        self.errors_total = 0
        self.streams_dropped = 0
        self.status = "starting"
        self.health: dict[str, Any] = {}

    def _touch(self, stream: str) -> StreamState:
        state = self._streams.get(stream)
        if state is None:
            state = StreamState(alerts=deque(maxlen=self.alerts_per_stream))
            self._streams[stream] = state
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
                self.streams_dropped += 1
        else:
            self._streams.move_to_end(stream)
        state.last_s = self._clock()
        state.version += 1
        return state

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()

    def add_alert(self, row: AlertRow) -> bool:
        """Record an alert; False for a repeat of one still held (at-least-once delivery)."""
        with self._changed:
            held = self._streams.get(row.stream)
            if held is not None and any(a.alert_id == row.alert_id for a in held.alerts):
                self.duplicates += 1
                return False
            state = self._touch(row.stream)
            state.alerts.append(row)
            state.total += 1
            state.last_alert_s = state.last_s
            state.last_ts_ms = max(state.last_ts_ms, row.ts_ms)
            self.alerts_total += 1
            self._bump()
            return True

    def add_incident(self, event: IncidentEvent) -> None:
        """Open, update or close an incident of a stream."""
        with self._changed:
            state = self._touch(event.stream)
            if event.ts_ms is not None:
                state.last_ts_ms = max(state.last_ts_ms, event.ts_ms)
            if event.event == "close":
                state.open_incidents.pop(event.incident_id, None)
            elif (
                event.incident_id in state.open_incidents
                or len(state.open_incidents) < MAX_OPEN_INCIDENTS
            ):
                state.open_incidents[event.incident_id] = event.severity
            self._bump()

    def add_error(self, topic: str, partition: int, offset: int, reason: str) -> None:
        """Record an unreadable message as an error row."""
        with self._changed:
            received_ms = int(self._clock() * 1e3)
            self._errors.append(
                ErrorRow(topic, partition, offset, reason[:MAX_TEXT_CHARS], received_ms)
            )
            self.errors_total += 1
            self._bump()

    def set_status(self, status: str) -> None:
        """The Kafka feed's state, shown on the page (``connected``, ``broker unreachable``...)."""
        with self._changed:
            if status != self.status:
                self.status = status
                self._bump()

    def set_health(self, health: dict[str, Any]) -> None:
        """The detector's health from its metrics."""
        with self._changed:
            self.health = health
            self._bump()

    def wait_for_change(self, seen: int, timeout_s: float) -> int:
        """Block until :attr:`version` differs from ``seen`` or ``timeout_s``; return it."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen, timeout_s)
            return self.version

    def state_of(self, state: StreamState) -> str:
        """``incident`` (one open), ``alerting`` (an alert within the window) or ``quiet``."""
        if state.open_incidents:
            return "incident"
        if state.last_alert_s and self._clock() - state.last_alert_s <= self.alerting_window_s:
            return "alerting"
        return "quiet"

    def snapshot(self, limit: int = 200) -> dict[str, Any]:
        """The page's live view: the ``limit`` newest streams (by their last event's time).

        Ties, and streams whose events carry no time, go by arrival, latest first.
        """
        with self._changed:
            arrival = list(reversed(self._streams))
            newest = heapq.nsmallest(
                limit,
                range(len(arrival)),
                key=lambda i: (-self._streams[arrival[i]].last_ts_ms, i),
            )
            streams: list[dict[str, Any]] = []
            for name in (arrival[i] for i in newest):
                state = self._streams[name]
                last = state.alerts[-1] if state.alerts else None
                streams.append(
                    {
                        "stream": name,
                        "state": self.state_of(state),
                        "alerts": state.total,
                        "version": state.version,
                        "last_ts_ms": state.last_ts_ms or None,
                        "last_score_ratio": last.to_json()["score_ratio"] if last else None,
                        "incidents": len(state.open_incidents),
                    }
                )
            return {
                "version": self.version,
                "status": self.status,
                "health": self.health,
                "streams": streams,
                "streams_total": len(self._streams),
                "streams_dropped": self.streams_dropped,
                "alerts_total": self.alerts_total,
                "duplicates": self.duplicates,
                "errors_total": self.errors_total,
                "errors": [
                    {
                        "topic": e.topic,
                        "partition": e.partition,
                        "offset": e.offset,
                        "reason": e.reason,
                        "received_ms": e.received_ms,
                    }
                    for e in reversed(self._errors)
                ],
            }

    def stream(self, stream: str) -> dict[str, Any] | None:
        """One stream's state and its held alerts, newest first; None when not held."""
        with self._changed:
            state = self._streams.get(stream)
            if state is None:
                return None
            return {
                "stream": stream,
                "state": self.state_of(state),
                "alerts_total": state.total,
                "version": state.version,
                "incidents": [
                    {"incident_id": k, "severity": v} for k, v in state.open_incidents.items()
                ],
                "alerts": [a.to_json() for a in reversed(state.alerts)],
            }

    def find_alert(self, stream: str, alert_id: str) -> AlertRow | None:
        """A held alert of ``stream`` by id."""
        with self._changed:
            state = self._streams.get(stream)
            if state is None:
                return None
            return next((a for a in state.alerts if a.alert_id == alert_id), None)

    def alerted_offsets(self, stream: str) -> set[tuple[int, int]]:
        """``(partition, offset)`` of the held alerts of ``stream``: the beats to mark."""
        with self._changed:
            state = self._streams.get(stream)
            return {(a.partition, a.offset) for a in state.alerts} if state else set()
