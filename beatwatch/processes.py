"""Child processes for the demo and the benchmark: started, awaited, always stopped.

Producer and detector run as their own processes, as in production. Each child
gets its own session so a terminal's Ctrl-C reaches only the parent, which then
stops the children in order (SIGTERM lets the detector finish its batch).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from beatwatch.errors import ConfigError


@contextlib.contextmanager
def child(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process; on exit SIGTERM it (finish the batch), then SIGKILL if stuck."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
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


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    """Wait for ``url`` to answer 200, failing early if ``process`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ConfigError(f"detector exited with code {process.returncode}: {tail[0]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise ConfigError(f"detector not ready after {timeout_s:.0f} s (log: {log_path})")
