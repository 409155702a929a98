"""The marks select what they say: tests/conftest.py refuses what a test is not marked for."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_an_unmarked_test_cannot_start_a_child_process() -> None:
    with pytest.raises(AssertionError, match=r"mark it @pytest.mark.subprocess"):
        subprocess.run(["true"], check=False)


@pytest.mark.subprocess
def test_a_test_marked_subprocess_can() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


@pytest.mark.skipif("tensorflow" in sys.modules, reason="TensorFlow already loaded by a test")
def test_an_unmarked_test_cannot_import_tensorflow() -> None:
    with pytest.raises(
        AssertionError, match=r"imports tensorflow: mark it @pytest.mark.tensorflow"
    ):
        importlib.import_module("tensorflow")
    assert "tensorflow" not in sys.modules


def test_the_broker_fixture_makes_a_test_integration(request: pytest.FixtureRequest) -> None:
    """Told apart by the fixture it asks for, not by a mark someone must remember."""
    items = [
        i for i in request.session.items if "kafka_bootstrap" in getattr(i, "fixturenames", ())
    ]
    marks = [{m.name for m in item.iter_markers()} for item in items]
    assert all({"integration", "subprocess"} <= names for names in marks)
    unmarked_dirs = {
        item.path.parent.name
        for item in request.session.items
        if "integration" not in {m.name for m in item.iter_markers()}
    }
    assert not unmarked_dirs & {"integration", "faults"}
