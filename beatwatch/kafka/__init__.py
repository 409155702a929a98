"""Kafka client settings shared by every program: bootstrap servers, topics, security, client.

One place turns command-line options into client settings, so producer,
detector, alert tail and tests configure clients the same way. The clients
themselves are built by :mod:`beatwatch.clients` (kafka-python by default,
confluent-kafka with ``--kafka-client confluent``). TLS and SASL settings are
validated at start-up (one clear :class:`~beatwatch.errors.ConfigError` line
each), and secrets are kept out of reprs and logs.

Modules: ``settings`` (:class:`KafkaSettings`, topic names, client names),
``options`` (the command-line options), ``security`` (TLS and SASL checks),
``redaction`` (:class:`SecretRedactor`) and ``probe`` (is the broker
listening). Import the names from ``beatwatch.kafka``.
"""

from beatwatch.kafka.options import add_kafka_options, kafka_settings_from_args
from beatwatch.kafka.probe import broker_listens, wait_for_broker
from beatwatch.kafka.redaction import REDACTED, SecretRedactor
from beatwatch.kafka.security import (
    SASL_MECHANISMS,
    SASL_PASSWORD_ENV,
    SECURITY_PROTOCOLS,
    security_settings,
)
from beatwatch.kafka.settings import (
    ALERTS_TOPIC,
    BEATS_TOPIC,
    CONFLUENT_CLIENT,
    DEFAULT_BOOTSTRAP,
    DLQ_TOPIC,
    FETCH_MAX_WAIT_MS,
    KAFKA_CLIENTS,
    KAFKA_PYTHON_CLIENT,
    SECRET_KEYS,
    KafkaSettings,
)

__all__ = [
    "ALERTS_TOPIC",
    "BEATS_TOPIC",
    "CONFLUENT_CLIENT",
    "DEFAULT_BOOTSTRAP",
    "DLQ_TOPIC",
    "FETCH_MAX_WAIT_MS",
    "KAFKA_CLIENTS",
    "KAFKA_PYTHON_CLIENT",
    "REDACTED",
    "SASL_MECHANISMS",
    "SASL_PASSWORD_ENV",
    "SECRET_KEYS",
    "SECURITY_PROTOCOLS",
    "KafkaSettings",
    "SecretRedactor",
    "add_kafka_options",
    "broker_listens",
    "kafka_settings_from_args",
    "security_settings",
    "wait_for_broker",
]
