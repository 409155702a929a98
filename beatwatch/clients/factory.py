"""Build the seam's consumers, publishers and admin clients for the configured client library.

``KafkaSettings.client`` names the library: ``kafka-python`` (the default,
always installed) or ``confluent`` (librdkafka through confluent-kafka, the
optional extra ``beatwatch[confluent]``). Every program and tool builds its
clients here, so the detector and the benchmark's ceilings share their settings
by construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beatwatch.clients.client import (
    Admin,
    ClientSettingsError,
    Consumer,
    ConsumerOptions,
    Publisher,
    PublisherOptions,
)
from beatwatch.kafka import CONFLUENT_CLIENT, KAFKA_PYTHON_CLIENT, KafkaSettings

if TYPE_CHECKING:
    from types import ModuleType


def _adapter(settings: KafkaSettings) -> ModuleType:
    """The adapter module of ``settings.client``; imported only when used.

    Raises:
        ClientSettingsError: an unknown client, or confluent-kafka is not installed.
    """
    if settings.client == KAFKA_PYTHON_CLIENT:
        from beatwatch.clients import kafka_python

        return kafka_python
    if settings.client == CONFLUENT_CLIENT:
        try:
            from beatwatch.clients import confluent  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            raise ClientSettingsError(
                "--kafka-client confluent needs confluent-kafka: pip install 'beatwatch[confluent]'"
            ) from None
        module: ModuleType = confluent
        return module
    raise ClientSettingsError(
        f"--kafka-client {settings.client!r}: choose from {KAFKA_PYTHON_CLIENT}, {CONFLUENT_CLIENT}"
    )


def new_consumer(settings: KafkaSettings, options: ConsumerOptions) -> Consumer:
    """A consumer of the configured client.

    Raises:
        ClientSettingsError: the client rejected its settings.
        ClientError: the broker could not be reached.
    """
    consumer: Consumer = _adapter(settings).new_consumer(settings, options)
    return consumer


def new_publisher(settings: KafkaSettings, options: PublisherOptions) -> Publisher:
    """A publisher (idempotent, ``acks=all``) of the configured client.

    Raises:
        ClientSettingsError: the client rejected its settings.
        ClientError: the broker could not be reached.
    """
    publisher: Publisher = _adapter(settings).new_publisher(settings, options)
    return publisher


def new_admin(settings: KafkaSettings, connect_timeout_s: float) -> Admin:
    """An admin client of the configured client.

    Raises:
        ClientSettingsError: the client rejected its settings.
        ClientError: the broker could not be reached within ``connect_timeout_s``.
    """
    admin: Admin = _adapter(settings).new_admin(settings, connect_timeout_s)
    return admin
