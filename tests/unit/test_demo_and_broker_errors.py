"""``beatwatch demo`` and ``beatwatch broker`` refuse bad input with one line, at once.

Each case runs the real command in a subprocess, as a user does: exit code 2,
one ``beatwatch <cmd>: error:`` line, no traceback. The demo cases stop before
any broker starts; the broker cases start tansu at most, which exits at once.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.tools.broker import free_port
from beatwatch.tools.demo import StallWatch
from tests.support.commands import error_line, run_beatwatch


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "corrupt json"),
        ("[]", "corrupt json (not an object)"),
        ('{"format_version": 1}', "missing keys"),
    ],
)
@pytest.mark.subprocess
def test_demo_refuses_a_corrupt_artifact_json(tmp_path: Path, content: str, expected: str) -> None:
    shutil.copy(SHIPPED_MODEL_DIR / "model.keras", tmp_path / "model.keras")
    (tmp_path / "artifact.json").write_text(content)
    assert expected in error_line(run_beatwatch("demo", "--model", str(tmp_path)), "demo")


@pytest.mark.subprocess
def test_demo_refuses_an_artifact_without_test_rows(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL_DIR, model)
    config = json.loads((model / "artifact.json").read_text())
    del config["data"]["rows"]["test"]
    (model / "artifact.json").write_text(json.dumps(config))
    line = error_line(run_beatwatch("demo", "--model", str(model)), "demo")
    assert "no held-out test rows" in line


@pytest.mark.subprocess
def test_demo_refuses_a_file_as_logs_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    line = error_line(run_beatwatch("demo", "--logs", str(file)), "demo")
    assert "exists and is not a directory" in line


@pytest.mark.subprocess
def test_demo_refuses_data_of_another_beat_length(tmp_path: Path) -> None:
    csv = tmp_path / "len10.csv"
    csv.write_text("".join(",".join(["0.5"] * 10) + f",{i % 2}\n" for i in range(60)))
    line = error_line(run_beatwatch("demo", "--data", str(csv)), "demo")
    assert "beats of 10 values" in line and "takes 140" in line


@pytest.mark.subprocess
def test_demo_refuses_data_with_too_few_rows(tmp_path: Path) -> None:
    csv = tmp_path / "short.csv"
    csv.write_text("".join(",".join(["0.5"] * 140) + f",{i % 2}\n" for i in range(60)))
    line = error_line(run_beatwatch("demo", "--data", str(csv)), "demo")
    assert "60 rows" in line and "test rows go up to row" in line


def test_stall_watch_waits_while_the_producer_runs_and_after_progress() -> None:
    watch = StallWatch(limit_s=15)
    # The producer runs: no progress for a long time is only a slow start.
    assert not watch.stalled((10, 1), False, now=0)
    assert not watch.stalled((10, 1), False, now=100)
    # It has exited: the clock starts then, and progress restarts it.
    assert not watch.stalled((10, 1), True, now=110)
    assert not watch.stalled((20, 1), True, now=120)
    assert not watch.stalled((20, 1), True, now=135)
    assert watch.stalled((20, 1), True, now=136)


@pytest.mark.parametrize("port", ["-1", "0", "70000"])
@pytest.mark.subprocess
def test_broker_refuses_a_port_out_of_range(port: str) -> None:
    result = run_beatwatch("broker", f"--port={port}")
    assert result.returncode == 2
    assert "must be in [1, 65535]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.subprocess
def test_broker_refuses_a_port_another_process_listens_on() -> None:
    with socket.socket() as other:
        # As http.server does: reuse allowed, listening.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_beatwatch("broker", "--port", str(port), timeout_s=30)
    # The other listener must not pass for the broker.
    assert "broker ready" not in result.stdout
    line = error_line(result, "broker")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line


@pytest.mark.subprocess
def test_broker_fails_at_once_with_tansus_reason_for_a_bad_storage_url() -> None:
    started = time.monotonic()
    result = run_beatwatch(
        "broker", "--port", str(free_port()), "--storage", "bogus://x", timeout_s=60
    )
    line = error_line(result, "broker")
    assert "exited with code" in line and "UnsupportedStorageUrl" in line
    assert len(line) < 400  # one trimmed line, not tansu's whole output
    # Not the 20 s start timeout: tansu exits at once.
    assert time.monotonic() - started < 10
