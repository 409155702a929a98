"""The incident contract: ``open``, ``update`` and ``close`` events of a per-stream episode.

Per-beat alerts are too many to page anyone on; an incident is one episode of
abnormal beats of one stream, from the rule that opened it to the quiet period
(or the silence) that closed it. Events go to the ``ecg-incidents`` topic,
keyed by stream id. The schema is ``docs/schemas/incident.schema.json``.

Identity follows PagerDuty's ``dedup_key``: ``incident_id`` is derived from the
stream, the seq of the episode's first abnormal beat and the model version, so
a batch read again after a crash yields the same id; a closed id never opens
again, and a new onset (a later first beat) is a new id. Within an incident,
``event_seq`` numbers the events (0 is ``open``): a subscriber drops a repeat
by ``(incident_id, event_seq)``.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, cast

import orjson

INCIDENTS_TOPIC = "ecg-incidents"
KINDS = ("open", "update", "close")
SEVERITIES = ("warning", "critical")
RULES = ("k_of_n", "run", "fast_run")
CLOSE_REASONS = ("quiet", "silence")

Kind = Literal["open", "update", "close"]
Severity = Literal["warning", "critical"]


class IncidentEvent(TypedDict):
    """One incident event (see ``docs/schemas/incident.schema.json`` for each field)."""

    incident_id: str
    kind: Kind
    event_seq: int
    stream: str
    severity: Severity
    rule: str
    rule_detail: str
    model_version: str
    first_seq: int
    first_ts_ms: int
    last_seq: int
    last_ts_ms: int
    event_ts_ms: int
    beats: int
    abnormal_beats: int
    longest_run: int
    max_score: float
    max_score_ratio: float | None
    worst_region: str | None
    rate_bpm: float | None
    close_reason: str | None


class IncidentFormatError(ValueError):
    """A message that is not an incident event."""


def incident_id(stream: str, first_seq: int, model_version: str) -> str:
    """The deterministic identity of the incident whose first abnormal beat is ``first_seq``."""
    return f"incident/{stream}/{first_seq}/{model_version}"


def encode_incident(event: IncidentEvent) -> bytes:
    """Serialise an incident event as UTF-8 JSON."""
    return orjson.dumps(event)


_REQUIRED = tuple(IncidentEvent.__annotations__)


def decode_incident(value: bytes) -> IncidentEvent:
    """Parse and check an incident message value.

    Raises:
        IncidentFormatError: not JSON, a missing field, or an unknown kind or severity.
    """
    try:
        parsed: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise IncidentFormatError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise IncidentFormatError("not a JSON object")
    missing = [name for name in _REQUIRED if name not in parsed]
    if missing:
        raise IncidentFormatError(f"missing {', '.join(missing)}")
    if parsed["kind"] not in KINDS:
        raise IncidentFormatError(f"unknown kind {parsed['kind']!r}")
    if parsed["severity"] not in SEVERITIES:
        raise IncidentFormatError(f"unknown severity {parsed['severity']!r}")
    return cast(IncidentEvent, parsed)


def describe(event: IncidentEvent) -> str:
    """One readable line for a person tailing incidents (no samples, no scores list)."""
    duration_s = (event["last_ts_ms"] - event["first_ts_ms"]) / 1000
    rate = f", {event['rate_bpm']:.0f}/min" if event["rate_bpm"] is not None else ""
    reason = f" ({event['close_reason']})" if event["close_reason"] else ""
    return (
        f"{event['kind'].upper():6} {event['severity']:8} {event['stream']} "
        f"{event['rule_detail']}; {event['abnormal_beats']}/{event['beats']} beats abnormal, "
        f"longest run {event['longest_run']}{rate}, {duration_s:.1f} s, "
        f"max score x{event['max_score_ratio'] or 0:.1f}{reason} [{event['incident_id']}]"
    )
