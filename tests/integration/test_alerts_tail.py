"""``beatwatch alerts`` as a user runs it: a real CLI subprocess against a real broker.

An unreachable broker and a missing topic end in one error line (exit 2) or,
on a stop signal, a prompt clean exit; the tail never creates the topic; its
options read ``BEATWATCH_ALERTS_*`` variables, not other commands' ones.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time

import numpy as np
import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from beatwatch.alert import Explanation, build_alert, decode_alert
from beatwatch.cli import build_parser
from beatwatch.clients import ensure_topics
from beatwatch.kafka import KafkaSettings
from beatwatch.tools.broker import free_port
from beatwatch.wire import Beat
from tests.support.commands import BEATWATCH, child_env, run_beatwatch
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.integration

# Generous: only catches a hang (the old code took 25-30 s, or forever).
PROMPT_S = 10.0


class Tail:
    """``beatwatch alerts`` in a subprocess, its stderr read line by line."""

    def __init__(self, *args: str, bootstrap: str) -> None:
        self.popen = subprocess.Popen(
            [*BEATWATCH, "alerts", "--bootstrap-servers", bootstrap, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=child_env(),
            text=True,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)
            self._lines.put(line)

    def wait_for_log(self, text: str, timeout_s: float = 30.0) -> None:
        """Block until a stderr line contains ``text`` (the process is then in that wait)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                if text in self._lines.get(timeout=left):
                    return
            except queue.Empty:
                break
        self.popen.kill()
        raise AssertionError(f"no {text!r} in stderr:\n{''.join(self.stderr)}")

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; return the exit code and how long the exit took."""
        sent = time.monotonic()
        self.popen.send_signal(signum)
        try:
            code = self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise
        return code, time.monotonic() - sent

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Wait for the exit; return the exit code and stdout."""
        try:
            out, _ = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.communicate()
            raise AssertionError(
                f"still running after {timeout_s} s:\n{''.join(self.stderr)}"
            ) from None
        return self.popen.returncode, out


def run_alerts(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    """Run ``beatwatch alerts`` to its end (a hang fails after a minute)."""
    return run_beatwatch("alerts", "--bootstrap-servers", bootstrap, *args, env=child_env())


def assert_one_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [errors[0]] and errors[0].startswith("beatwatch alerts: error: "), errors
    assert expected in errors[0], errors


def topic_names(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_unreachable_broker_is_one_error_line() -> None:
    closed = f"127.0.0.1:{free_port()}"
    result = run_alerts("--idle-timeout-s", "2", bootstrap=closed)
    assert_one_error_line(result, f"cannot reach Kafka at {closed}")


def test_sigterm_while_waiting_for_the_broker_exits_promptly() -> None:
    tail = Tail(bootstrap=f"127.0.0.1:{free_port()}")
    tail.wait_for_log("not reachable yet")
    code, took_s = tail.stop(signal.SIGTERM)
    assert code == 0, "".join(tail.stderr)
    assert took_s < PROMPT_S
    assert "Traceback" not in "".join(tail.stderr)


@pytest.mark.parametrize("group", [False, True], ids=["assigned", "group"])
def test_missing_topic_is_an_error_after_idle_timeout_and_is_not_created(
    kafka_bootstrap: str, topic_prefix: str, group: bool
) -> None:
    topic = f"{topic_prefix}-missing"
    group_args = ["--group-id", f"{topic_prefix}-g"] if group else []
    result = run_alerts(
        "--alerts-topic", topic, "--idle-timeout-s", "2", *group_args, bootstrap=kafka_bootstrap
    )
    assert_one_error_line(result, f"topic {topic} does not exist")
    assert topic not in topic_names(kafka_bootstrap)


def test_sigint_while_waiting_for_the_topic_exits_cleanly(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    tail = Tail("--alerts-topic", f"{topic_prefix}-missing", bootstrap=kafka_bootstrap)
    tail.wait_for_log("does not exist yet")
    code, took_s = tail.stop(signal.SIGINT)
    assert code == 0, "".join(tail.stderr)
    assert took_s < PROMPT_S
    assert "Traceback" not in "".join(tail.stderr)


def test_a_topic_created_while_waiting_is_read(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-alerts"
    tail = Tail(
        "--alerts-topic",
        topic,
        "--from-beginning",
        "--json",
        "--limit",
        "1",
        bootstrap=kafka_bootstrap,
    )
    tail.wait_for_log("does not exist yet")
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), {topic: 2})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    # Same key, same partition: the message that is not an alert comes first, is skipped.
    producer.send(topic, key=b"p-1", value=orjson.dumps({"alert_id": "a-0", "stream": "p-1"}))
    alert = build_alert(
        Beat("p-1", 7, 1_000, np.zeros(3, np.float32)),
        score=0.5,
        threshold=0.25,
        model_version="m-1",
        explanation=Explanation("summary", (), ()),
        topic="beats",
        partition=0,
        offset=7,
        detected_ts_ms=2_000,
    )
    producer.send(topic, key=b"p-1", value=alert.encode())
    producer.flush()
    producer.close()
    tail.wait_for_log("skipping")
    code, out = tail.finish()
    assert code == 0, "".join(tail.stderr)
    assert [decode_alert(line.encode()) for line in out.splitlines()] == [alert]
    skipped = [line for line in tail.stderr if "skipping" in line]
    assert len(skipped) == 1 and "missing field" in skipped[0], "".join(tail.stderr)


def test_alerts_options_read_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("BEATWATCH_")]:
        monkeypatch.delenv(name)
    # Other commands' variables of the same flags must not reach `alerts`...
    monkeypatch.setenv("BEATWATCH_JSON", "/tmp/metrics.json")  # evaluate's path
    monkeypatch.setenv("BEATWATCH_LIMIT", "500")  # produce's beat count
    args = build_parser(["alerts"]).parse_args(["alerts"])
    assert (args.json, args.limit) == (False, 0)
    # ...its own do.
    own = {
        "BEATWATCH_ALERTS_JSON": "1",
        "BEATWATCH_ALERTS_LIMIT": "3",
        "BEATWATCH_ALERTS_FROM_BEGINNING": "yes",
        "BEATWATCH_ALERTS_KEEP_DUPLICATES": "true",
        "BEATWATCH_ALERTS_IDLE_TIMEOUT_S": "2.5",
    }
    for name, value in own.items():
        monkeypatch.setenv(name, value)
    args = build_parser(["alerts"]).parse_args(["alerts"])
    assert (args.json, args.limit, args.from_beginning, args.keep_duplicates) == (
        True,
        3,
        True,
        True,
    )
    assert args.idle_timeout_s == 2.5
    # `evaluate --json` is a path with a variable of its own: BEATWATCH_JSON=1
    # (meant for `alerts`) must not make it write a file named "1".
    monkeypatch.setenv("BEATWATCH_JSON", "1")
    monkeypatch.setenv("BEATWATCH_EVALUATE_JSON", "/tmp/metrics.json")
    args = build_parser(["evaluate"]).parse_args(["evaluate"])
    assert args.json == "/tmp/metrics.json"
