"""Producer -> real broker over TCP -> detector (real saved model) -> alerts and dead letters."""

from __future__ import annotations

import json
import threading

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from kafka import KafkaProducer

from beatwatch.artifact import load_artifact
from beatwatch.data import load_ecg5000
from beatwatch.tools import promtext
from beatwatch.wire import BINARY_CONTENT_TYPE, BINARY_PREFIX
from detector.batch import DLQ_REASON, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC
from producer.service import ProducerSettings
from producer.service import run as produce
from producer.source import ReplaySource
from tests.support.clients import client_settings
from tests.support.pipeline import (
    MODEL_DIR,
    REPO_ROOT,
    Topics,
    create_topics,
    detector_settings,
    read_topic,
    running_detector,
    scrape_port,
    wait_for,
)

# Every test runs with each client library (kafka-python, confluent-kafka).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("kafka_client")]
SCHEMAS = REPO_ROOT / "docs" / "schemas"
STREAMS = 16


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


@pytest.fixture(scope="module")
def test_rows() -> ReplaySource:
    """The first 400 held-out test rows the shipped artifact records."""
    data = load_artifact(MODEL_DIR).config.data
    test = None if data is None else data.test_rows()
    assert test
    rows = np.array(test[:400])
    dataset = load_ecg5000()
    return ReplaySource(dataset.x[rows], dataset.normal[rows].astype(np.int64), rows)


@pytest.fixture(scope="module")
def offline_over_threshold(test_rows: ReplaySource) -> set[tuple[str, int]]:
    """(stream, seq) of the beats the artifact scores over threshold offline."""
    artifact = load_artifact(MODEL_DIR)
    scores, _ = artifact.scorer().score(test_rows.samples)
    over = [int(i) for i in np.flatnonzero(scores > artifact.threshold)]
    assert 0 < len(over) < len(scores)  # the replay has both kinds, or the test proves little
    return {(f"p-{i % STREAMS:04d}", i // STREAMS) for i in over}


def replay(
    bootstrap: str, topic: str, source: ReplaySource, fmt: str, first_seq: int | None = 0
) -> None:
    settings = ProducerSettings(
        kafka=client_settings(bootstrap),
        topic=topic,
        rate_hz=0,
        streams=STREAMS,
        wire_format=fmt,
        progress_interval_s=0,
        create_topics=False,
        first_seq=first_seq,
    )
    stats = produce(settings, source, threading.Event())
    assert stats.acknowledged == len(source.samples) and stats.errors == 0


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_every_beat_is_scored_and_alerts_are_exactly_the_offline_ones(
    kafka_bootstrap, topic_prefix, test_rows, offline_over_threshold, fmt
):
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    replay(kafka_bootstrap, topics.beats, test_rows, fmt)
    settings = detector_settings(kafka_bootstrap, topics, f"{topic_prefix}-g")
    n = len(test_rows.samples)
    with running_detector(settings) as detector:
        wait_for(
            lambda: detector.value("beatwatch_beats_scored_total") >= n, 60, "all beats scored"
        )
        wait_for(lambda: detector.value("beatwatch_commits_total") >= 1, 10, "a commit")
        live = scrape_port(settings.metrics_port)
    alerts = [
        orjson.loads(r.value) for r in read_topic(kafka, topics.alerts, len(offline_over_threshold))
    ]
    alert_keys = {(a["stream"], a["seq"]) for a in alerts}
    print(
        f"\n[{fmt}] produced {n}, scored {int(detector.value('beatwatch_beats_scored_total'))}, "
        f"alerts {len(alerts)}, offline over threshold {len(offline_over_threshold)}"
    )
    assert alert_keys == offline_over_threshold
    assert len(alerts) == len(alert_keys)  # no duplicates in a clean run
    assert detector.value("beatwatch_beats_scored_total") == n
    assert detector.value("beatwatch_invalid_beats_total", reason="decode") == 0
    # The live HTTP endpoint says the same as the registry.
    assert promtext.value(live, "beatwatch_beats_consumed_total") == n
    assert promtext.value(live, "beatwatch_beats_scored_total") == n
    assert promtext.value(live, "beatwatch_alerts_total") == len(alerts)
    assert promtext.value(live, "beatwatch_ready") == 1.0
    schema = validator("alert.schema.json")
    for alert in alerts:
        schema.validate(alert)
        assert alert["explanation"]["regions"], "ECG5000 alerts name the P/QRS/ST/T regions"
    if fmt == "json":
        beat_schema = validator("beat.schema.json")
        for record in read_topic(kafka, topics.beats, n)[:50]:
            beat_schema.validate(orjson.loads(record.value))


BAD_MESSAGES: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str]] = [
    (b"p-x", b"{not json", [], "decode"),
    (
        b"p-x",
        orjson.dumps({"stream": "p-x", "seq": 1, "ts_ms": 1, "samples": [0.1] * 12}),
        [],
        "length",
    ),
    (
        b"p-x",
        orjson.dumps({"stream": "p-x", "seq": 1, "ts_ms": 1, "samples": [0.1] * 139 + [1e39]}),
        [],
        "non-finite",
    ),
    (b"p-x", b"[" + b"0.1," * 20_000 + b"0.1]", [], "too-large"),
    (b"p-x", b"", [], "empty"),
    (
        b"p-x",
        BINARY_PREFIX.pack(1, 1, 1, 1, 0) + np.full(140, np.nan, "<f4").tobytes(),
        [("content-type", BINARY_CONTENT_TYPE.encode())],
        "non-finite",
    ),
    (None, b"\x01" * 560, [("content-type", BINARY_CONTENT_TYPE.encode())], "missing-key"),
    (b"p-x", b"garbage", [("content-type", b"text/plain")], "content-type"),
    (
        b"p-x",
        orjson.dumps({"stream": "p-x", "seq": "one", "ts_ms": 1, "samples": [0.1] * 140}),
        [],
        "schema",
    ),
]


def test_malformed_messages_land_in_the_dead_letter_topic_while_good_beats_flow(
    kafka_bootstrap, topic_prefix, test_rows
):
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    good = ReplaySource(test_rows.samples[:100], test_rows.labels[:100], test_rows.rows[:100])
    replay(kafka_bootstrap, topics.beats, good, "json")
    producer = KafkaProducer(**kafka.client_kwargs())
    for key, value, headers, _ in BAD_MESSAGES:
        producer.send(topics.beats, key=key, value=value, headers=headers or None, partition=0)
    producer.flush()
    producer.close()
    replay(kafka_bootstrap, topics.beats, good, "binary")
    settings = detector_settings(kafka_bootstrap, topics, f"{topic_prefix}-g")
    total = 200 + len(BAD_MESSAGES)
    with running_detector(settings) as detector:
        wait_for(
            lambda: detector.value("beatwatch_beats_consumed_total") >= total, 60, "all consumed"
        )
        wait_for(
            lambda: detector.value("beatwatch_dead_letters_total") >= len(BAD_MESSAGES), 10, "DLQ"
        )
        live = scrape_port(settings.metrics_port)
    letters = read_topic(kafka, topics.dlq, len(BAD_MESSAGES))
    reasons = sorted(dict(r.headers)[DLQ_REASON].decode() for r in letters)
    print(
        f"\nconsumed {total}, scored {int(detector.value('beatwatch_beats_scored_total'))}, "
        f"dead letters {len(letters)}: {reasons}"
    )
    assert reasons == sorted(reason for *_, reason in BAD_MESSAGES)
    assert detector.value("beatwatch_beats_scored_total") == 200
    header_schema = validator("dead-letter-headers.schema.json")
    for record in letters:
        letter_headers = dict(record.headers)
        header_schema.validate(
            {name: raw.decode() for name, raw in letter_headers.items() if name.startswith("bw-")}
        )
        assert letter_headers[DLQ_SOURCE_TOPIC] == topics.beats.encode()
        assert letter_headers[DLQ_SOURCE_PARTITION] == b"0"
        assert int(letter_headers[DLQ_SOURCE_OFFSET]) >= 0
    originals = {(k, v) for k, v, _, _ in BAD_MESSAGES}
    assert {(r.key, r.value or b"") for r in letters} == originals
    for _, _, _, reason in BAD_MESSAGES:
        expected = sum(1 for *_, r in BAD_MESSAGES if r == reason)
        assert promtext.value(live, "beatwatch_invalid_beats_total", reason=reason) == expected
    assert promtext.value(live, "beatwatch_dead_letters_total") == len(BAD_MESSAGES)
    assert promtext.value(live, "beatwatch_beats_consumed_total") == total


def test_two_detectors_in_one_group_split_partitions_and_score_every_beat(
    kafka_bootstrap, topic_prefix, test_rows, offline_over_threshold
):
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    group = f"{topic_prefix}-g"
    first_settings = detector_settings(kafka_bootstrap, topics, group)
    second_settings = detector_settings(kafka_bootstrap, topics, group)
    n = len(test_rows.samples)
    with running_detector(first_settings) as first, running_detector(second_settings) as second:

        def total(name: str) -> list[float]:
            return [first.value(name), second.value(name)]

        wait_for(lambda: total("beatwatch_assigned_partitions") == [2.0, 2.0], 60, "a 2+2 split")
        replay(kafka_bootstrap, topics.beats, test_rows, "binary")
        wait_for(lambda: sum(total("beatwatch_beats_scored_total")) >= n, 60, "all beats scored")
        split = (
            first.value("beatwatch_beats_scored_total"),
            second.value("beatwatch_beats_scored_total"),
        )
    alerts = [
        orjson.loads(r.value) for r in read_topic(kafka, topics.alerts, len(offline_over_threshold))
    ]
    print(f"\nsplit of {n} beats between two detectors: {split}; alerts {len(alerts)}")
    assert sum(split) == n
    assert min(split) > 0
    assert {(a["stream"], a["seq"]) for a in alerts} == offline_over_threshold


def test_a_batch_linger_gathers_paced_beats_into_fewer_batches_and_loses_none(
    kafka_bootstrap, topic_prefix, test_rows, offline_over_threshold
):
    """--batch-linger-ms on a live stream: same alerts, far fewer batches than without it."""
    n = len(test_rows.samples)
    batches = {}
    for linger_ms in (0, 200):
        topics = Topics.named(f"{topic_prefix}-l{linger_ms}")
        kafka = create_topics(kafka_bootstrap, topics)
        settings = detector_settings(
            kafka_bootstrap, topics, f"{topic_prefix}-l{linger_ms}-g", batch_linger_ms=linger_ms
        )
        with running_detector(settings) as detector:
            wait_for(lambda: detector.value("beatwatch_ready") == 1.0, 60, "partitions assigned")
            # A short producer linger spreads the beats evenly, so that the
            # batching measured here is the detector's own.
            paced = ProducerSettings(
                kafka=kafka,
                topic=topics.beats,
                rate_hz=200,
                streams=STREAMS,
                wire_format="binary",
                progress_interval_s=0,
                create_topics=False,
                linger_ms=5,
                first_seq=0,
            )
            assert produce(paced, test_rows, threading.Event()).acknowledged == n
            wait_for(
                lambda: detector.value("beatwatch_beats_scored_total") >= n, 60, "all beats scored"
            )
            batches[linger_ms] = detector.value("beatwatch_batch_size_beats_count")
        alerts = [
            orjson.loads(r.value)
            for r in read_topic(kafka, topics.alerts, len(offline_over_threshold))
        ]
        assert {(a["stream"], a["seq"]) for a in alerts} == offline_over_threshold
    print(
        f"\n{n} beats at 200/s: batches without a linger {batches[0]:.0f}, "
        f"with 200 ms {batches[200]:.0f}"
    )
    # 2 s of beats: about ten 200 ms batches, against a few beats per batch without.
    assert batches[200] <= n / 10 < batches[0]


def test_producer_reruns_never_reuse_a_streams_seq(kafka_bootstrap, topic_prefix, test_rows):
    """Two runs onto one topic share no (stream, seq).

    Alerts are identified by stream/seq/model: a rerun numbering from 0 again
    would have its alerts dropped as repeats by deduplicating subscribers.
    """
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    few = ReplaySource(test_rows.samples[:64], test_rows.labels[:64], test_rows.rows[:64])
    replay(kafka_bootstrap, topics.beats, few, "json", first_seq=None)
    replay(kafka_bootstrap, topics.beats, few, "json", first_seq=None)
    beats = [orjson.loads(r.value) for r in read_topic(kafka, topics.beats, 128)]
    keys = [(b["stream"], b["seq"]) for b in beats]
    per_stream: dict[str, list[int]] = {}
    for stream, seq in keys:
        per_stream.setdefault(stream, []).append(seq)
    print(f"\nseqs of p-0000 over two runs: {sorted(per_stream['p-0000'])}")
    assert len(keys) == 128 and len(set(keys)) == 128
    for seqs in per_stream.values():
        # 4 beats per stream per run: consecutive within a run, far apart across.
        first, second = sorted(seqs)[:4], sorted(seqs)[4:]
        assert first == list(range(first[0], first[0] + 4))
        assert second == list(range(second[0], second[0] + 4)) and second[0] > first[-1]
