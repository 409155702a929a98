"""Helpers for the fault-injection suite: detector processes, replays, accounting, figures.

The suite counts from durable records only (the alerts and dead-letter topics,
the group's committed offsets), never from a process that may have been killed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from beatwatch.alert import decode_alert
from beatwatch.artifact import content_sha256
from beatwatch.kafka import KafkaSettings
from beatwatch.tools import promtext
from beatwatch.tools.broker import free_port
from detector.service import Detector, DetectorSettings
from producer.service import ProducerSettings, ProducerStats
from producer.service import run as produce
from producer.source import ReplaySource, stream_id
from tests.support.clients import client_settings
from tests.support.commands import Background
from tests.support.pipeline import MODEL_DIR, Topics, read_topic
from tests.support.waiting import wait_for

# Scores are mean squared errors, positive for any real beat, so this threshold
# makes every scored beat an alert. The accounting tests need that: alerts are
# then a durable, per-(stream, seq) record of "scored", which survives a kill -9
# of the detector, so lost and duplicates can be counted exactly. Only the
# threshold in artifact.json changes; the model file and its checksum do not.
ALL_ALERT_THRESHOLD = 1e-30
SESSION_TIMEOUT_MS = 6000  # tansu completes a first join after ~half of it


def all_alert_artifact(target: Path, source: Path = MODEL_DIR) -> Path:
    """Copy the artifact at ``source`` to ``target`` with threshold ``ALL_ALERT_THRESHOLD``."""
    shutil.copytree(source, target)
    config = json.loads((target / "artifact.json").read_text())
    config["threshold"]["value"] = ALL_ALERT_THRESHOLD
    # The threshold is part of what the model computes: a new content checksum and version.
    content = content_sha256(target / "model.keras", config)
    config["content_sha256"] = content
    config["model_version"] = f"all-alert-{content[:12]}"
    (target / "artifact.json").write_text(json.dumps(config))
    return target


def replay_keys(n: int, streams: int) -> Counter[tuple[str, int]]:
    """The (stream, seq) of a producer replay of ``n`` beats over ``streams`` streams."""
    return Counter((stream_id(i % streams), i // streams) for i in range(n))


def source_of(samples: np.ndarray, n: int) -> ReplaySource:
    """The first ``n`` beats of ``samples`` (cycled), unlabeled."""
    rows = np.arange(n) % samples.shape[0]
    return ReplaySource(samples[rows], None, rows)


@dataclass
class BackgroundProducer:
    """``producer.service.run`` in a thread: a steady stream of beats during a fault."""

    settings: ProducerSettings
    source: ReplaySource
    stop: threading.Event = field(default_factory=threading.Event)
    stats: ProducerStats | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> BackgroundProducer:
        def target() -> None:
            try:
                self.stats = produce(self.settings, self.source, self.stop)
            except BaseException as exc:
                self.error = exc
                raise

        self.thread = threading.Thread(target=target, name="producer", daemon=True)
        self.thread.start()
        return self

    def join(self, timeout_s: float) -> ProducerStats:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the producer did not finish"
        assert self.error is None, self.error
        assert self.stats is not None
        return self.stats


def producer_settings(
    bootstrap: str, topic: str, *, rate_hz: float, streams: int, fmt: str = "binary"
) -> ProducerSettings:
    return ProducerSettings(
        kafka=client_settings(bootstrap),
        topic=topic,
        rate_hz=rate_hz,
        streams=streams,
        wire_format=fmt,
        include_labels=False,
        progress_interval_s=0,
        create_topics=False,
        first_seq=0,
    )


class DetectorProcess:
    """``python -m detector`` as a child process, so it can be SIGKILLed or SIGTERMed."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        group: str,
        model: Path,
        log_path: Path,
        *extra_args: str,
    ) -> None:
        self.metrics_port = free_port()
        # Where the test reaches /metrics; a namespaced detector listens elsewhere.
        self.metrics_address = "127.0.0.1"
        self.log_path = log_path
        self.args = [
            sys.executable,
            "-m",
            "detector",
            "--bootstrap-servers",
            bootstrap,
            "--model",
            str(model),
            "--beats-topic",
            topics.beats,
            "--alerts-topic",
            topics.alerts,
            "--dlq-topic",
            topics.dlq,
            "--group-id",
            group,
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
            "--session-timeout-ms",
            str(SESSION_TIMEOUT_MS),
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DetectorProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.process = Background("detector", self.args, self.log_path, env=env).popen
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def http_status(self, path: str) -> int:
        """HTTP status of ``path`` on the metrics port; 0 when nothing answers."""
        try:
            with urllib.request.urlopen(
                f"http://{self.metrics_address}:{self.metrics_port}{path}", timeout=2
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def samples(self) -> promtext.Samples:
        return promtext.scrape(f"http://{self.metrics_address}:{self.metrics_port}/metrics")

    def value(self, name: str, **labels: str) -> float:
        """A metric of the live process; 0.0 while its endpoint does not answer yet."""
        if not self.alive():
            raise AssertionError(f"detector exited with {self.returncode()}:\n{self.log_tail()}")
        try:
            return promtext.value(self.samples(), name, **labels)
        except OSError:
            return 0.0

    def wait_ready(self, timeout_s: float = 60) -> None:
        def running() -> None:
            if not self.alive():
                raise AssertionError(f"detector exited:\n{self.log_tail()}")

        wait_for(
            lambda: self.http_status("/ready") == 200,
            timeout_s,
            "the detector to be ready",
            check=running,
            context=self.log_tail,
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """Kill -9: no flush, no commit, no goodbye to the group."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: for test teardown."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def detector_process(*args: Any) -> Iterator[DetectorProcess]:
    """A started :class:`DetectorProcess`, always stopped on exit."""
    process = DetectorProcess(*args).start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Accounting:
    """Alerts read back from the alerts topic, against what was produced."""

    produced: Counter[tuple[str, int]]
    alerts: Counter[tuple[str, int]]
    dead_letters: int = 0

    @property
    def lost(self) -> int:
        return sum(1 for key in self.produced if key not in self.alerts)

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.alerts.values() if count > 1)

    @property
    def unexpected(self) -> int:
        return sum(1 for key in self.alerts if key not in self.produced)

    def line(
        self, test: str, produced: int | None = None, scored: int | None = None, **extra: object
    ) -> str:
        """The figures line: produced, scored, alerts, dead letters, lost, duplicates.

        ``produced`` defaults to the expected keys, ``scored`` to the distinct
        (stream, seq) alerted (all of them with the always-alerting artifact).
        """
        produced = sum(self.produced.values()) if produced is None else produced
        scored = len(self.alerts) if scored is None else scored
        text = (
            f"[{test}] produced {produced}, scored {scored}, "
            f"alerts {sum(self.alerts.values())}, dead letters {self.dead_letters}, "
            f"lost {self.lost}, duplicates {self.duplicates}"
        )
        return text + "".join(f", {k.replace('_', ' ')} {v}" for k, v in extra.items())


def alert_keys(records: list[Any]) -> Counter[tuple[str, int]]:
    keys: Counter[tuple[str, int]] = Counter()
    for record in records:
        alert = decode_alert(record.value)
        keys[(alert.stream, alert.seq)] += 1
    return keys


def wait_for_alerts(
    kafka: KafkaSettings, topic: str, produced: Counter[tuple[str, int]], timeout_s: float
) -> list[Any]:
    """Read the alerts topic until every produced (stream, seq) has an alert (or time out)."""
    deadline = time.monotonic() + timeout_s
    records: list[Any] = []
    while time.monotonic() < deadline:
        records = read_topic(kafka, topic, sum(produced.values()), timeout_s=10)
        if not set(produced) - set(alert_keys(records)):
            break
        time.sleep(0.5)
    return records


def committed_vs_end(
    kafka: KafkaSettings, group: str, topic: str, expected: int
) -> dict[int, tuple[int, int]]:
    """``partition -> (committed offset of group, end offset)``, the end read off the topic.

    ``end_offsets()`` is broken on tansu, so the end is the last offset read + 1
    after reading all ``expected`` records of ``topic``.
    """
    records = read_topic(kafka, topic, expected, timeout_s=30)
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    try:
        result = {}
        for partition, end in sorted(ends.items()):
            committed = consumer.committed(TopicPartition(topic, partition))
            result[partition] = (-1 if committed is None else int(committed), end)
        return result
    finally:
        consumer.close(autocommit=False)


class OwnershipLog(logging.Handler):
    """Records the detectors' "partitions assigned/revoked" lines, in order, by detector.

    kafka-python 3 runs the rebalance listener on its IO thread, named
    ``kafka-io-<client_id>``; each detector gets its own ``client_id`` (see
    ``ThreadedDetector``), so the thread name says which detector it was.
    """

    PATTERN = re.compile(r"partitions (assigned|revoked): (.*)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[str, str, list[str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.match(record.getMessage())
        if match:
            names = [] if match.group(2) == "none" else match.group(2).split(", ")
            owner = (record.threadName or "?").removeprefix("kafka-io-")
            self.events.append((owner, match.group(1), names))

    def violations(self) -> list[str]:
        """Every moment a partition was assigned while another detector still held it."""
        owner: dict[str, str] = {}
        found = []
        for thread, kind, names in self.events:
            for name in names:
                if kind == "assigned":
                    if owner.get(name) not in (None, thread):
                        found.append(f"{name} assigned to {thread} while {owner[name]} held it")
                    owner[name] = thread
                elif owner.get(name) == thread:
                    del owner[name]
        return found

    def __enter__(self) -> OwnershipLog:
        logger = logging.getLogger("detector.assignment")
        self._level = logger.level
        logger.setLevel(logging.INFO)  # the lines are INFO; pytest's root is at WARNING
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("detector.assignment")
        logger.removeHandler(self)
        logger.setLevel(self._level)


@dataclass
class ThreadedDetector:
    """A :class:`detector.service.Detector` run in a named thread, as ``run`` runs it.

    Unlike ``running_detector`` it gives the test the Detector object itself.
    """

    name: str
    settings: DetectorSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        # A client_id per detector names kafka-python's IO thread after it.
        kafka = self.settings.kafka
        extra = {**kafka.extra, "client_id": self.name}
        self.settings = replace(self.settings, kafka=replace(kafka, extra=extra))
        self.detector = Detector(self.settings, self.registry)
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        try:
            if self.detector.connect(self.stop):
                while not self.stop.is_set():
                    self.detector.run_once()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.detector.close()

    def start(self) -> ThreadedDetector:
        self.thread.start()
        return self

    def value(self, name: str, **labels: str) -> float:
        assert self.error is None, self.error
        return float(self.registry.get_sample_value(name, labels) or 0.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.name} did not stop"
        assert self.error is None, self.error
