"""Integration fixtures: a real Kafka-protocol broker over TCP.

By default each test session starts the embedded tansu broker on a free
loopback port. Set ``BEATWATCH_TEST_BOOTSTRAP_SERVERS`` to run the same tests
against a real Kafka instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from beatwatch.tools.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker for the whole session."""
    external = os.environ.get("BEATWATCH_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    log_path = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix, so tests sharing one broker never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"
