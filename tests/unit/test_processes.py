"""What the benchmark reads about each process: CPU time and time spent waiting for a core."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from beatwatch.bench import machine_share
from beatwatch.processes import cpu_and_wait_s, parse_schedstat

SCHEDSTAT = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists()


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_schedstat_line_is_cpu_then_runqueue_wait() -> None:
    assert parse_schedstat("5321480 112031 14\n") == (5_321_480, 112_031)
    with pytest.raises(ValueError):
        parse_schedstat("not a schedstat line")


@pytest.mark.skipif(not SCHEDSTAT, reason="needs Linux /proc schedstat")
def test_cpu_time_counts_every_thread_of_the_process() -> None:
    first = cpu_and_wait_s(os.getpid())
    worker = threading.Thread(target=burn, args=(0.2,))
    worker.start()
    worker.join()
    last = cpu_and_wait_s(os.getpid())
    assert first is not None and last is not None
    # The worker's 0.2 s of CPU counts though it ran on another thread, now ended
    # (the process figure has clock-tick resolution: 10 ms).
    assert last[0] - first[0] >= 0.18
    assert last[1] >= first[1] >= 0


def test_an_unreadable_process_is_none() -> None:
    assert cpu_and_wait_s(2**22 + 12_345) is None  # above the kernel's pid limit


@pytest.mark.skipif(not SCHEDSTAT, reason="needs Linux /proc schedstat")
def test_machine_share_reports_cores_per_process_and_skips_unknown_ones() -> None:
    worker = threading.Thread(target=burn, args=(0.5,))
    worker.start()
    share = machine_share({"this process": os.getpid(), "no broker": None}, window_s=0.3)
    worker.join()
    assert set(share) == {"this process"}
    assert 0.2 < share["this process"]["cores"] <= (os.cpu_count() or 1) + 0.1
    assert share["this process"]["runqueue_wait_ms_per_s"] >= 0
