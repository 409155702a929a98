"""Fixtures every test may use, registered once, and the marks the suite is selected by.

Marks (declared in pyproject.toml):

- ``integration``: talks to a real broker. Given here to every test under
  ``tests/integration/`` and ``tests/faults/`` and to any test using
  ``kafka_bootstrap``, so ``-m "not integration"`` never starts a broker.
- ``subprocess``: starts a child process. Given here to every integration test
  (the broker is one); elsewhere written on the test, and a test without it
  that starts one fails.
- ``tensorflow``: imports TensorFlow. Written on the test; outside the
  integration tests, one without it that imports TensorFlow fails.
- ``slow``: more than a few seconds (training, long runs). Written on the test.

``make test-fast`` runs what carries none of them: pure logic, in seconds.
Helpers the tests share live in ``tests/support/``.
"""

from __future__ import annotations

import importlib.abc
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from beatwatch.tools.broker import EmbeddedBroker
from tests.support.paths import REPO_ROOT

# Fixtures defined beside their helpers, registered here once for every test
# (never imported into test modules): kafka_client runs a test once per client.
pytest_plugins = ["tests.support.clients"]

TESTS = Path(__file__).resolve().parent
# platform.processor() runs `uname -p` once and caches it; h5py asks at import.
# Asked here, a library's one-time probe is not taken for a test's child process.
platform.processor()
BROKER_DIRS = {"integration", "faults"}
TENSORFLOW_MODULES = {"tensorflow", "keras"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark broker tests ``integration`` (and ``subprocess``: the broker is a child process)."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        uses_broker = "kafka_bootstrap" in getattr(item, "fixturenames", ())
        if parts[0] in BROKER_DIRS or uses_broker:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.subprocess)


class _RefuseTensorFlow(importlib.abc.MetaPathFinder):
    """Fails an import of TensorFlow or Keras, naming the mark the test lacks."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.partition(".")[0] in TENSORFLOW_MODULES:
            raise AssertionError(
                f"this test imports {fullname}: mark it @pytest.mark.tensorflow "
                "(make test-fast leaves such tests out)"
            )


def _refuse_child_process(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
    raise AssertionError(
        f"this test starts a child process ({args!r}): mark it @pytest.mark.subprocess "
        "(make test-fast leaves such tests out)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Refuse a child process or a TensorFlow import in a test not marked for it.

    Around the whole test, fixtures' setup included: a module-scoped fixture
    that trains a model is the test's doing too.
    """
    marks = {mark.name for mark in item.iter_markers()}
    popen_init = subprocess.Popen.__init__
    if "subprocess" not in marks:
        subprocess.Popen.__init__ = _refuse_child_process  # type: ignore[method-assign]
    # Once TensorFlow is loaded (by an earlier test) its lazy imports must go through.
    guard = None
    if not marks & {"tensorflow", "integration"} and not TENSORFLOW_MODULES & set(sys.modules):
        guard = _RefuseTensorFlow()
        sys.meta_path.insert(0, guard)
    try:
        result = yield
        return result
    finally:
        subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
        if guard is not None:
            sys.meta_path.remove(guard)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry, so metric values never leak between tests."""
    return CollectorRegistry()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker for the whole session.

    The embedded tansu broker on a free loopback port, started at the first
    test that asks; ``BEATWATCH_TEST_BOOTSTRAP_SERVERS`` runs the same tests
    against a real Kafka instead.
    """
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
