"""Where the broker is and how to talk to it: :class:`KafkaSettings` and the topic names.

Its one job is the settings value every program hands to the client seam
(:mod:`beatwatch.clients`): bootstrap servers, security protocol, further
client settings and the client library, with the default topics and fetch
wait; its repr never shows a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beatwatch.errors import ConfigError
from beatwatch.kafka.redaction import REDACTED

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
# kafka-python keyword arguments whose values are secrets.
SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})


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
