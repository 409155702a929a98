"""Kafka client settings shared by every program: bootstrap servers, topics, security, client.

One place turns command-line options into client settings, so producer,
detector, alert tail and tests configure clients the same way, and one place
creates topics. The clients themselves are built by :mod:`beatwatch.clients`
(kafka-python by default, confluent-kafka with ``--kafka-client confluent``).
TLS and SASL settings are validated here at start-up (one clear
:class:`ConfigError` line each), and secrets are kept out of reprs and logs:
:class:`SecretRedactor` scrubs every registered secret from log lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beatwatch.errors import ConfigError
from beatwatch.settings import add_option, field_defaults

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BEATS_TOPIC = "ecg-beats"
ALERTS_TOPIC = "ecg-alerts"
DLQ_TOPIC = "ecg-beats-dlq"
# How long the broker may hold a fetch when nothing is pending. tansu (the
# embedded broker) holds every fetch for the whole wait even when data arrives,
# so a short wait is what keeps produce->alert latency low there; Apache Kafka
# answers as soon as data arrives, where a short wait only means more idle
# requests (raise it to 100-500 ms there). tansu on s3:// storage delivers
# nothing with waits this short: use >= 100 ms with it.
FETCH_MAX_WAIT_MS = 5
# The client libraries behind the seam (beatwatch.clients): kafka-python is the
# default and always installed; confluent-kafka (librdkafka) is the optional extra.
KAFKA_PYTHON_CLIENT = "kafka-python"
CONFLUENT_CLIENT = "confluent"
KAFKA_CLIENTS = (KAFKA_PYTHON_CLIENT, CONFLUENT_CLIENT)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# The password never travels as a flag (it would show in `ps`): environment or file only.
SASL_PASSWORD_ENV = "BEATWATCH_SASL_PASSWORD"
# kafka-python keyword arguments whose values are secrets.
SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
REDACTED = "***"


class SecretRedactor(logging.Filter):
    """Replace every registered secret in a log record's text by ``***``.

    Attach it to handlers (not loggers: a logger's filters do not see records
    of its children). kafka-python logs its configuration, credentials
    included, at DEBUG; this keeps ``--log-level DEBUG`` safe too.
    """

    _secrets: set[str] = set()  # noqa: RUF012 - one registry per process, on purpose

    @classmethod
    def register(cls, secret: str) -> None:
        """Scrub ``secret`` from every log line from now on."""
        if secret:
            cls._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        if not self._secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to the formatter to report
            return True
        redacted = text
        for secret in self._secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


@dataclass(frozen=True, repr=False)
class KafkaSettings:
    """Where the broker is and how to talk to it.

    Attributes:
        bootstrap_servers: comma-separated ``host:port`` list.
        security_protocol: one of ``SECURITY_PROTOCOLS``.
        extra: further client settings (TLS files, SASL) under kafka-python's
            names; the confluent adapter maps them to librdkafka's.
        client: the client library, one of ``KAFKA_CLIENTS``.
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    extra: dict[str, Any] = field(default_factory=dict)
    client: str = KAFKA_PYTHON_CLIENT

    def __repr__(self) -> str:
        shown = {k: REDACTED if k in SECRET_KEYS else v for k, v in self.extra.items()}
        return (
            f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, "
            f"security_protocol={self.security_protocol!r}, extra={shown!r}, "
            f"client={self.client!r})"
        )

    __str__ = __repr__

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to KafkaProducer, KafkaConsumer and admin clients."""
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            raise ConfigError("bootstrap servers are empty")
        for server in servers:
            _, colon, port = server.rpartition(":")
            if colon and not (port.isdigit() and 0 < int(port) < 65536):
                raise ConfigError(
                    f"bootstrap server {server!r}: the port must be a number in 1..65535"
                )
        return {
            "bootstrap_servers": servers,
            "security_protocol": self.security_protocol,
            **self.extra,
        }


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """Add the broker address and the TLS/SASL options (each with its ``BEATWATCH_*`` variable)."""
    defaults = field_defaults(KafkaSettings)  # each default is written once, on the dataclass
    group = parser.add_argument_group("kafka")
    add_option(
        group,
        "--kafka-client",
        default=defaults["client"],
        choices=KAFKA_CLIENTS,
        help="Kafka client library: kafka-python, or confluent (librdkafka; "
        "pip install 'beatwatch[confluent]')",
    )
    add_option(
        group,
        "--bootstrap-servers",
        default=defaults["bootstrap_servers"],
        help="Kafka bootstrap servers, host:port[,host:port]",
    )
    add_option(
        group,
        "--security-protocol",
        default=defaults["security_protocol"],
        choices=SECURITY_PROTOCOLS,
        help="Kafka security protocol",
    )
    add_option(group, "--ssl-cafile", default="", help="CA certificate file (PEM) for TLS")
    add_option(group, "--ssl-certfile", default="", help="client certificate file (PEM) for TLS")
    add_option(group, "--ssl-keyfile", default="", help="client private key file (PEM) for TLS")
    add_option(
        group,
        "--sasl-mechanism",
        default="",
        choices=("", *SASL_MECHANISMS),
        help="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)",
    )
    add_option(group, "--sasl-username", default="", help="SASL user name")
    add_option(
        group,
        "--sasl-password-file",
        default="",
        help=f"file holding the SASL password (or set {SASL_PASSWORD_ENV})",
    )


def kafka_settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """Build and validate :class:`KafkaSettings` from parsed options.

    Raises:
        ConfigError: an inconsistent or unreadable security setting (one line).
    """
    return security_settings(
        bootstrap_servers=args.bootstrap_servers,
        security_protocol=args.security_protocol,
        ssl_cafile=getattr(args, "ssl_cafile", ""),
        ssl_certfile=getattr(args, "ssl_certfile", ""),
        ssl_keyfile=getattr(args, "ssl_keyfile", ""),
        sasl_mechanism=getattr(args, "sasl_mechanism", ""),
        sasl_username=getattr(args, "sasl_username", ""),
        sasl_password_file=getattr(args, "sasl_password_file", ""),
        sasl_password=os.environ.get(SASL_PASSWORD_ENV, ""),
        client=getattr(args, "kafka_client", KAFKA_PYTHON_CLIENT),
    )


def _readable_file(option: str, path: str) -> str:
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{option}: {path} is a directory, not a file")
    if not file.is_file():
        raise ConfigError(f"{option}: no such file {path}")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path} ({exc.strerror})") from None
    return str(file)


def security_settings(
    *,
    bootstrap_servers: str,
    security_protocol: str = "PLAINTEXT",
    ssl_cafile: str = "",
    ssl_certfile: str = "",
    ssl_keyfile: str = "",
    sasl_mechanism: str = "",
    sasl_username: str = "",
    sasl_password_file: str = "",
    sasl_password: str = "",
    client: str = KAFKA_PYTHON_CLIENT,
) -> KafkaSettings:
    """Check TLS and SASL settings together and turn them into kafka-python arguments.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        security_protocol: one of ``SECURITY_PROTOCOLS``.
        ssl_cafile: CA bundle to verify the broker (TLS protocols only).
        ssl_certfile: client certificate for mutual TLS.
        ssl_keyfile: the client certificate's private key (needs ``ssl_certfile``).
        sasl_mechanism: one of ``SASL_MECHANISMS`` (SASL protocols only).
        sasl_username: SASL user.
        sasl_password_file: file whose first line is the password.
        sasl_password: the password itself (from ``BEATWATCH_SASL_PASSWORD``).
        client: the client library, one of ``KAFKA_CLIENTS``.

    Raises:
        ConfigError: one clear line naming the offending option; never the password.
    """
    if security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"--security-protocol {security_protocol!r}: "
            f"choose from {', '.join(SECURITY_PROTOCOLS)}"
        )
    uses_tls = security_protocol in ("SSL", "SASL_SSL")
    uses_sasl = security_protocol.startswith("SASL_")
    extra: dict[str, Any] = {}
    tls_options = {
        "--ssl-cafile": ssl_cafile,
        "--ssl-certfile": ssl_certfile,
        "--ssl-keyfile": ssl_keyfile,
    }
    given_tls = [name for name, value in tls_options.items() if value]
    if given_tls and not uses_tls:
        raise ConfigError(
            f"{', '.join(given_tls)} given with --security-protocol {security_protocol}: "
            "TLS options need SSL or SASL_SSL"
        )
    if ssl_keyfile and not ssl_certfile:
        raise ConfigError("--ssl-keyfile given without --ssl-certfile")
    for (option, value), key in zip(
        tls_options.items(), ("ssl_cafile", "ssl_certfile", "ssl_keyfile"), strict=True
    ):
        if value:
            extra[key] = _readable_file(option, value)
    given_sasl = [
        name
        for name, value in (
            ("--sasl-mechanism", sasl_mechanism),
            ("--sasl-username", sasl_username),
            ("--sasl-password-file", sasl_password_file),
            (SASL_PASSWORD_ENV, sasl_password),
        )
        if value
    ]
    if given_sasl and not uses_sasl:
        raise ConfigError(
            f"{', '.join(given_sasl)} given with --security-protocol {security_protocol}: "
            "SASL options need SASL_PLAINTEXT or SASL_SSL"
        )
    if uses_sasl:
        if sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"--security-protocol {security_protocol} needs --sasl-mechanism "
                f"({', '.join(SASL_MECHANISMS)})"
            )
        if not sasl_username:
            raise ConfigError(f"--sasl-mechanism {sasl_mechanism} needs --sasl-username")
        if sasl_password and sasl_password_file:
            raise ConfigError(
                f"give the SASL password once: {SASL_PASSWORD_ENV} or --sasl-password-file, "
                "not both"
            )
        password = sasl_password
        if sasl_password_file:
            path = _readable_file("--sasl-password-file", sasl_password_file)
            lines = Path(path).read_text(encoding="utf-8").splitlines()
            password = lines[0] if lines else ""
            if not password:
                raise ConfigError(f"--sasl-password-file: {path} is empty")
        if not password:
            raise ConfigError(
                f"--sasl-mechanism {sasl_mechanism} needs a password: set {SASL_PASSWORD_ENV} "
                "or --sasl-password-file"
            )
        SecretRedactor.register(password)
        extra.update(
            sasl_mechanism=sasl_mechanism,
            sasl_plain_username=sasl_username,
            sasl_plain_password=password,
        )
        if security_protocol == "SASL_PLAINTEXT":
            log.warning(
                "SASL over SASL_PLAINTEXT: the %s exchange is not encrypted; use SASL_SSL "
                "outside a trusted network",
                sasl_mechanism,
            )
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        security_protocol=security_protocol,
        extra=extra,
        client=client,
    )


def broker_listens(settings: KafkaSettings, timeout_s: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection.

    A probe before creating a kafka-python client: in kafka-python 3.0 a client
    whose bootstrap fails leaves its I/O thread and sockets behind (measured:
    one thread and 4 file descriptors per attempt), so retrying clients through
    a long outage would run out of file descriptors.
    """
    for server in settings.client_kwargs()["bootstrap_servers"]:
        host, colon, port = server.rpartition(":")
        if not colon:
            host, port = server, "9092"
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def wait_for_broker(settings: KafkaSettings, timeout_s: float, stop: threading.Event) -> bool:
    """Wait until a bootstrap server listens, logging once while it does not.

    Returns:
        True when one listens; False after ``timeout_s`` or once ``stop`` is set.
    """
    deadline = time.monotonic() + timeout_s
    logged = False
    while not stop.is_set():
        if broker_listens(settings):
            return True
        if time.monotonic() >= deadline:
            return False
        if not logged:
            log.warning(
                "Kafka at %s not reachable yet; retrying for up to %.0f s",
                settings.bootstrap_servers,
                timeout_s,
            )
            logged = True
        stop.wait(0.5)
    return False
