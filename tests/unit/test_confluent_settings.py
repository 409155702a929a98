"""The confluent adapter's librdkafka settings: TLS/SASL mapped, tansu's traps avoided, no secret shown."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest

from beatwatch.clients import ALERT_PUBLISHER, ClientSettingsError, ConsumerOptions
from beatwatch.clients.confluent import contact_in_stats
from beatwatch.clients.factory import new_consumer
from beatwatch.errors import ConfigError
from beatwatch.kafka import (
    SASL_PASSWORD_ENV,
    KafkaSettings,
    add_kafka_options,
    kafka_settings_from_args,
)

confluent = pytest.importorskip("beatwatch.clients.confluent")

SECRET = "s3cr3t-Pa55-confluent"


def parse(argv: list[str]) -> KafkaSettings:
    parser = argparse.ArgumentParser()
    add_kafka_options(parser)
    return kafka_settings_from_args(parser.parse_args(argv))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
        paths[name] = str(tmp_path / name)
    return paths


def test_the_client_comes_from_the_flag_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEATWATCH_KAFKA_CLIENT", raising=False)
    assert parse([]).client == "kafka-python"
    assert parse(["--kafka-client", "confluent"]).client == "confluent"
    monkeypatch.setenv("BEATWATCH_KAFKA_CLIENT", "confluent")
    assert parse([]).client == "confluent"
    monkeypatch.setenv("BEATWATCH_KAFKA_CLIENT", "librdkafka")
    with pytest.raises(ConfigError, match="BEATWATCH_KAFKA_CLIENT='librdkafka': choose from"):
        parse([])


def test_tls_and_sasl_map_to_librdkafka_names(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    monkeypatch.setenv(SASL_PASSWORD_ENV, SECRET)
    settings = parse(
        [
            "--kafka-client",
            "confluent",
            "--bootstrap-servers",
            "k1:9093,k2:9093",
            "--security-protocol",
            "SASL_SSL",
            "--ssl-cafile",
            files["ca.pem"],
            "--ssl-certfile",
            files["client.pem"],
            "--ssl-keyfile",
            files["client.key"],
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "detector",
        ]
    )
    config = confluent.client_config(settings)
    assert config["bootstrap.servers"] == "k1:9093,k2:9093"
    assert config["security.protocol"] == "sasl_ssl"
    assert config["ssl.ca.location"] == files["ca.pem"]
    assert config["ssl.certificate.location"] == files["client.pem"]
    assert config["ssl.key.location"] == files["client.key"]
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "detector"
    assert config["sasl.password"] == SECRET
    assert SECRET not in repr(settings)


def test_a_setting_librdkafka_does_not_know_is_refused_in_one_line() -> None:
    settings = KafkaSettings(client="confluent", extra={"ssl_check_hostname": False})
    with pytest.raises(ClientSettingsError, match="ssl_check_hostname has no librdkafka"):
        confluent.client_config(settings)


def test_consumer_settings_avoid_tansus_traps(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, config: dict[str, Any]) -> None:
            seen.update(config)

    monkeypatch.setattr(confluent, "_Consumer", Recording)
    new_consumer(KafkaSettings(client="confluent"), ConsumerOptions(group_id="g"))
    assert seen["session.timeout.ms"] <= 10_000
    assert seen["queued.max.messages.kbytes"] >= 8 * 1024
    assert seen["enable.auto.commit"] is False
    assert seen["group.id"] == "g"


def test_publisher_is_idempotent_and_partitions_keys_like_java(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, config: dict[str, Any]) -> None:
            seen.update(config)

    monkeypatch.setattr(confluent, "_Producer", Recording)
    confluent.new_publisher(KafkaSettings(client="confluent"), ALERT_PUBLISHER)
    assert seen["enable.idempotence"] is True and seen["acks"] == "all"
    assert seen["partitioner"] == "murmur2_random"


def test_a_bad_setting_is_one_line_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SASL_PASSWORD_ENV, SECRET)
    settings = parse(
        [
            "--kafka-client",
            "confluent",
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-username",
            "u",
        ]
    )
    bad = KafkaSettings(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        extra={**settings.extra, "sasl_mechanism": "NOT-A-MECHANISM"},
        client="confluent",
    )
    with pytest.raises(ClientSettingsError) as caught:
        confluent.new_publisher(bad, ALERT_PUBLISHER)
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value)


def test_librdkafka_logs_go_through_python_logging_where_secrets_are_redacted() -> None:
    config = confluent.client_config(KafkaSettings(client="confluent"))
    assert isinstance(config["logger"], logging.Logger)
    assert config["logger"].name.startswith("beatwatch.")


def test_the_detector_refuses_a_poll_interval_librdkafka_would_reject() -> None:
    from detector.service import DetectorSettings

    with pytest.raises(ConfigError, match="--max-poll-interval-ms 700 is under --session-timeout"):
        DetectorSettings(
            kafka=KafkaSettings(client="confluent"), model_dir=Path("m"), max_poll_interval_ms=700
        )
    # kafka-python takes it (the fault suite's R5 relies on a 700 ms interval).
    DetectorSettings(kafka=KafkaSettings(), model_dir=Path("m"), max_poll_interval_ms=700)


def _stats(
    cgrp_state: str, coordinator_rxidle_us: int, data_rxidle_us: int = 1000
) -> dict[str, Any]:
    return {
        "cgrp": {"state": cgrp_state},
        "brokers": {
            "127.0.0.1:9092/1": {"state": "UP", "rxidle": data_rxidle_us},
            "GroupCoordinator": {"state": "UP", "rxidle": coordinator_rxidle_us},
        },
    }


def test_contact_needs_the_coordinator_to_have_answered_within_the_session() -> None:
    limit_us = 10_000_000
    assert contact_in_stats(_stats("up", 1_500_000), True, limit_us)
    # A silent cut: the connection still says UP, but nothing has arrived for 12 s.
    assert not contact_in_stats(_stats("up", 12_000_000), True, limit_us)
    assert not contact_in_stats(_stats("wait-coord", 1_000), True, limit_us)
    assert not contact_in_stats(_stats("up", -1), True, limit_us)
    # Without a group any broker that answered recently will do.
    assert contact_in_stats(_stats("init", 12_000_000, data_rxidle_us=500), False, limit_us)
    assert not contact_in_stats(_stats("init", 12_000_000, 12_000_000), False, limit_us)
