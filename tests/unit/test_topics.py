"""Topic creation: the replication factor option, and a broker that refuses to create."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import InvalidReplicationFactorError
from prometheus_client import CollectorRegistry

import detector.cli
import producer.cli
from beatwatch.clients import TopicCreationError, ensure_topics
from beatwatch.errors import ConfigError
from beatwatch.kafka import KafkaSettings
from detector.service import Detector, DetectorSettings

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg5000"


class RefusingAdmin:
    """Answers like an Apache Kafka cluster with fewer brokers than the replication factor."""

    def __init__(self, **_: Any) -> None:
        pass

    def list_topics(self) -> list[str]:
        return ["already-there"]

    def create_topics(self, new_topics: list[Any]) -> None:
        raise InvalidReplicationFactorError(
            "Replication factor: 3 larger than available brokers: 1"
        )

    def close(self) -> None:
        pass


def test_a_refused_topic_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kafka.admin.KafkaAdminClient", RefusingAdmin)
    monkeypatch.setattr("beatwatch.kafka.probe.broker_listens", lambda *_, **__: True)
    with pytest.raises(TopicCreationError) as refused:
        ensure_topics(KafkaSettings(), {"already-there": 4, "new": 4}, replication_factor=3)
    message = str(refused.value)
    assert "refused to create new with replication factor 3" in message
    assert "larger than available brokers" in message
    assert "\n" not in message
    # A ConfigError, so every command's top level prints it as its one error line.
    assert isinstance(refused.value, ConfigError)


@pytest.mark.tensorflow
def test_the_detector_stops_on_a_refusal_instead_of_retrying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def refuse(*_: Any, replication_factor: int, **__: Any) -> None:
        calls.append(replication_factor)
        raise TopicCreationError("refused")

    monkeypatch.setattr("detector.service.ensure_topics", refuse)
    monkeypatch.setattr("detector.service.broker_listens", lambda *_, **__: True)
    registry = CollectorRegistry()
    settings = DetectorSettings(
        kafka=KafkaSettings(), model_dir=MODEL_DIR, metrics_port=-1, replication_factor=3
    )
    with pytest.raises(TopicCreationError):
        Detector(settings, registry).connect(threading.Event())
    assert calls == [3]
    assert registry.get_sample_value("beatwatch_broker_errors_total") == 0


@pytest.mark.parametrize("cli", [producer.cli, detector.cli], ids=["produce", "detect"])
def test_replication_factor_comes_from_flag_or_environment(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parse(argv: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        return parser.parse_args(argv)

    monkeypatch.delenv("BEATWATCH_REPLICATION_FACTOR", raising=False)
    assert parse([]).replication_factor == 1
    monkeypatch.setenv("BEATWATCH_REPLICATION_FACTOR", "3")
    assert parse([]).replication_factor == 3
    assert parse(["--replication-factor", "2"]).replication_factor == 2
    if cli is detector.cli:
        assert cli.settings_from_args(parse([])).replication_factor == 3
    monkeypatch.setenv("BEATWATCH_REPLICATION_FACTOR", "0")
    with pytest.raises(
        ConfigError, match=r"BEATWATCH_REPLICATION_FACTOR='0': must be in \[1, 32767\]"
    ):
        parse([])


@pytest.mark.tensorflow
def test_retrying_an_absent_broker_leaks_no_threads() -> None:
    # kafka-python 3.0 leaves a thread and sockets behind for each client whose
    # bootstrap fails; the detector retries for as long as an outage lasts.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = DetectorSettings(
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"),
        model_dir=MODEL_DIR,
        metrics_port=-1,
        retry_backoff_max_s=0.2,
    )
    registry = CollectorRegistry()
    detector = Detector(settings, registry)
    stop = threading.Event()
    before = threading.active_count()
    worker = threading.Thread(target=detector.connect, args=(stop,))
    worker.start()
    time.sleep(4)  # several attempts
    stop.set()
    worker.join(10)
    assert (registry.get_sample_value("beatwatch_broker_errors_total") or 0) >= 1
    assert threading.active_count() <= before
