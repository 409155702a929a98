"""TLS/SASL settings: validation at start-up, pass-through to clients, secrets kept out of logs.

No live test: tansu, the embedded broker, speaks neither TLS nor SASL.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from beatwatch.cli import configure_logging
from beatwatch.errors import ConfigError
from beatwatch.kafka import (
    SASL_PASSWORD_ENV,
    KafkaSettings,
    SecretRedactor,
    add_kafka_options,
    kafka_settings_from_args,
    security_settings,
)

SECRET = "s3cr3t-Pa55"


def parse(argv: list[str]) -> KafkaSettings:
    parser = argparse.ArgumentParser()
    add_kafka_options(parser)
    return kafka_settings_from_args(parser.parse_args(argv))


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
    return path


@pytest.fixture(autouse=True)
def no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SASL_PASSWORD_ENV, raising=False)


def test_plaintext_by_default_has_no_security_arguments():
    settings = parse(["--bootstrap-servers", "k1:9092,k2:9092"])
    assert settings.client_kwargs() == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_tls_files_reach_every_client(pem: Path, tmp_path: Path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = parse(
        [
            "--security-protocol",
            "SSL",
            "--ssl-cafile",
            str(pem),
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
        ]
    )
    kwargs = settings.client_kwargs()
    assert kwargs["security_protocol"] == "SSL"
    assert kwargs["ssl_cafile"] == str(pem)
    assert kwargs["ssl_certfile"] == str(cert) and kwargs["ssl_keyfile"] == str(key)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_password_from_the_environment(monkeypatch, pem, mechanism):
    monkeypatch.setenv(SASL_PASSWORD_ENV, SECRET)
    settings = parse(
        [
            "--security-protocol",
            "SASL_SSL",
            "--ssl-cafile",
            str(pem),
            "--sasl-mechanism",
            mechanism,
            "--sasl-username",
            "detector",
        ]
    )
    kwargs = settings.client_kwargs()
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "detector"
    assert kwargs["sasl_plain_password"] == SECRET


def test_sasl_password_from_a_file_first_line_only(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    settings = parse(
        [
            "--security-protocol",
            "SASL_SSL",
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "u",
            "--sasl-password-file",
            str(secret_file),
        ]
    )
    assert settings.client_kwargs()["sasl_plain_password"] == SECRET


def test_options_come_from_beatwatch_variables(monkeypatch, tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET)
    monkeypatch.setenv("BEATWATCH_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BEATWATCH_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("BEATWATCH_SASL_USERNAME", "u")
    monkeypatch.setenv("BEATWATCH_SASL_PASSWORD_FILE", str(secret_file))
    assert parse([]).client_kwargs()["sasl_mechanism"] == "SCRAM-SHA-256"


BAD: list[tuple[dict[str, str], str]] = [
    (
        {"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
        "--ssl-cafile: no such file",
    ),
    ({"ssl_cafile": "CA"}, "TLS options need SSL or SASL_SSL"),
    (
        {"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "CA"},
        "TLS options need SSL or SASL_SSL",
    ),
    (
        {"security_protocol": "SSL", "ssl_keyfile": "CA"},
        "--ssl-keyfile given without --ssl-certfile",
    ),
    ({"sasl_mechanism": "PLAIN"}, "SASL options need SASL_PLAINTEXT or SASL_SSL"),
    ({"sasl_username": "u"}, "SASL options need SASL_PLAINTEXT or SASL_SSL"),
    ({"security_protocol": "SASL_SSL"}, "needs --sasl-mechanism"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "needs --sasl-mechanism"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "needs --sasl-username"),
    (
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
        "needs a password",
    ),
    (
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password_file": "/nonexistent/pw",
        },
        "--sasl-password-file: no such file",
    ),
    (
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password_file": "PW",
            "sasl_password": SECRET,
        },
        "not both",
    ),
    (
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password_file": "EMPTY",
        },
        "is empty",
    ),
    ({"security_protocol": "TLS"}, "--security-protocol 'TLS'"),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_inconsistent_settings_are_one_clear_line(fields, message, pem, tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    (tmp_path / "empty").write_text("")
    paths = {"CA": str(pem), "PW": str(tmp_path / "pw"), "EMPTY": str(tmp_path / "empty")}
    fields = {k: paths.get(v, v) for k, v in fields.items()}
    with pytest.raises(ConfigError) as caught:
        security_settings(bootstrap_servers="k:9092", **fields)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert SECRET not in text


def test_repr_never_shows_the_password(monkeypatch):
    monkeypatch.setenv(SASL_PASSWORD_ENV, SECRET)
    settings = parse(
        ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--sasl-username", "u"]
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in f"{settings}" and "***" in repr(settings)


def test_registered_secrets_are_redacted_from_log_lines():
    SecretRedactor.register(SECRET)
    record = logging.LogRecord(
        "kafka.conn",
        logging.DEBUG,
        __file__,
        1,
        "config %s",
        ({"sasl_plain_password": SECRET},),
        None,
    )
    assert SecretRedactor().filter(record)
    assert SECRET not in record.getMessage() and "***" in record.getMessage()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_cli_logging_keeps_kafka_debug_off_and_redacts(level, monkeypatch, capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers.clear()
    try:
        monkeypatch.setenv(SASL_PASSWORD_ENV, SECRET)
        parse(
            ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--sasl-username", "u"]
        )
        configure_logging(level)
        # kafka-python's config dump is at DEBUG: never emitted, even at --log-level DEBUG.
        assert not logging.getLogger("kafka.consumer.group").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("kafka.net.connection").isEnabledFor(logging.DEBUG)
        # Whatever is emitted, at any level and from any logger, is scrubbed.
        logging.getLogger("kafka").warning("connecting with password %s", SECRET)
        logging.getLogger("beatwatch.test").warning("oops: %s", SECRET)
        err = capsys.readouterr().err
        assert SECRET not in err
        assert err.count("***") == 2
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
