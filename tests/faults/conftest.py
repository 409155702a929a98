"""Fault-injection fixtures: an always-alerting artifact, beats (the broker: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beatwatch.data import load_ecg5000
from tests.support.faults import all_alert_artifact


@pytest.fixture(scope="session")
def all_alert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test artifact with a threshold every beat exceeds (see ``all_alert_artifact``)."""
    return all_alert_artifact(Path(tmp_path_factory.mktemp("models")) / "all-alert")


@pytest.fixture(scope="session")
def ecg_samples() -> np.ndarray:
    """All ECG5000 beats, ``(4998, 140)`` float32."""
    return np.asarray(load_ecg5000().x, dtype=np.float32)
