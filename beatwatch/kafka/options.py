"""The Kafka command-line options: :func:`add_kafka_options` and :func:`kafka_settings_from_args`.

Its one job is the ``kafka`` option group every program and tool shares (the
broker address, the client library and the TLS/SASL options, each with its
``BEATWATCH_*`` variable) and turning the parsed options into checked
:class:`~beatwatch.kafka.settings.KafkaSettings`.
"""

from __future__ import annotations

import argparse
import os

from beatwatch.kafka.security import (
    SASL_MECHANISMS,
    SASL_PASSWORD_ENV,
    SECURITY_PROTOCOLS,
    security_settings,
)
from beatwatch.kafka.settings import KAFKA_CLIENTS, KAFKA_PYTHON_CLIENT, KafkaSettings
from beatwatch.settings import add_option, field_defaults


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
