"""A live model switch while beats flow at 2,000/s: nothing lost, nothing scored twice.

The detector watches a model root; two versions of the shipped model whose
thresholds are below every score make every beat alert, so the alerts topic
accounts for every scored beat (with its partition, offset and the version
that scored it). A corrupt version published in the middle is refused while
the running one keeps scoring.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from beatwatch.artifact import content_sha256, load_artifact
from beatwatch.data import load_ecg5000
from beatwatch.model_store import POINTER_FILE, publish
from producer.service import ProducerSettings
from producer.service import run as produce
from producer.source import ReplaySource
from tests.support.pipeline import (
    MODEL_DIR,
    Topics,
    create_topics,
    detector_settings,
    read_topic,
    running_detector,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RATE_HZ = 2000
SECONDS = 12
STREAMS = 32


def always_alerting(target: Path, threshold: float) -> Path:
    """The shipped model with ``threshold`` below every score, sealed as its own version."""
    shutil.copytree(MODEL_DIR, target)
    config = json.loads((target / "artifact.json").read_text())
    config["threshold"] = {**config["threshold"], "value": threshold}
    content = content_sha256(target / "model.keras", config)
    config["content_sha256"] = content
    config["model_version"] = f"{config['name']}-{content[:12]}"
    (target / "artifact.json").write_text(json.dumps(config))
    return target


def test_switch_at_one_batch_boundary_loses_and_repeats_no_beat(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    first = always_alerting(tmp_path / "a", -1.0)
    second = always_alerting(tmp_path / "b", -2.0)
    corrupt = always_alerting(tmp_path / "c", -3.0)
    with (corrupt / "model.keras").open("ab") as handle:
        handle.write(b"\0")
    version_a, version_b = load_artifact(first).model_version, load_artifact(second).model_version
    root = tmp_path / "root"
    publish(first, root)

    dataset = load_ecg5000()
    n = RATE_HZ * SECONDS
    rows = np.arange(n) % len(dataset.x)
    source = ReplaySource(dataset.x[rows], dataset.normal[rows].astype(np.int64), rows)
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    # A longer session than the suite's 6 s: a rebalance on a loaded machine would
    # redeliver a batch, which this test must not mistake for a double score.
    settings = detector_settings(
        kafka_bootstrap,
        topics,
        f"{topic_prefix}-g",
        model_dir=root,
        model_poll_s=0.2,
        session_timeout_ms=10_000,
    )
    producer = ProducerSettings(
        kafka=kafka,
        topic=topics.beats,
        rate_hz=RATE_HZ,
        streams=STREAMS,
        wire_format="binary",
        progress_interval_s=0,
        create_topics=False,
        first_seq=0,
    )
    with running_detector(settings) as detector:
        wait_for(lambda: detector.value("beatwatch_ready") == 1.0, 60, "partitions assigned")
        produced: list[Any] = []
        flow = threading.Thread(
            target=lambda: produced.append(produce(producer, source, threading.Event()))
        )
        flow.start()
        # A third of the way in: switch; two thirds: a corrupt version is refused.
        wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= n / 3, 60, "flow")
        published_ms = time.time_ns() // 1_000_000
        publish(second, root)
        wait_for(lambda: detector.value("beatwatch_model_switches_total") == 1, 30, "switch")
        wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= 2 * n / 3, 60, "flow")
        shutil.copytree(corrupt, root / "versions" / "corrupt")
        (root / POINTER_FILE).write_text("versions/corrupt\n")
        wait_for(
            lambda: detector.value("beatwatch_model_refusals_total", reason="artifact") == 1,
            30,
            "refusal",
        )
        flow.join()
        assert produced[0].acknowledged == n and produced[0].errors == 0
        wait_for(lambda: detector.value("beatwatch_beats_scored_total") >= n, 60, "all scored")
        # Redelivery would score a batch twice by design; this run must have none.
        assert detector.value("beatwatch_commit_failures_total") == 0
        assert detector.value("beatwatch_broker_errors_total") == 0
        assert detector.value("beatwatch_model_switches_total") == 1
        assert (
            detector.value("beatwatch_model_info", model_version=version_b, input_length="140") == 1
        )
        assert detector.value("beatwatch_model_threshold") == -2.0

    alerts = [orjson.loads(r.value) for r in read_topic(kafka, topics.alerts, n, timeout_s=60)]
    # Every beat scored exactly once: one alert per (stream, seq) and per source offset.
    assert len(alerts) == n
    assert len({(a["stream"], a["seq"]) for a in alerts}) == n
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        by_partition[alert["partition"]].append(alert)
    assert len(by_partition) == 4
    for partition, items in by_partition.items():
        items.sort(key=lambda a: a["offset"])
        assert [a["offset"] for a in items] == list(range(len(items))), partition
        versions = [a["model_version"] for a in items]
        # One switch per partition, A then B, never the corrupt version.
        switch = versions.index(version_b)
        assert set(versions[:switch]) == {version_a} and set(versions[switch:]) == {version_b}
    assert Counter(a["model_version"] for a in alerts).keys() == {version_a, version_b}
    # All partitions switched at the same batch boundary: every alert of a batch
    # carries the batch's detected_ts_ms, and no A batch comes after a B batch.
    last_a = max(a["detected_ts_ms"] for a in alerts if a["model_version"] == version_a)
    first_b = min(a["detected_ts_ms"] for a in alerts if a["model_version"] == version_b)
    assert last_a <= first_b

    # Latency while the new version loads and warms (publish to switch) and for 1 s after.
    latency_ms = np.array([a["detected_ts_ms"] - a["ts_ms"] for a in alerts], np.float64)
    detected = np.array([a["detected_ts_ms"] for a in alerts], np.float64)
    during = (detected >= published_ms) & (detected <= first_b + 1000)
    print(
        f"\n{n} beats at {RATE_HZ}/s, switch {version_a} -> {version_b} "
        f"{first_b - published_ms} ms after publishing: p99 produce->detect "
        f"{np.percentile(latency_ms, 99):.0f} ms overall, "
        f"{np.percentile(latency_ms[during], 99):.0f} ms from the publish to 1 s after the "
        f"switch ({int(during.sum())} beats, max {latency_ms[during].max():.0f} ms)"
    )
