"""The console's memory: alert and incident parsing, bounds, stream states, the live view."""

from __future__ import annotations

import orjson
import pytest

from beatwatch.tools import promtext
from beatwatch.tools.console.health import health_of
from beatwatch.tools.console.state import BadMessage, Store, parse_alert, parse_incident


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alert(stream: str = "p-1", seq: int = 1, **fields: object) -> bytes:
    n = seq if isinstance(seq, int) else 0
    body: dict[str, object] = {
        "alert_id": f"{stream}/{seq}/m-1",
        "stream": stream,
        "seq": seq,
        "ts_ms": 1000 + n,
        "detected_ts_ms": 2000 + n,
        "score": 0.5,
        "threshold": 0.25,
        "model_version": "m-1",
        "topic": "ecg-beats",
        "partition": 0,
        "offset": n,
        "p_value": 0.01,
        "explanation": {"summary": "in the QRS region", "worst_ranges": [], "regions": []},
    }
    body.update(fields)
    return orjson.dumps(body)


def incident(stream: str, kind: str, incident_id: str = "i-1", ts_ms: int = 5000) -> bytes:
    return orjson.dumps(
        {
            "kind": kind,
            "stream": stream,
            "incident_id": incident_id,
            "severity": "critical",
            "event_ts_ms": ts_ms,
        }
    )


def test_an_alert_keeps_what_the_page_shows():
    row = parse_alert(alert())
    assert (row.stream, row.seq, row.partition, row.offset) == ("p-1", 1, 0, 1)
    assert row.summary == "in the QRS region"
    assert row.to_json()["score_ratio"] == 2.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"{nope", "not JSON"),
        (b"[1]", "not a JSON object"),
        (alert(seq="1"), "'seq'"),  # type: ignore[arg-type]
        (alert(seq=True), "'seq'"),
        (alert(stream=""), "stream id"),
        (alert(stream="x" * 129), "stream id"),
        (alert(partition=None), "'partition'"),
        (alert(score="high"), "'score'"),
        (alert(alert_id="x" * 513), "'alert_id'"),
        (alert(model_version=""), "'model_version'"),
    ],
)
def test_a_bad_alert_is_refused_with_a_reason(value: bytes, reason: str):
    with pytest.raises(BadMessage, match=reason):
        parse_alert(value)


def test_a_repeated_alert_is_counted_once():
    store = Store()
    assert store.add_alert(parse_alert(alert()))
    assert not store.add_alert(parse_alert(alert()))
    assert (store.alerts_total, store.duplicates) == (1, 1)


def test_memory_is_bounded_by_streams_and_alerts_per_stream():
    store = Store(max_streams=3, alerts_per_stream=2)
    for stream in ("a", "b", "c", "d"):
        for seq in range(5):
            store.add_alert(parse_alert(alert(stream, seq)))
    view = store.snapshot()
    assert {s["stream"] for s in view["streams"]} == {"b", "c", "d"}
    assert view["streams_dropped"] == 1
    held = store.stream("d")
    assert held is not None
    assert [a["seq"] for a in held["alerts"]] == [4, 3]  # newest first
    assert held["alerts_total"] == 5
    assert store.find_alert("d", "d/2/m-1") is None  # pushed out
    assert store.find_alert("d", "d/4/m-1") is not None


def test_a_stream_is_alerting_then_quiet_and_an_open_incident_wins():
    clock = Clock()
    store = Store(alerting_window_s=60, clock=clock)
    store.add_alert(parse_alert(alert("p-1")))
    assert store.snapshot()["streams"][0]["state"] == "alerting"
    clock.now += 61
    assert store.snapshot()["streams"][0]["state"] == "quiet"
    store.add_incident(parse_incident(incident("p-1", "open")))
    store.add_incident(parse_incident(incident("p-1", "update")))
    assert store.snapshot()["streams"][0]["state"] == "incident"
    store.add_incident(parse_incident(incident("p-1", "close")))
    assert store.snapshot()["streams"][0]["state"] == "quiet"


@pytest.mark.parametrize(
    "value",
    [
        b"{}",
        orjson.dumps({"kind": "reopen", "stream": "p", "incident_id": "i"}),
        orjson.dumps({"kind": "open", "stream": "p"}),
    ],
)
def test_a_bad_incident_is_refused(value: bytes):
    with pytest.raises(BadMessage):
        parse_incident(value)


def test_streams_are_listed_newest_event_first():
    store = Store()
    store.add_alert(parse_alert(alert("late", 1, ts_ms=9000)))
    store.add_alert(parse_alert(alert("early", 1, ts_ms=1000)))
    store.add_incident(parse_incident(incident("incident", "open", ts_ms=5000)))
    assert [s["stream"] for s in store.snapshot()["streams"]] == ["late", "incident", "early"]
    assert [s["stream"] for s in store.snapshot(limit=1)["streams"]] == ["late"]


def test_error_rows_are_bounded_newest_first_and_change_the_view():
    store = Store(max_errors=2)
    seen = store.version
    for offset in range(3):
        store.add_error("ecg-alerts", 0, offset, "not JSON")
    assert store.wait_for_change(seen, timeout_s=0) != seen
    view = store.snapshot()
    assert [e["offset"] for e in view["errors"]] == [2, 1]
    assert view["errors_total"] == 3


def test_health_reads_rate_lag_and_readiness_from_metrics():
    text = (
        "beatwatch_beats_scored_total 300\n"
        "beatwatch_ready 1\n"
        'beatwatch_consumer_lag_messages{partition="0"} 5\n'
        'beatwatch_consumer_lag_messages{partition="1"} 7\n'
    )
    first, previous = health_of(promtext.parse(text), None, now=10.0)
    assert first["beats_per_s"] is None and first["ready"] and first["lag_messages"] == 12
    later, _ = health_of(promtext.parse(text.replace("300", "500")), previous, now=12.0)
    assert later["beats_per_s"] == 100.0
