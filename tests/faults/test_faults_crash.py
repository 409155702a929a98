"""R1-R3: accounting of a clean run, kill -9 of a detector mid-stream, SIGTERM of a detector.

The detectors of R2 and R3 are real ``python -m detector`` processes, so the
kill is a real SIGKILL (no flush, no commit, no LeaveGroup) and the SIGTERM
goes through the real signal handler. Accounting reads the alerts topic.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter

import numpy as np
import orjson
import pytest

from beatwatch.artifact import load_artifact
from producer.service import ProducerSettings
from producer.service import run as produce
from tests.support.faults import (
    Accounting,
    BackgroundProducer,
    alert_keys,
    committed_vs_end,
    detector_process,
    producer_settings,
    replay_keys,
    source_of,
    wait_for_alerts,
)
from tests.support.pipeline import (
    MODEL_DIR,
    Topics,
    create_topics,
    detector_settings,
    read_topic,
    running_detector,
    wait_for,
)

# Each test runs with each client library (kafka-python, confluent-kafka).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("kafka_client")]
STREAMS = 16
MAX_BATCH = 200


def test_r1_every_beat_is_scored_and_alerts_are_exactly_those_over_threshold(
    kafka_bootstrap, topic_prefix, ecg_samples
):
    n = 2000
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    source = source_of(ecg_samples, n)
    artifact = load_artifact(MODEL_DIR)
    scores, _ = artifact.scorer().score(source.samples)
    over = {
        (f"p-{int(i) % STREAMS:04d}", int(i) // STREAMS)
        for i in np.flatnonzero(scores > artifact.threshold)
    }
    assert 0 < len(over) < n
    settings: ProducerSettings = producer_settings(
        kafka_bootstrap, topics.beats, rate_hz=0, streams=STREAMS, fmt="json"
    )
    stats = produce(settings, source, threading.Event())
    assert stats.acknowledged == n and stats.errors == 0
    group = f"{topic_prefix}-g"
    with running_detector(detector_settings(kafka_bootstrap, topics, group)) as detector:
        wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= n, 60, "all scored")
        wait_for(lambda: detector.value("beatwatch_commits_total") >= 1, 10, "a commit")
        scored = int(detector.value("beatwatch_beats_scored_total"))
        dead = int(detector.value("beatwatch_dead_letters_total"))
    alerts = alert_keys(read_topic(kafka, topics.alerts, len(over)))
    # Every produced beat is accounted for: scored (counter) and its offset committed.
    offsets = committed_vs_end(kafka, group, topics.beats, n)
    uncommitted = sum(end - committed for committed, end in offsets.values())
    account = Accounting(Counter(over), alerts, dead)
    print(
        "\n"
        + account.line(
            "R1",
            produced=n,
            scored=scored,
            over_threshold_offline=len(over),
            uncommitted=uncommitted,
        )
    )
    assert scored == n and dead == 0
    assert set(alerts) == over, "alerts are exactly the beats over threshold offline"
    assert account.duplicates == 0
    assert sum(end for _, end in offsets.values()) == n and uncommitted == 0


def _stream_through_a_fault(
    kafka_bootstrap, topic_prefix, all_alert_model, ecg_samples, tmp_path, fault: str
) -> tuple[Accounting, dict[int, tuple[int, int]], int, str]:
    """Beats flow; the first detector gets ``fault``; a second one takes over; count."""
    # Unthrottled: a backlog keeps the first detector busy in poll -> score ->
    # publish -> commit, so the kill lands inside a batch, not between two.
    n, rate_hz = 20_000, 0.0
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    group = f"{topic_prefix}-g"
    args = (kafka_bootstrap, topics, group, all_alert_model)
    extra = ("--max-batch", str(MAX_BATCH))
    feeder = BackgroundProducer(
        producer_settings(kafka_bootstrap, topics.beats, rate_hz=rate_hz, streams=STREAMS),
        source_of(ecg_samples, n),
    )
    with detector_process(*args, tmp_path / "first.log", *extra) as first:
        first.wait_ready()
        feeder.start()
        wait_for(lambda: first.value("beatwatch_beats_scored_total") >= 4000, 60, "4000 scored")
        if fault == "kill":
            first.kill()
            code = -9
        else:
            first.signal(signal.SIGTERM)
            code = first.wait(30)
        first_log = first.log_path.read_text()
    with detector_process(*args, tmp_path / "second.log", *extra) as second:
        stats = feeder.join(60)
        assert stats.acknowledged == n and stats.errors == 0
        produced = replay_keys(n, STREAMS)
        records = wait_for_alerts(kafka, topics.alerts, produced, timeout_s=90)
        wait_for(lambda: second.value("beatwatch_commits_total") >= 1, 30, "a commit")
        # The second detector commits after publishing; wait until it caught up.
        wait_for(lambda: second.value("beatwatch_consumer_lag_messages") == 0, 30, "no lag")
        dead = int(second.value("beatwatch_dead_letters_total"))
    offsets = committed_vs_end(kafka, group, topics.beats, n)
    for record in records:
        alert = orjson.loads(record.value)
        assert alert["partition"] in offsets
    return Accounting(produced, alert_keys(records), dead), offsets, code, first_log


def test_r2_kill_9_mid_stream_loses_nothing_and_repeats_at_most_one_batch(
    kafka_bootstrap, topic_prefix, all_alert_model, ecg_samples, tmp_path
):
    account, offsets, _, _ = _stream_through_a_fault(
        kafka_bootstrap, topic_prefix, all_alert_model, ecg_samples, tmp_path, "kill"
    )
    print("\n" + account.line("R2", max_batch=MAX_BATCH, committed_vs_end=offsets))
    assert account.lost == 0 and account.unexpected == 0
    # Only the batch in hand at the kill (published, not committed) can repeat.
    assert account.duplicates <= MAX_BATCH
    assert all(committed == end for committed, end in offsets.values())


def test_r3_sigterm_finishes_the_batch_commits_and_repeats_nothing(
    kafka_bootstrap, topic_prefix, all_alert_model, ecg_samples, tmp_path
):
    account, offsets, code, first_log = _stream_through_a_fault(
        kafka_bootstrap, topic_prefix, all_alert_model, ecg_samples, tmp_path, "term"
    )
    print("\n" + account.line("R3", exit_code=code, committed_vs_end=offsets))
    assert code == 0, first_log[-2000:]
    assert "SIGTERM received: finishing the current batch" in first_log
    assert account.lost == 0 and account.unexpected == 0
    assert account.duplicates == 0
    assert all(committed == end for committed, end in offsets.values())
