"""The README's main job and the benchmark, run as a user runs them (smoke sizes for the bench)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.commands import BEATWATCH, run_beatwatch
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_demo_finishes_on_its_own_and_matches_the_offline_scoring(tmp_path: Path) -> None:
    result = run_beatwatch("demo", "--rate", "1000", "--logs", str(tmp_path), timeout_s=240)
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "live alerts match exactly" in result.stdout
    assert "beats replayed/scored   1000 / 1000" in result.stdout
    # The live precision, recall and accuracy are the trainer's evaluation of the same rows.
    live = re.search(r"live:\s+(precision .*)", result.stdout)
    trainer = re.search(r"trainer: (precision .*?)\s+\(artifact", result.stdout)
    assert live and trainer
    assert live.group(1).split() == trainer.group(1).split()
    # Nothing left behind: broker, detector and producer have all exited.
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 4  # broker, detector, producer, console
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: only its parent has not reaped it yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def test_demo_ignores_the_users_produce_and_detect_settings(tmp_path: Path) -> None:
    # Meant for `beatwatch produce` and `detect`; inherited, they made the demo
    # send 10 beats and wait for 1000 forever, or read alerts from the wrong topic.
    env = {**os.environ, "BEATWATCH_LIMIT": "10", "BEATWATCH_ALERTS_TOPIC": "elsewhere"}
    result = run_beatwatch(
        "demo", "--rate", "1000", "--logs", str(tmp_path), timeout_s=240, env=env
    )
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "beats replayed/scored   1000 / 1000" in result.stdout
    assert "live alerts match exactly" in result.stdout


def test_sigterm_stops_the_demo_and_every_child(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [*BEATWATCH, "demo", "--logs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        # The demo writes its children's pids once the last one (the producer) has started.
        def demo_runs() -> None:
            assert demo.poll() is None, demo.communicate()

        wait_for((tmp_path / "pids").exists, 180, "the demo to start its children", check=demo_runs)
        time.sleep(0.5)  # the file is written in one go, but may just have been created
        pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
        assert len(pids) == 4 and all(alive(pid) for pid in pids)
        demo.send_signal(signal.SIGTERM)
        _, stderr = demo.communicate(timeout=60)
        assert demo.returncode == 130, stderr
        assert "beatwatch demo: interrupted" in stderr
        assert "Traceback" not in stderr
        left = [pid for pid in pids if alive(pid)]
        assert not left, f"left running: {left}"
    finally:
        # Whatever failed, leave nothing behind (children run in sessions of their own).
        for pid in [demo.pid, *pids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        demo.wait()


# A smoke run of every measurement with both clients: minutes on a busy machine.
@pytest.mark.timeout(900)
def test_bench_quick_runs_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_beatwatch("bench", "--quick", "--out", str(out), timeout_s=850)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in (
        "a_ceiling_json_beats_per_s",
        "a2_ceiling_publishing_binary_beats_per_s",
        "c_course_predict_per_beat_beats_per_s",
        "d_scoring_only_beats_per_s",
        "f_producer_max_binary_beats_per_s",
        "g_memory",
    ):
        assert figures[key], key
    # At smoke sizes a drain can finish between two scrapes (reported as 0): present, not timed.
    assert figures["b_detector_binary_beats_per_s"] >= 0
    # At smoke sizes the first detector to join may drain the topic alone; the key must exist.
    assert figures["h_two_detectors_beats_counted"] >= 0
    assert figures["e_latency_200hz"]["alerts"] > 0
    # Each process's share of the machine during the load, the embedded broker's included.
    share = figures["e_latency_200hz"]["machine_share"]
    assert set(share) == {"detector", "broker", "bench", "producer"}
    assert share["detector"]["cores"] > 0 and share["producer"]["cores"] > 0
    assert "(b)/(a) binary, ECG5000 (42% alert)" in figures["ratios"]
    # The publishing ceiling really published, about one message per abnormal beat.
    assert figures["a2_ceiling_publishing_binary_alerts"] > 0.3 * 20_000
