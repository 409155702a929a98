"""Child processes for the demo and the benchmark: started, awaited, always stopped, measured.

Producer and detector run as their own processes, as in production. Each child
gets its own session so a terminal's Ctrl-C reaches only the parent, which then
stops the children in order (SIGTERM lets the detector finish its batch).
The benchmark also reads what each process got from the machine (Linux
``/proc``): its CPU time, and how long its threads were ready to run with no
core free.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from beatwatch.errors import ConfigError
from beatwatch.settings import ENV_PREFIX

# The one BEATWATCH_* variable children inherit: where ECG5000 is cached, so
# that a child replays the very file its parent loaded.
INHERITED_SETTINGS = frozenset({"BEATWATCH_CACHE_DIR"})


def child_environment() -> dict[str, str]:
    """This process's environment without the user's other ``BEATWATCH_*`` settings.

    demo and bench hand their children every setting as a flag; an inherited
    ``BEATWATCH_LIMIT`` or ``BEATWATCH_ALERTS_TOPIC`` meant for ``produce`` or
    ``detect`` would change what they measure (the demo waited forever for
    beats a limited producer never sent).
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(ENV_PREFIX) or name in INHERITED_SETTINGS
    }


@contextlib.contextmanager
def child(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process; on exit SIGTERM it (finish the batch), then SIGKILL if stuck.

    It runs with :func:`child_environment`: its flags are its only settings.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def parse_schedstat(text: str) -> tuple[int, int]:
    """``(on-CPU ns, run-queue wait ns)`` from one ``/proc/PID/task/TID/schedstat`` line."""
    on_cpu_ns, waiting_ns, _timeslices = text.split()
    return int(on_cpu_ns), int(waiting_ns)


def cpu_and_waits(pid: int) -> tuple[float, dict[int, int]] | None:
    """CPU seconds of ``pid`` so far, and the run-queue wait (ns) of each of its live threads.

    CPU time is the process's, ended threads included (``stat``, in clock
    ticks). The run-queue wait, time a thread was ready to run but every core
    was busy, is per thread (``task/*/schedstat``), so that two readings can be
    compared over the threads alive at both: on a shared machine, this is where
    a latency tail comes from. None where ``/proc`` cannot be read.
    """
    proc = Path(f"/proc/{pid}")
    try:
        # After the ")" that closes the command name: state is field 0, utime 11, stime 12.
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        tasks = list((proc / "task").iterdir())
    except OSError:
        return None
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    waits_ns = {}
    for task in tasks:
        try:
            waits_ns[int(task.name)] = parse_schedstat((task / "schedstat").read_text())[1]
        except (OSError, ValueError):  # the thread ended meanwhile, or no schedstat
            continue
    return cpu_s, waits_ns


def waited_ns(first: dict[int, int], last: dict[int, int]) -> int:
    """Run-queue wait between two readings of ``cpu_and_waits``, over threads in both.

    A thread that ended takes its whole wait with it, and one that started
    brings the wait it had before the window: neither belongs to the window.
    """
    return sum(last[tid] - first[tid] for tid in first.keys() & last.keys())


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout_s: float,
    name: str = "detector",
) -> None:
    """Wait for ``url`` to answer 200, failing early if ``process`` (``name``) dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ConfigError(f"{name} exited with code {process.returncode}: {tail[0]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise ConfigError(f"{name} not ready after {timeout_s:.0f} s (log: {log_path})")
