"""The marks select what they say: tests/conftest.py refuses what a test is not marked for."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest


def test_an_unmarked_test_cannot_start_a_child_process() -> None:
    with pytest.raises(AssertionError, match=r"mark it @pytest.mark.subprocess"):
        subprocess.run(["true"], check=False)


@pytest.mark.subprocess
def test_a_test_marked_subprocess_can() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


INNER = "BEATWATCH_TEST_MARKS_INNER"


@pytest.mark.skipif(os.environ.get(INNER) != "1", reason="run in a fresh interpreter below")
def test_inner_an_unmarked_test_cannot_import_tensorflow() -> None:
    with pytest.raises(
        AssertionError, match=r"imports tensorflow: mark it @pytest.mark.tensorflow"
    ):
        importlib.import_module("tensorflow")
    assert "tensorflow" not in sys.modules


@pytest.mark.subprocess
def test_an_unmarked_test_cannot_import_tensorflow() -> None:
    """In a fresh interpreter: in this one an earlier test may have loaded TensorFlow."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_inner_an_unmarked_test_cannot_import_tensorflow",
        ],
        env={**os.environ, INNER: "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-2000:]


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
