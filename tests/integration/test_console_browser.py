"""``beatwatch console`` as a person uses it: a real chromium against the console on a real broker.

The console runs as a subprocess (``beatwatch console``), the detector as
``beatwatch detect`` runs it, and the page is driven in Debian's headless
chromium. What is drawn is checked against the data: the beat's path is the
beat's samples scaled to the plot, the reconstruction's path the artifact's
reconstruction, the error shading the artifact's per-sample error.
"""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from beatwatch.artifact import load_artifact
from beatwatch.clients import ensure_topics
from beatwatch.data import load_ecg5000
from beatwatch.kafka import KafkaSettings
from beatwatch.scoring import MIN_RANGE
from beatwatch.tools.broker import EmbeddedBroker
from beatwatch.wire import Beat
from tests.support.console import (
    SCREENSHOT,
    browser_page,
    chromium_or_skip,
    expected_points,
    path_points,
    running_console,
    send_alert_for,
    send_beat,
)
from tests.support.pipeline import (
    MODEL_DIR,
    Topics,
    create_topics,
    detector_settings,
    running_detector,
    wait_for,
)

pytestmark = pytest.mark.integration
STREAMS = 4
# No reload: a mark set on the page's window survives only as long as the page.
MARK = "window.__sameDocument = true"
SAME_DOCUMENT = "window.__sameDocument === true"


@pytest.fixture(scope="module")
def artifact():
    return load_artifact(MODEL_DIR)


@pytest.fixture(scope="module")
def ecg():
    return load_ecg5000()


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    chromium_or_skip()


def console_args(bootstrap: str, topics: Topics, prefix: str, metrics_url: str = "") -> list[str]:
    return [
        "--bootstrap-servers",
        bootstrap,
        "--beats-topic",
        topics.beats,
        "--alerts-topic",
        topics.alerts,
        "--incidents-topic",
        f"{prefix}-incidents",
        "--model",
        str(MODEL_DIR),
        "--metrics-url",
        metrics_url,
    ]


def replay(ecg, artifact, prefix: str, n: int) -> tuple[list[Beat], set[tuple[str, int]]]:
    """``n`` ECG5000 beats over STREAMS streams, half of them abnormal; the ones that alert."""
    abnormal = np.flatnonzero(~ecg.normal)[: n // 2]
    normal = np.flatnonzero(ecg.normal)[: n - len(abnormal)]
    rows = np.random.default_rng(7).permutation(np.concatenate([abnormal, normal]))
    now_ms = int(time.time() * 1000)
    beats = [
        Beat(f"{prefix}-s{i % STREAMS}", i // STREAMS, now_ms + i, ecg.x[row].astype(np.float32))
        for i, row in enumerate(rows)
    ]
    scores, _ = artifact.scorer().score(np.stack([b.samples for b in beats]))
    alerting = {
        (b.stream, b.seq) for b, s in zip(beats, scores, strict=True) if s > artifact.threshold
    }
    return beats, alerting


def test_alerts_appear_live_and_a_selected_alert_draws_its_beat_and_reconstruction(
    kafka_bootstrap, topic_prefix, artifact, ecg, tmp_path
):
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    settings = detector_settings(kafka_bootstrap, topics, f"{topic_prefix}-g")
    metrics = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    with (
        running_detector(settings) as detector,
        running_console(
            *console_args(kafka_bootstrap, topics, topic_prefix, metrics),
            log_path=tmp_path / "console.log",
        ) as console,
        browser_page() as page,
    ):
        page.goto(console.url)
        page.evaluate(MARK)
        page.wait_for_selector("#status.ok")
        assert page.inner_text("#streams") == "no alerts yet"
        wait_for(lambda: detector.value("beatwatch_assigned_partitions") == 4, 60, "assignment")
        beats, alerting = replay(ecg, artifact, topic_prefix, 48)
        by_key = {(b.stream, b.seq): b for b in beats}
        producer = KafkaProducer(**kafka.client_kwargs())
        for beat in beats:
            send_beat(producer, topics.beats, beat)
        producer.close()

        # Every alert arrives in the open page, without a reload.
        page.wait_for_function(
            "n => document.getElementById('totals').textContent.startsWith(n + ' alerts')",
            arg=len(alerting),
        )
        assert page.evaluate(SAME_DOCUMENT)
        rows = page.locator(".stream-row")
        shown = set(rows.evaluate_all("rows => rows.map(r => r.dataset.stream)"))
        assert shown == {stream for stream, _ in alerting}
        assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.state)")) == {"alerting"}
        # Newest first: the stream of the last alerting beat heads the list.
        newest = max(alerting, key=lambda key: by_key[key].ts_ms)[0]
        assert rows.first.get_attribute("data-stream") == newest
        page.wait_for_function(
            "() => document.getElementById('health').textContent.includes('ready')"
        )

        # The incidents topic did not exist; once it does, an open incident shows.
        incidents = f"{topic_prefix}-incidents"
        ensure_topics(kafka, {incidents: 1})
        flagged = sorted(shown)[-1]
        producer = KafkaProducer(**kafka.client_kwargs())
        producer.send(
            incidents,
            key=flagged.encode(),
            value=orjson.dumps(
                {
                    "kind": "open",
                    "incident_id": f"incident/{flagged}/0/{artifact.model_version}",
                    "stream": flagged,
                    "severity": "critical",
                    "event_ts_ms": int(time.time() * 1000),
                }
            ),
        ).get(30)
        producer.close()
        page.wait_for_selector(f".stream-row[data-stream='{flagged}'][data-state='incident']")
        # The incident is the newest event: its stream heads the list.
        assert rows.first.get_attribute("data-stream") == flagged
        rows = page.locator(".stream-row")

        # Selecting a stream selects its newest alert and draws it.
        rows.nth(1).click()
        page.wait_for_function("() => document.getElementById('beat').dataset.drawn")
        alert_id = page.get_attribute("#beat", "data-drawn")
        stream, seq, version = alert_id.rsplit("/", 2)
        assert version == artifact.model_version
        beat = by_key[(stream, int(seq))]
        scorer = artifact.scorer()
        _, errors = scorer.score(beat.samples[None, :])
        reconstructed = np.asarray(scorer.reconstruct(beat.samples[None, :]), np.float64)[0]
        low, high = scorer.scaling.low, scorer.scaling.high
        reconstructed = reconstructed * np.maximum(high - low, MIN_RANGE) + low
        plot = {
            k: float(page.get_attribute("#beat", f"data-{k}"))
            for k in ("vmin", "vmax", "left", "top", "width", "height")
        }
        both = np.concatenate([beat.samples, reconstructed])
        assert plot["vmin"] == pytest.approx(both.min(), abs=1e-5)
        assert plot["vmax"] == pytest.approx(both.max(), abs=1e-5)
        drawn_beat = path_points(page.get_attribute("#beat-path", "d"))
        drawn_recon = path_points(page.get_attribute("#recon-path", "d"))
        np.testing.assert_allclose(drawn_beat, expected_points(beat.samples, plot), atol=2e-3)
        np.testing.assert_allclose(drawn_recon, expected_points(reconstructed, plot), atol=2e-3)
        # The reconstruction is the model's, not a copy of the beat.
        assert np.abs(drawn_recon - drawn_beat).max() > 1.0
        shaded = page.locator("#beat rect.err").evaluate_all(
            "rects => rects.map(r => Number(r.dataset.error))"
        )
        np.testing.assert_allclose(shaded, errors[0], rtol=1e-5, atol=1e-7)
        regions = page.locator("#beat rect.region").evaluate_all(
            "rects => rects.map(r => r.dataset.region)"
        )
        assert regions == [r["name"] for r in artifact.regions]
        meta = page.inner_text("#alert-meta")
        assert artifact.model_version in meta
        assert page.is_hidden("#refusal")

        # The stream's strip: its recent beats, the alerted ones marked.
        page.wait_for_selector(".strip-beat")
        strip = page.locator(".strip-beat").evaluate_all(
            "boxes => boxes.map(b => [Number(b.dataset.seq), b.classList.contains('alerted')])"
        )
        stream_beats = sorted(b.seq for b in beats if b.stream == stream)
        assert [s for s, _ in strip] == stream_beats[-len(strip) :]
        assert {s for s, marked in strip if marked} == {
            s for s, _ in strip if (stream, s) in alerting
        }
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert page.evaluate(SAME_DOCUMENT)


def test_bad_messages_show_as_error_rows_and_the_page_keeps_working(
    kafka_bootstrap, topic_prefix, artifact, ecg, tmp_path
):
    topics = Topics.named(topic_prefix)
    kafka = create_topics(kafka_bootstrap, topics)
    with (
        running_console(
            *console_args(kafka_bootstrap, topics, topic_prefix), log_path=tmp_path / "console.log"
        ) as console,
        browser_page() as page,
    ):
        page.goto(console.url)
        page.evaluate(MARK)
        page.wait_for_selector("#status.ok")
        producer = KafkaProducer(**kafka.client_kwargs())
        for value in (b"{not json", b"[1, 2, 3]", b'{"stream": "x"}'):
            producer.send(topics.alerts, key=b"k", value=value).get(30)
        page.wait_for_function("() => document.querySelectorAll('.error-row').length === 3")
        reasons = page.inner_text("#errors")
        assert "not JSON" in reasons and "not a JSON object" in reasons and "'seq'" in reasons
        # A stream id is shown as text, never run as markup.
        hostile = "<img src=x onerror=window.__injected=1>"
        beat = Beat(hostile, 1, int(time.time() * 1000), ecg.x[0].astype(np.float32))
        send_alert_for(producer, artifact, topics.beats, topics.alerts, beat)
        page.wait_for_selector(".stream-row")
        assert page.inner_text(".stream-row .name") == hostile
        # An alert from another model version is shown, but not re-scored.
        other = Beat(
            f"{topic_prefix}-other", 7, int(time.time() * 1000), ecg.x[1].astype(np.float32)
        )
        send_alert_for(
            producer,
            artifact,
            topics.beats,
            topics.alerts,
            other,
            model_version="ecg5000-000000000000",
        )
        producer.close()
        page.locator(".stream-row", has_text=f"{topic_prefix}-other").click()
        page.wait_for_selector("#refusal:not([hidden])")
        assert "ecg5000-000000000000" in page.inner_text("#refusal")
        assert artifact.model_version in page.inner_text("#refusal")
        assert page.locator("#beat-path").count() == 0
        assert page.evaluate(SAME_DOCUMENT)
        assert page.evaluate("window.__injected === undefined")
        assert hostile not in console.log() and f"{topic_prefix}-other" not in console.log()


def test_the_page_recovers_after_a_broker_restart(topic_prefix, artifact, ecg, tmp_path):
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        bootstrap = broker.bootstrap_servers
        topics = Topics.named(topic_prefix)
        kafka = create_topics(bootstrap, topics)
        with (
            running_console(
                *console_args(bootstrap, topics, topic_prefix), log_path=tmp_path / "console.log"
            ) as console,
            browser_page() as page,
        ):
            page.goto(console.url)
            page.evaluate(MARK)
            page.wait_for_selector("#status.ok")
            before = Beat(
                f"{topic_prefix}-before", 1, int(time.time() * 1000), ecg.x[0].astype(np.float32)
            )
            producer = KafkaProducer(**kafka.client_kwargs())
            send_alert_for(producer, artifact, topics.beats, topics.alerts, before)
            producer.close()
            page.wait_for_selector(f".stream-row[data-stream='{before.stream}']")

            broker.kill()
            page.wait_for_selector("#status.bad")
            broker.start()  # same port; memory storage: the topics are gone
            page.wait_for_function(
                "() => document.getElementById('status').textContent.startsWith('waiting for topic')"
            )
            ensure_topics(KafkaSettings(bootstrap), {topics.beats: 4, topics.alerts: 4})
            after = Beat(
                f"{topic_prefix}-after", 1, int(time.time() * 1000), ecg.x[2].astype(np.float32)
            )
            producer = KafkaProducer(**kafka.client_kwargs())
            send_alert_for(producer, artifact, topics.beats, topics.alerts, after)
            producer.close()
            page.wait_for_selector(f".stream-row[data-stream='{after.stream}']")
            page.wait_for_selector("#status.ok")
            assert page.evaluate(SAME_DOCUMENT)
            # What the page held before the outage is still there.
            assert page.locator(f".stream-row[data-stream='{before.stream}']").count() == 1
            # The alert read after the restart is drawn from the new beats topic.
            page.locator(f".stream-row[data-stream='{after.stream}']").click()
            page.wait_for_function("() => document.getElementById('beat').dataset.drawn")
            assert page.get_attribute("#beat", "data-drawn").startswith(after.stream + "/")
    finally:
        broker.stop()
