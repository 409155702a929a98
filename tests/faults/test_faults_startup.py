"""R8-R9: start-up faults of ``python -m detector``: no broker yet, a bad model artifact.

Both run the real command in a child process: R9 checks its exit code and its
whole stderr, R8 its readiness endpoint and its log while the broker is away.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from beatwatch.data import sha256_bytes
from beatwatch.kafka import KafkaSettings
from beatwatch.tools.broker import EmbeddedBroker, free_port
from producer.service import run as produce
from tests.support.faults import (
    Accounting,
    alert_keys,
    detector_process,
    producer_settings,
    replay_keys,
    source_of,
)
from tests.support.pipeline import (
    MODEL_DIR,
    REPO_ROOT,
    Topics,
    read_topic,
    wait_for,
)

# Each test runs with each client library (kafka-python, confluent-kafka).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("kafka_client")]


def _edit_json(key: str, value: object) -> Callable[[Path], None]:
    def edit(artifact: Path) -> None:
        config = json.loads((artifact / "artifact.json").read_text())
        config[key] = value
        (artifact / "artifact.json").write_text(json.dumps(config))

    return edit


def _corrupt_model_with_matching_checksum(artifact: Path) -> None:
    # Garbage whose checksum artifact.json agrees with: the zip reader must refuse it.
    garbage = b"PK\x03\x04 this is not a keras archive" * 10
    (artifact / "model.keras").write_bytes(garbage)
    _edit_json("model_sha256", sha256_bytes(garbage))(artifact)


def _flip_model_byte(artifact: Path) -> None:
    data = bytearray((artifact / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (artifact / "model.keras").write_bytes(bytes(data))


def _corrupt_json(artifact: Path) -> None:
    (artifact / "artifact.json").write_text("{not json")


BAD_MODELS: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    # case -> (how to break a copy of the test artifact (None: no directory), expected text)
    "missing-directory": (None, "no artifact directory"),
    "missing-model-file": (lambda a: (a / "model.keras").unlink(), "missing model.keras"),
    "corrupt-json": (_corrupt_json, "corrupt json"),
    "corrupt-model-file": (_corrupt_model_with_matching_checksum, "not a readable .keras file"),
    "checksum-mismatch": (_flip_model_byte, "checksum mismatch"),
    "wrong-input-length": (_edit_json("input_length", 141), "input length 141"),
    "unknown-format-version": (_edit_json("format_version", 99), "unknown format version 99"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_r9_a_bad_model_stops_the_detector_with_one_clear_line(case, tmp_path):
    breaker, expected = BAD_MODELS[case]
    artifact = tmp_path / "artifact"
    if breaker is not None:
        shutil.copytree(MODEL_DIR, artifact)
        breaker(artifact)
    command = [
        sys.executable,
        "-m",
        "detector",
        "--model",
        str(artifact),
        "--bootstrap-servers",
        f"127.0.0.1:{free_port()}",
        "--metrics-port",
        "-1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    print(f"\n[R9 {case}] exit {result.returncode}: {lines}")
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("beatwatch detect: error: "), lines[0]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_r8_broker_down_at_start_up_not_ready_then_working_when_it_appears(
    topic_prefix, all_alert_model, ecg_samples, tmp_path
):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    topics = Topics.named(topic_prefix)
    n, streams = 500, 8
    log_path = tmp_path / "detector.log"
    with detector_process(bootstrap, topics, f"{topic_prefix}-g", all_alert_model, log_path) as det:
        wait_for(lambda: det.http_status("/ready") == 503, 60, "the endpoint (not ready)")
        down_since = time.monotonic()
        # Stay down long enough for several attempt windows (0.5, 1, 2 s backoff + 5 s each).
        while time.monotonic() - down_since < 12:
            assert det.http_status("/ready") == 503
            assert det.http_status("/healthz") == 200
            time.sleep(0.5)
        down_log = log_path.read_text()
        attempts = [
            line
            for line in down_log.splitlines()
            if re.search(r"WARNING detector\.service: broker \S+ not reachable", line)
        ]
        problems = [
            line
            for line in down_log.splitlines()
            if re.search(r" (WARNING|ERROR|CRITICAL) ", line) and "not reachable" not in line
        ]
        with EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log") as broker:
            broker_up = time.monotonic()
            det.wait_ready(60)
            ready_after_s = time.monotonic() - broker_up
            stats = produce(
                producer_settings(
                    broker.bootstrap_servers, topics.beats, rate_hz=0, streams=streams
                ),
                source_of(ecg_samples, n),
                threading.Event(),
            )
            assert stats.acknowledged == n
            wait_for(lambda: det.value("beatwatch_beats_scored_total") >= n, 60, "all scored")
            scored = int(det.value("beatwatch_beats_scored_total"))
            records = read_topic(KafkaSettings(broker.bootstrap_servers), topics.alerts, n)
    account = Accounting(replay_keys(n, streams), alert_keys(records))
    print(
        "\n"
        + account.line(
            "R8",
            scored=scored,
            attempt_lines_while_down=len(attempts),
            other_warnings=len(problems),
            ready_after_broker_s=round(ready_after_s, 1),
        )
    )
    for line in attempts:
        print("   ", line[:160])
    assert 2 <= len(attempts) <= 6, down_log[-3000:]
    assert not problems, problems
    assert "Traceback" not in down_log
    assert scored == n and account.lost == 0 and account.duplicates == 0
