"""``produce --rows-from``: the recorded rows of an artifact, read through the typed definition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.errors import ConfigError
from producer.source import artifact_rows


def write(directory: Path, rows: Any) -> str:
    directory.mkdir()
    (directory / "artifact.json").write_text(json.dumps({"data": {"rows": rows}}))
    return str(directory)


def test_reads_each_split_of_the_shipped_artifact() -> None:
    recorded = json.loads((SHIPPED_MODEL_DIR / "artifact.json").read_text())["data"]["rows"]
    assert artifact_rows(str(SHIPPED_MODEL_DIR)).tolist() == recorded["test"]
    assert artifact_rows(f"{SHIPPED_MODEL_DIR}:train").tolist() == recorded["train"]


@pytest.mark.parametrize(
    ("rows", "split"),
    [
        ({"train": [0, 1]}, "test"),  # not recorded
        ({"test": [0, -1]}, "test"),  # not row numbers
        ({"test": "0-9"}, "test"),
        ({"test": [0]}, "to_json"),  # not a split
        ([0, 1], "test"),
    ],
)
def test_refuses_what_is_not_recorded_rows(tmp_path: Path, rows: Any, split: str) -> None:
    directory = write(tmp_path / "m", rows)
    with pytest.raises(ConfigError, match=f"records no '{split}' rows"):
        artifact_rows(f"{directory}:{split}")


def test_refuses_a_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no artifact at"):
        artifact_rows(str(tmp_path))
