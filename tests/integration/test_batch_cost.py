"""``python -m tests.batch_cost`` runs on the shipped model and prints every part it times."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = (
    "decode and check",
    "model call",
    "explanations",
    "alert text",
    "process_batch, all of it",
    "rest of process_batch",
)


@pytest.mark.parametrize("wire_format", ["binary", "json"])
def test_batch_cost_prints_the_cost_of_each_part(wire_format: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.batch_cost",
            "--format",
            wire_format,
            "--batch",
            "200",
            "--repeats",
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    header = re.search(r"batches of 200, (\d+) alerts per batch", run.stdout)
    assert header is not None, run.stdout
    assert 0 < int(header.group(1)) < 200  # ECG5000's mix: some beats alert, not all
    for part in PARTS:
        line = re.search(rf"^  {re.escape(part)}\s+(-?[\d.]+)", run.stdout, re.MULTILINE)
        assert line is not None, f"{part!r} missing from:\n{run.stdout}"
        if part != "rest of process_batch":  # a difference of two timings
            assert float(line.group(1)) > 0
