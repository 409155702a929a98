"""A patient-adaptive model (models/mitbih) live on the real broker equals the offline scorer.

A synthetic two-lead record (tests/ecg_support.py, 420 s: the streams learn
for their first 300 s, then score against their own normal) is scored offline
exactly as ``beatwatch evaluate --wfdb`` does (cut, then the artifact's
StreamScorer over the whole record), and live: replayed into a detector
running the model. Every live alert must be one of the offline alerts and
vice versa, with the same kind (V, S) and the same score to the last bit.

The kill -9 test kills the detector after the stream has learned, sends the
rest of the record, and starts a new detector: its state comes back from the
changelog (the record's "patient" part), so the beats after the restart are
scored against what was learned before it; a detector that learned again from
scratch would score them against the population reference and differ.
Once per client library.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from beatwatch.artifact import load_artifact
from beatwatch.clients import ALERT_PUBLISHER, Outgoing, new_publisher
from beatwatch.recording import read_wfdb
from beatwatch.recording_beats import recording_beats
from beatwatch.wire import Beat, encode
from tests.support.clients import client_settings, kafka_client  # noqa: F401
from tests.support.commands import child_env, run_beatwatch
from tests.support.ecg import synthetic_ecg, write_wfdb
from tests.support.faults import detector_process
from tests.support.pipeline import (
    REPO_ROOT,
    Topics,
    detector_settings,
    read_topic,
    running_detector,
    wait_for,
)
from trainer.evaluate_records import wire_beats
from trainer.evaluate_records_cli import artifact_segmentation, stream_scoring

pytestmark = [
    pytest.mark.integration,
    pytest.mark.tensorflow,
    pytest.mark.slow,
    pytest.mark.usefixtures("kafka_client"),
]

MODEL = REPO_ROOT / "models" / "mitbih"
SCHEMA = json.loads((REPO_ROOT / "docs" / "schemas" / "alert.schema.json").read_text())
NAME = "syn1"
DURATION_S = 420.0
# Killed once the stream has learned (300 s) and scored a while against its own normal.
KILL_AFTER_S = 340.0

Alerts = dict[int, tuple[str, float]]  # seq -> (kind, score)


@dataclass(frozen=True)
class Offline:
    record: Path
    beats: list[Beat]
    alerts: Alerts


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Offline:
    """The record, its beats as the producer sends them, and evaluate's alerts."""
    record = write_wfdb(synthetic_ecg(DURATION_S, seed=3), tmp_path_factory.mktemp("rec"), NAME)
    artifact = load_artifact(MODEL)
    rec = read_wfdb(record)
    beats = wire_beats(NAME, rec, list(recording_beats(rec, artifact_segmentation(artifact))))
    scores, alerted, kinds = stream_scoring(artifact)(NAME, beats)
    assert kinds is not None
    alerts = {b.seq: (str(kinds[i]), float(scores[i])) for i, b in enumerate(beats) if alerted[i]}
    later = [seq for seq, b in enumerate(beats) if b.ts_ms > KILL_AFTER_S * 1000 and seq in alerts]
    # The record exercises both phases and both kinds worth comparing.
    assert len(later) >= 5, alerts
    assert {kind for kind, _ in alerts.values()} >= {"V"}
    return Offline(record, beats, alerts)


def live_alerts(bootstrap: str, topic: str, expected: int) -> tuple[Alerts, list[dict[str, Any]]]:
    """The alerts on ``topic`` (repeats by alert_id dropped), as seq -> (kind, score)."""
    records = read_topic(client_settings(bootstrap), topic, expected, timeout_s=60)
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        alert = json.loads(r.value)
        seen.setdefault(alert["alert_id"], alert)
    alerts = list(seen.values())
    for alert in alerts[:50]:
        jsonschema.validate(alert, SCHEMA)
    return {a["seq"]: (a["kind"], a["score"]) for a in alerts}, alerts


@pytest.fixture
def topics(topic_prefix: str) -> Iterator[Topics]:
    yield Topics.named(topic_prefix)


def state_args(prefix: str) -> dict[str, str]:
    return {"incidents_topic": f"{prefix}-incidents", "state_topic": f"{prefix}-state"}


def test_live_alerts_equal_the_offline_stream_scorer(
    kafka_bootstrap: str, topics: Topics, topic_prefix: str, offline: Offline
) -> None:
    settings = detector_settings(
        kafka_bootstrap, topics, f"{topic_prefix}-g", model_dir=MODEL, **state_args(topic_prefix)
    )
    with running_detector(settings) as detector:
        wait_for(lambda: detector.value("beatwatch_assigned_partitions") > 0, 60, "assignment")
        produced = run_beatwatch(
            "produce",
            "--record",
            str(offline.record),
            "--speed",
            "0",
            "--first-seq",
            "0",
            "--beats-topic",
            topics.beats,
            "--bootstrap-servers",
            kafka_bootstrap,
            "--kafka-client",
            client_settings(kafka_bootstrap).client,
            "--progress-interval-s",
            "0",
            timeout_s=120,
            env=child_env(),
        )
        assert produced.returncode == 0, produced.stderr
        wait_for(
            lambda: detector.value("beatwatch_beats_scored_total") >= len(offline.beats),
            120,
            "every beat scored",
        )
        assert detector.value("beatwatch_beats_scored_total") == len(offline.beats)
        assert detector.value("beatwatch_dead_letters_total") == 0
    got, alerts = live_alerts(kafka_bootstrap, topics.alerts, len(offline.alerts))
    assert got == offline.alerts
    assert any(a["learning"] for a in alerts) and not all(a["learning"] for a in alerts)
    rules = load_artifact(MODEL).config.patient
    assert rules is not None
    assert all(a["threshold"] == rules.v_threshold for a in alerts)


def send(bootstrap: str, topic: str, beats: list[Beat]) -> None:
    publisher = new_publisher(client_settings(bootstrap), ALERT_PUBLISHER)
    try:
        messages = [Outgoing(*encode(beat, "json")) for beat in beats]
        delivery = publisher.send(topic, messages)
        assert publisher.flush(30)
        delivery.check()
    finally:
        publisher.close(5)


def test_kill_9_mid_record_state_comes_back_from_the_changelog(
    kafka_bootstrap: str, topics: Topics, topic_prefix: str, offline: Offline, tmp_path: Path
) -> None:
    beats = offline.beats
    split = int(np.searchsorted([b.ts_ms for b in beats], KILL_AFTER_S * 1000))
    group = f"{topic_prefix}-g"
    extra = (
        "--incidents-topic",
        f"{topic_prefix}-incidents",
        "--state-topic",
        f"{topic_prefix}-state",
        "--partitions",
        "4",
    )
    args = (kafka_bootstrap, topics, group, MODEL)
    with detector_process(*args, tmp_path / "first.log", *extra) as first:
        first.wait_ready(120)
        send(kafka_bootstrap, topics.beats, beats[:split])
        wait_for(
            lambda: first.value("beatwatch_beats_scored_total") >= split,
            120,
            "the first part scored",
            context=first.log_tail,
        )
        time.sleep(2)  # its publish and commit follow within milliseconds
        first.kill()
    send(kafka_bootstrap, topics.beats, beats[split:])
    with detector_process(*args, tmp_path / "second.log", *extra) as second:
        second.wait_ready(120)
        wait_for(
            lambda: second.value("beatwatch_beats_scored_total") >= len(beats) - split,
            120,
            "the rest scored",
            context=second.log_tail,
        )
        log = (tmp_path / "second.log").read_text(errors="replace")
    assert "rebuilt: 1 streams" in log, log[-3000:]
    got, alerts = live_alerts(kafka_bootstrap, topics.alerts, len(offline.alerts))
    after = {seq: v for seq, v in got.items() if seq >= split}
    assert after, "no alert after the restart"
    relearned = [
        (a["seq"], a["partition"], a["offset"])
        for a in alerts
        if a["seq"] >= split and a["learning"]
    ]
    assert not relearned, (
        relearned,
        split,
        [
            line
            for line in log.splitlines()
            if "rebuilt" in line or "assigned" in line or "revoked" in line
        ],
    )
    assert got == offline.alerts
