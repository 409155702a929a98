"""What the benchmark reads about each process: CPU time and time spent waiting for a core."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from beatwatch.tools.bench import machine_share
from beatwatch.tools.processes import cpu_and_waits, parse_schedstat, waited_ns

SCHEDSTAT = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists()


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def burn_until(stop: threading.Event) -> None:
    while not stop.is_set():
        burn(0.01)


def test_a_schedstat_line_is_cpu_then_runqueue_wait() -> None:
    assert parse_schedstat("5321480 112031 14\n") == (5_321_480, 112_031)
    with pytest.raises(ValueError):
        parse_schedstat("not a schedstat line")


@pytest.mark.skipif(not SCHEDSTAT, reason="needs Linux /proc schedstat")
def test_cpu_time_counts_every_thread_of_the_process_and_waits_each_live_one() -> None:
    first = cpu_and_waits(os.getpid())
    worker = threading.Thread(target=burn, args=(0.2,))
    worker.start()
    worker.join()
    last = cpu_and_waits(os.getpid())
    assert first is not None and last is not None
    # The worker's 0.2 s of CPU counts though it ran on another thread, now ended
    # (the process figure has clock-tick resolution: 10 ms).
    assert last[0] - first[0] >= 0.18
    # Waits are per live thread: the ended worker is gone (unless the kernel has
    # given its id to a thread started since), this thread is in both.
    live = {int(task.name) for task in Path("/proc/self/task").iterdir()}
    assert worker.native_id not in last[1] or worker.native_id in live
    this_thread = threading.get_native_id()
    assert last[1][this_thread] >= first[1][this_thread] >= 0


def test_an_unreadable_process_is_none() -> None:
    assert cpu_and_waits(2**22 + 12_345) is None  # above the kernel's pid limit


@pytest.mark.skipif(not SCHEDSTAT, reason="needs Linux /proc schedstat")
def test_machine_share_reports_cores_per_process_and_skips_unknown_ones() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=burn_until, args=(stop,))
    worker.start()
    try:
        share = machine_share({"this process": os.getpid(), "no broker": None}, window_s=0.3)
    finally:
        stop.set()
        worker.join()
    assert set(share) == {"this process"}
    assert 0.2 < share["this process"]["cores"] <= (os.cpu_count() or 1) + 0.1
    assert share["this process"]["runqueue_wait_ms_per_s"] >= 0


def test_waits_compare_only_threads_alive_at_both_readings() -> None:
    # Thread 2 ended with 500 ns of wait, thread 3 started with 70: neither is the window's.
    assert waited_ns({1: 100, 2: 500}, {1: 150, 3: 70}) == 50
    assert waited_ns({}, {1: 10}) == 0
