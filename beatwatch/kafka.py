"""Kafka client settings shared by every program: bootstrap servers, topics, security.

One place turns command-line options into kafka-python keyword arguments, so
producer, detector, alert tail and tests configure clients the same way, and
one place creates topics.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from beatwatch.errors import ConfigError
from beatwatch.settings import add_option

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BEATS_TOPIC = "ecg-beats"
ALERTS_TOPIC = "ecg-alerts"
DLQ_TOPIC = "ecg-beats-dlq"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaSettings:
    """Where the broker is and how to talk to it.

    Attributes:
        bootstrap_servers: comma-separated ``host:port`` list.
        security_protocol: one of ``SECURITY_PROTOCOLS``.
        extra: further kafka-python client settings (TLS files, SASL).
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    extra: dict[str, Any] = field(default_factory=dict)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to KafkaProducer, KafkaConsumer and admin clients."""
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            raise ConfigError("bootstrap servers are empty")
        return {
            "bootstrap_servers": servers,
            "security_protocol": self.security_protocol,
            **self.extra,
        }


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--bootstrap-servers`` and ``--security-protocol``."""
    group = parser.add_argument_group("kafka")
    add_option(
        group,
        "--bootstrap-servers",
        default=DEFAULT_BOOTSTRAP,
        help="Kafka bootstrap servers, host:port[,host:port]",
    )
    add_option(
        group,
        "--security-protocol",
        default="PLAINTEXT",
        choices=SECURITY_PROTOCOLS,
        help="Kafka security protocol",
    )


def kafka_settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """Build :class:`KafkaSettings` from parsed options."""
    return KafkaSettings(
        bootstrap_servers=args.bootstrap_servers, security_protocol=args.security_protocol
    )


def ensure_topics(
    settings: KafkaSettings, topics: dict[str, int], *, timeout_s: float = 30.0
) -> None:
    """Create each missing topic with its partition count; existing topics are left alone.

    Args:
        settings: how to reach the broker.
        topics: topic name -> partition count.
        timeout_s: how long to keep retrying while the broker is not reachable.

    Raises:
        ConfigError: the broker did not answer within ``timeout_s``.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=10_000)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
                ) from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=1)
            for name, count in topics.items()
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass  # another process won the race; that is fine
    finally:
        admin.close()
