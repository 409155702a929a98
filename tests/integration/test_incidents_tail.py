"""``beatwatch alerts --incidents``: tails incident events, readable or JSON, without repeats."""

from __future__ import annotations

import orjson
import pytest
from kafka import KafkaProducer

from beatwatch.clients import ensure_topics
from beatwatch.incident import IncidentEvent, encode_incident
from beatwatch.kafka import KafkaSettings
from tests.support.commands import run_beatwatch

pytestmark = pytest.mark.integration


def _event(kind: str, event_seq: int, first_seq: int = 10) -> IncidentEvent:
    return {
        "incident_id": f"incident/p-1/{first_seq}/mv",
        "kind": kind,  # type: ignore[typeddict-item]
        "event_seq": event_seq,
        "stream": "p-1",
        "severity": "critical",
        "rule": "fast_run",
        "rule_detail": "5 consecutive abnormal beats at 140/min",
        "model_version": "mv",
        "first_seq": first_seq,
        "first_ts_ms": 1_765_100_000_000,
        "last_seq": first_seq + 4,
        "last_ts_ms": 1_765_100_002_000,
        "event_ts_ms": 1_765_100_002_000,
        "beats": 5,
        "abnormal_beats": 5,
        "longest_run": 5,
        "max_score": 0.5,
        "max_score_ratio": 3.0,
        "worst_region": "QRS",
        "rate_bpm": 140.0,
        "close_reason": "quiet" if kind == "close" else None,
    }


def test_incident_events_are_tailed_once_each_readable_and_as_json(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-incidents"
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), {topic: 2})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    # A redelivered open (same id and event_seq) between the open and the close.
    for event in (_event("open", 0), _event("open", 0), _event("close", 1), _event("open", 0, 30)):
        producer.send(topic, key=b"p-1", value=encode_incident(event))
    producer.flush()
    producer.close()
    common = (
        "--bootstrap-servers",
        kafka_bootstrap,
        "--incidents",
        "--incidents-topic",
        topic,
        "--from-beginning",
        "--idle-timeout-s",
        "5",
    )
    as_json = run_beatwatch("alerts", *common, "--json")
    assert as_json.returncode == 0, as_json.stderr
    seen = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert [(e["incident_id"], e["kind"]) for e in seen] == [
        ("incident/p-1/10/mv", "open"),
        ("incident/p-1/10/mv", "close"),
        ("incident/p-1/30/mv", "open"),
    ]
    readable = run_beatwatch("alerts", *common)
    lines = readable.stdout.splitlines()
    assert len(lines) == 3 and "OPEN" in lines[0] and "CLOSE" in lines[1], readable.stdout
    assert "critical" in lines[0] and "140/min" in lines[0] and "(quiet)" in lines[1]
