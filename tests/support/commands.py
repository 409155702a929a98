"""Running ``beatwatch`` (or any program) as a user does: to its end, or in the background.

Tests that start child processes are marked ``subprocess`` (tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

# The command line of ``beatwatch`` in this interpreter (no console script needed).
BEATWATCH = [sys.executable, "-m", "beatwatch.cli"]
EXIT_ERROR = 2


def child_env(**variables: str) -> dict[str, str]:
    """This environment without the user's ``BEATWATCH_*`` settings, plus ``variables``.

    A developer's own settings (``BEATWATCH_BOOTSTRAP_SERVERS``, ...) must not
    change what a test's command does.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATWATCH_")}
    return {**env, **variables}


def run(
    args: list[str],
    *,
    timeout_s: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to its end and return it finished (text output).

    On a timeout it gets SIGTERM, not subprocess.run's SIGKILL, so that what it
    started (a broker in a session of its own) is stopped too; then the
    timeout is raised.
    """
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.communicate(timeout=30)
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_beatwatch(
    *args: str, timeout_s: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``beatwatch ARGS`` to its end (see :func:`run`)."""
    return run([*BEATWATCH, *args], timeout_s=timeout_s, env=env)


def error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The single error line of a command refused cleanly: exit 2, no traceback."""
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"beatwatch {command}: error: "), errors
    return errors[0]


class Background:
    """A program running in the background, its output in a log file.

    Attributes:
        name: what failure messages call it.
        popen: the running process.
        log: its stdout and stderr.
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Fail with its log if it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code}\n{self.tail()}")

    def stop(self, timeout_s: float = 15) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=10)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
