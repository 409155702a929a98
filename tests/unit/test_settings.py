"""Configuration refused where it is read: one ConfigError line, never a traceback or a hang."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import detector.cli
import producer.cli
from beatwatch.errors import ConfigError
from beatwatch.exposition import MetricsServer
from beatwatch.kafka import KafkaSettings
from beatwatch.settings import add_flag, int_between
from detector.service import DetectorSettings
from producer.service import ProducerSettings, run
from producer.source import ReplaySource, load_source, parse_row_ranges

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg5000"


def test_a_switch_variable_that_is_not_a_boolean_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BEATWATCH_LOOP", "maybe")
    with pytest.raises(ConfigError, match=r"BEATWATCH_LOOP='maybe': not a boolean"):
        add_flag(argparse.ArgumentParser(), "--loop", help="start over")


@pytest.mark.parametrize(
    ("cli", "argv"),
    [
        (producer.cli, ["--partitions", "99999999999999999999"]),
        (producer.cli, ["--streams", "99999999999999999999"]),
        (producer.cli, ["--linger-ms", "100000"]),
        (producer.cli, ["--metrics-port", "70000"]),
        (detector.cli, ["--session-timeout-ms", "100"]),
        (detector.cli, ["--fetch-max-wait-ms", "30000"]),
        (detector.cli, ["--max-poll-interval-ms", "3000000000"]),
        (detector.cli, ["--scoring-threads", "3000000000"]),
        (detector.cli, ["--metrics-port", "-5"]),
    ],
)
def test_values_the_kafka_client_or_memory_cannot_take_are_usage_errors(
    cli: object, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert "must be in [" in capsys.readouterr().err


def test_int_between_accepts_its_bounds() -> None:
    parse = int_between(-1, 65535)
    assert (parse("-1"), parse("0"), parse("65535")) == (-1, 0, 65535)


def test_a_detector_never_reads_the_topics_it_writes() -> None:
    with pytest.raises(ConfigError, match="beats, alerts and dead-letter topics must differ"):
        DetectorSettings(kafka=KafkaSettings(), model_dir=MODEL_DIR, dlq_topic="ecg-beats")


@pytest.mark.parametrize("servers", ["127.0.0.1:abc", "kafka:0", "a:9092,b:99999"])
def test_a_malformed_bootstrap_port_is_refused_before_any_connection(servers: str) -> None:
    with pytest.raises(ConfigError, match=r"the port must be a number in 1\.\.65535"):
        DetectorSettings(kafka=KafkaSettings(bootstrap_servers=servers), model_dir=MODEL_DIR)


def test_a_metrics_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port}: cannot listen \(Address"):
            MetricsServer(CollectorRegistry(), port, host="127.0.0.1")


def test_row_ranges_are_checked_before_they_are_built() -> None:
    with pytest.raises(ConfigError, match="row 9999999999 is outside the data set"):
        parse_row_ranges("0-9999999999", 10)  # a MemoryError before


def test_rows_and_rows_from_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="give --rows or --rows-from, not both"):
        load_source(None, label_column="-1", normal_label=1.0, rows="0-9", rows_from="x")


def test_a_stop_while_the_broker_is_unreachable_ends_the_producer_at_once() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = ProducerSettings(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
    source = ReplaySource(samples=np.zeros((10, 140), np.float32), labels=None, rows=np.arange(10))
    stop = threading.Event()
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(run(settings, source, stop)))
    worker.start()
    time.sleep(2)  # waiting for the broker: ensure_topics retries for up to 30 s
    stop.set()
    worker.join(timeout=10)  # before: it waited out the 30 s, then raised
    assert not worker.is_alive()
    assert getattr(result[0], "attempted", None) == 0
