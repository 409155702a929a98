"""Shared test fixtures: a fresh Prometheus registry per test, the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry, so metric values never leak between tests."""
    return CollectorRegistry()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT
