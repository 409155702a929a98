"""The client-library parameter of the broker suites: every test using it runs once per client.

A test (or module, with ``pytestmark = pytest.mark.usefixtures("kafka_client")``)
that uses ``kafka_client`` runs with kafka-python and with confluent-kafka. The
choice travels as ``BEATWATCH_KAFKA_CLIENT``, the variable users set: child
processes (``python -m detector``) inherit it, and in-process settings take it
through :func:`client_settings`.
"""

from __future__ import annotations

import os

import pytest

from beatwatch.kafka import KAFKA_CLIENTS, KAFKA_PYTHON_CLIENT, KafkaSettings

CLIENT_ENV = "BEATWATCH_KAFKA_CLIENT"


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The client library of this run of the test, also set in ``BEATWATCH_KAFKA_CLIENT``."""
    client: str = request.param
    if client != KAFKA_PYTHON_CLIENT:
        pytest.importorskip("confluent_kafka", reason="the confluent extra is not installed")
    monkeypatch.setenv(CLIENT_ENV, client)
    return client


def client_settings(bootstrap: str) -> KafkaSettings:
    """Settings for ``bootstrap`` with the client of the running test (kafka-python outside)."""
    return KafkaSettings(
        bootstrap_servers=bootstrap, client=os.environ.get(CLIENT_ENV) or KAFKA_PYTHON_CLIENT
    )
