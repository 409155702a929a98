"""Incident events (format) and the per-stream incident state machine."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from beatwatch.errors import ConfigError
from beatwatch.incident import (
    IncidentEvent,
    IncidentFormatError,
    decode_incident,
    describe,
    encode_incident,
    incident_id,
)
from beatwatch.incident_rules import (
    BeatVerdict,
    IncidentRules,
    close_silent,
    is_open,
    new_state,
    step,
)

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "incident.schema.json"
RULES = IncidentRules(
    window_beats=8,
    min_abnormal=5,
    run_beats=3,
    run_rate_bpm=0,
    critical_run_beats=5,
    critical_rate_bpm=100,
    quiet_beats=4,
    quiet_s=3,
    update_interval_s=10,
)
RR_MS = 800  # 75/min


def _beats(
    pattern: str, rr_ms: int = RR_MS, first_seq: int = 0, fast_rr_ms: int | None = None
) -> list[BeatVerdict]:
    """Beats from a string: '.' normal, 'x' abnormal; abnormal beats at ``fast_rr_ms`` when given."""
    ts = 1_000_000
    out = []
    for i, c in enumerate(pattern):
        rr = fast_rr_ms if (c == "x" and fast_rr_ms) else rr_ms
        ts += rr
        out.append(
            BeatVerdict(
                seq=first_seq + i,
                ts_ms=ts,
                score=2.0 + i / 100 if c == "x" else 0.5,
                ratio=(2.0 + i / 100) if c == "x" else 0.5,
                abnormal=c == "x",
                rr_prev_ms=rr,
                region="QRS" if c == "x" else None,
            )
        )
    return out


def _run(
    beats: list[BeatVerdict], state: dict[str, Any] | None = None, rules: IncidentRules = RULES
) -> tuple[list[IncidentEvent], dict[str, Any]]:
    state = new_state() if state is None else state
    events = []
    for beat in beats:
        events.extend(step(state, beat, stream="p-1", model_version="mv", rules=rules))
    return events, state


def test_a_run_opens_on_its_third_beat_with_an_id_from_its_first():
    events, state = _run(_beats("....xxx"))
    assert [e["kind"] for e in events] == ["open"]
    open_ = events[0]
    assert open_["rule"] == "run" and open_["severity"] == "warning"
    assert open_["first_seq"] == 4 and open_["last_seq"] == 6 and open_["event_seq"] == 0
    assert open_["incident_id"] == incident_id("p-1", 4, "mv")
    assert open_["abnormal_beats"] == 3 and open_["beats"] == 3 and open_["longest_run"] == 3
    assert open_["worst_region"] == "QRS" and is_open(state)


def test_scattered_abnormal_beats_open_by_k_of_n():
    events, _ = _run(_beats("x.xx.x.x"))
    assert [(e["kind"], e["rule"], e["first_seq"]) for e in events] == [("open", "k_of_n", 0)]


def test_a_run_rate_floor_keeps_slow_runs_from_opening_unless_rr_is_unknown():
    rules = IncidentRules(**{**RULES.to_dict(), "run_rate_bpm": 90.0})
    slow = _beats("....xxx..", fast_rr_ms=800)
    assert _run(slow, rules=rules)[0] == []
    assert [e["rule"] for e in _run(_beats("....xxx", fast_rr_ms=600), rules=rules)[0]] == ["run"]
    unknown = [b._replace(rr_prev_ms=None) for b in slow]
    assert [e["rule"] for e in _run(unknown, rules=rules)[0]] == ["run"]


def test_isolated_abnormal_beats_and_couplets_open_nothing():
    events, _ = _run(_beats("x....xx....x...x..xx......" * 5))
    assert events == []


def test_a_fast_long_run_is_critical_and_an_open_run_escalates_at_once():
    events, _ = _run(_beats("..xxxxx", fast_rr_ms=400))
    assert [(e["kind"], e["rule"], e["severity"]) for e in events] == [
        ("open", "run", "warning"),
        ("update", "run", "critical"),
    ]
    slow, _ = _run(_beats("..xxxxx", fast_rr_ms=900))
    assert [(e["kind"], e["severity"]) for e in slow] == [("open", "warning")]


def test_quiet_period_closes_and_a_new_onset_is_a_new_id():
    events, _ = _run(_beats("xxx" + "." * 6 + "xxx" + "." * 6))
    kinds = [(e["kind"], e["first_seq"]) for e in events]
    assert kinds == [("open", 0), ("close", 0), ("open", 9), ("close", 9)]
    assert events[1]["close_reason"] == "quiet" and events[1]["event_seq"] == 1
    assert events[0]["incident_id"] != events[2]["incident_id"]
    assert events[1]["last_seq"] == 6  # 4 normal beats and 3.2 s after the last abnormal one


def test_updates_come_at_most_every_interval_in_signal_time():
    rules = IncidentRules(**{**RULES.to_dict(), "quiet_beats": 100, "quiet_s": 1000})
    events, _ = _run(_beats("xxx" + ".x" * 60), rules=rules)  # 123 beats, 98 s
    updates = [e for e in events if e["kind"] == "update"]
    gaps = [b["event_ts_ms"] - a["event_ts_ms"] for a, b in itertools.pairwise(events)]
    assert len(updates) == 9 and min(gaps) >= 10_000
    assert [e["event_seq"] for e in events] == list(range(10))
    pattern = "xxx" + ".x" * 60
    last = updates[-1]["last_seq"]
    assert updates[-1]["abnormal_beats"] == pattern[: last + 1].count("x")


def test_silence_closes_with_the_last_beat_and_then_nothing_more():
    events, state = _run(_beats("xxx.."))
    close = close_silent(state, "p-1")
    assert close is not None and close["kind"] == "close" and close["close_reason"] == "silence"
    assert close["last_seq"] == 4 and close["incident_id"] == events[0]["incident_id"]
    assert close_silent(state, "p-1") is None and not is_open(state)


def test_the_same_beats_give_the_same_events_from_a_copied_state():
    beats = _beats("..xxx.x.xxxxx......" * 3, fast_rr_ms=450)
    _, middle = _run(beats[:20])
    first, _ = _run(beats[20:], state=copy.deepcopy(middle))
    second, _ = _run(beats[20:], state=json.loads(json.dumps(middle)))  # via the changelog
    assert first == second and first


def test_events_match_the_schema_and_round_trip():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    events, state = _run(_beats("..xxxxx" + ".x" * 40, fast_rr_ms=400))
    close = close_silent(state, "p-1")
    assert close is not None
    events.append(close)
    assert {e["kind"] for e in events} == {"open", "update", "close"}
    for event in events:
        validator.validate(event)
        assert decode_incident(encode_incident(event)) == event
        assert event["incident_id"] in describe(event)


@pytest.mark.parametrize("value", [b"{", b"[]", b'{"kind": "open"}'])
def test_decode_refuses_what_is_not_an_event(value):
    with pytest.raises(IncidentFormatError):
        decode_incident(value)


@pytest.mark.parametrize(
    "change",
    [
        {"min_abnormal": 9},
        {"run_beats": 0},
        {"critical_run_beats": 12},
        {"quiet_s": -1.0},
        {"silence_s": 0.0},
        {"update_interval_s": float("nan")},
    ],
)
def test_inconsistent_rules_are_refused_with_one_line(change):
    with pytest.raises(ConfigError) as info:
        IncidentRules(**{**IncidentRules().to_dict(), **change})
    assert "\n" not in str(info.value)


def test_rules_from_dict_refuse_unknown_settings():
    with pytest.raises(ConfigError, match="unknown"):
        IncidentRules.from_dict({"window": 3})


def test_a_closed_incident_never_reopens_from_beats_it_already_holds():
    rules = IncidentRules(**{**RULES.to_dict(), "quiet_beats": 2, "quiet_s": 0.0})
    events, _ = _run(_beats("xxxx..x.x"), rules=rules)
    assert [(e["kind"], e["first_seq"]) for e in events] == [("open", 0), ("close", 0)]
