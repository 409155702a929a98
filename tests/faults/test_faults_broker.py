"""R6: the broker is killed (SIGKILL) and restarted mid-stream; nothing is lost.

The embedded broker keeps its log in S3 (a local ``moto`` server), so a
restarted broker still has every acknowledged beat and committed offset.
Producer and detector are left alone: no manual step after the restart.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beatwatch.kafka import KafkaSettings
from beatwatch.tools.broker import EmbeddedBroker, free_port, wait_for_port
from beatwatch.wire import decode
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
    REPO_ROOT,
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
BUCKET = "tansu"


def beats_in_log(kafka: KafkaSettings, topic: str, expected: int) -> set[tuple[str, int]]:
    """(stream, seq) of every beat in ``topic``, decoded as the detector decodes them."""
    found = set()
    for record in read_topic(kafka, topic, expected, timeout_s=30):
        beat = decode(record.key, record.value, record.headers, expected_length=140)
        found.add((beat.stream, beat.seq))
    return found


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A local S3 (moto server) with an empty bucket; tansu's AWS_* environment for it."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    with (tmp_path / "moto.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for_port("127.0.0.1", port, 30), "moto server did not start"
        endpoint = f"http://127.0.0.1:{port}"
        # tansu's S3 engine (object_store) reads these; AWS_ALLOW_HTTP permits http://.
        env = {
            "AWS_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.terminate()
        server.wait(10)


def test_r6_broker_kill_9_and_restart_mid_stream_loses_nothing(
    s3_env, topic_prefix, all_alert_model, ecg_samples, tmp_path
):
    n, rate_hz, down_s = 6000, 500.0, 3.0
    broker = EmbeddedBroker(
        storage=f"s3://{BUCKET}/", env=s3_env, log_path=tmp_path / "tansu.log"
    ).start()
    try:
        bootstrap = broker.bootstrap_servers
        topics = Topics.named(topic_prefix)
        kafka = create_topics(bootstrap, topics)
        group = f"{topic_prefix}-g"
        # tansu on S3 reads a fetch's data from the object store (LIST + GET per
        # batch); with the detector's default fetch_max_wait_ms (5 ms) it answers
        # every fetch empty before reading, and nothing is ever consumed
        # (measured: 0 of 500 beats in 25 s; 100 ms or more works).
        settings = detector_settings(
            bootstrap, topics, group, model_dir=all_alert_model, fetch_max_wait_ms=500
        )
        feeder = BackgroundProducer(
            producer_settings(bootstrap, topics.beats, rate_hz=rate_hz, streams=STREAMS),
            source_of(ecg_samples, n),
        )
        with running_detector(settings) as detector:
            wait_for(lambda: detector.value("beatwatch_assigned_partitions") == 4, 60, "assigned")
            feeder.start()
            wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= 1000, 60, "1000")
            scored_at_kill = int(detector.value("beatwatch_beats_scored_total"))
            broker.kill()
            time.sleep(down_s)
            broker.start()  # same port, same S3 bucket
            restarted = time.monotonic()
            stats = feeder.join(180)
            produced = replay_keys(n, STREAMS)
            records = wait_for_alerts(kafka, topics.alerts, produced, timeout_s=25)
            recovered_s = time.monotonic() - restarted
            wait_for(
                lambda: all(
                    c == e for c, e in committed_vs_end(kafka, group, topics.beats, n).values()
                ),
                60,
                "all committed",
            )
            scored = int(detector.value("beatwatch_beats_scored_total"))
            broker_errors = int(detector.value("beatwatch_broker_errors_total"))
            commit_failures = int(detector.value("beatwatch_commit_failures_total"))
            alerts_acked = int(detector.value("beatwatch_alerts_total"))
        in_log = beats_in_log(kafka, topics.beats, n)
    finally:
        broker.stop()
    account = Accounting(produced, alert_keys(records))
    # Where a loss happened. Acknowledged beats missing from the broker's log
    # after the restart were lost by the broker. Beats in the log without an
    # alert: if the detector's acknowledged alerts (beatwatch_alerts_total)
    # outnumber the alerts in the topic by as many, the broker lost those too.
    lost_beats_by_broker = len(set(produced) - in_log)
    logged_without_alert = len(in_log - set(account.alerts))
    lost_alerts_by_broker = alerts_acked - sum(account.alerts.values())
    print(
        "\n"
        + account.line(
            "R6",
            scored=scored,
            scored_at_kill=scored_at_kill,
            broker_down_s=down_s,
            producer_acknowledged=stats.acknowledged,
            producer_errors=stats.errors,
            detector_broker_errors=broker_errors,
            commit_failures=commit_failures,
            alerts_acknowledged=alerts_acked,
            all_alerts_after_restart_s=round(recovered_s, 1),
            acknowledged_beats_lost_by_broker=lost_beats_by_broker,
            acknowledged_alerts_lost_by_broker=lost_alerts_by_broker,
        )
    )
    # Producer and detector recovered by themselves: every send acknowledged,
    # every beat the broker still has scored, its alert acknowledged, committed.
    assert stats.acknowledged == n and stats.errors == 0
    assert account.unexpected == 0
    assert scored >= len(in_log) and alerts_acked >= len(in_log)
    assert logged_without_alert == lost_alerts_by_broker
    # Every loss is an acknowledged write the broker dropped: tansu on S3 does
    # not survive kill -9 with all acknowledged data (measured: 0-58 of 6000
    # per run). beatwatch itself lost nothing; on a replicated Apache Kafka
    # with acks=all the same run is expected to show lost = 0.
    assert account.lost == lost_beats_by_broker + logged_without_alert
    if account.lost:
        pytest.xfail(
            f"tansu on S3 dropped {lost_beats_by_broker} acknowledged beats and "
            f"{lost_alerts_by_broker} acknowledged alerts across kill -9"
        )


def test_r12_with_the_broker_gone_a_stop_request_ends_both_services_within_the_grace(
    topic_prefix, tmp_path
):
    """SIGTERM while the broker is down: both exit before compose's 10 s grace ends.

    The detector's batch is rewound, never committed (the next owner re-reads
    it); the producer counts the beats it could not deliver and exits 1 with
    a few summary lines, not one warning per beat.
    """
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    producer_log = tmp_path / "producer.log"
    try:
        bootstrap = broker.bootstrap_servers
        topics = Topics.named(topic_prefix)
        create_topics(bootstrap, topics)
        with (
            detector_process(
                bootstrap, topics, f"{topic_prefix}-g", MODEL_DIR, tmp_path / "detector.log"
            ) as detector,
            producer_log.open("ab") as log,
        ):
            detector.wait_ready()
            producer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "producer",
                    "--bootstrap-servers",
                    bootstrap,
                    "--beats-topic",
                    topics.beats,
                    "--no-create-topics",
                    "--loop",
                    "--rate",
                    "300",
                    "--first-seq",
                    "0",
                    "--progress-interval-s",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
            try:
                wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= 300, 60, "300")
                broker.kill()
                time.sleep(3)  # beats pile up in the producer; the detector loses the group
                producer.send_signal(signal.SIGTERM)
                detector.signal(signal.SIGTERM)
                # compose sends SIGKILL 10 s after SIGTERM: a clean stop must fit in it.
                producer_code = producer.wait(timeout=10)
                detector_code = detector.wait(10)
            finally:
                if producer.poll() is None:
                    producer.kill()
    finally:
        broker.stop()
    output = producer_log.read_text()
    assert producer_code == 1, output[-2000:]
    assert re.search(r"stopping: \d+ beats not delivered", output), output[-2000:]
    assert len(re.findall("beats not delivered", output)) < 10, output[-2000:]
    assert detector_code == 0, detector.log_tail()
    assert "detector stopped after" in detector.log_tail()
