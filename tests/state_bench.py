"""Measure per-stream state recovery after a ``kill -9`` of a detector, for many streams.

On an embedded broker, beats of ``--streams`` streams flow at ``--rate`` beats/s
(every stream sends) into detector processes of one group, with per-stream
state and incidents on. Once every stream has state, one detector is killed
with SIGKILL and the time until processing resumed is measured from durable
records: the first alert, published after the kill, of a beat from each
partition the killed detector owned (the shipped model alerts on about 40% of
the replayed ECG5000 beats; ``--all-alert`` lowers its threshold to zero in a
copy, so that every beat alerts).

Scenarios:

- ``standby``: two detectors; one is killed; the survivor takes its partitions
  once the group notices (a session timeout) and rebuilds their state.
- ``restart``: one detector; it is killed and a new one started at once (what
  a supervisor does).

Printed per scenario: seconds from the kill to the partitions' assignment, to
the state rebuilt (the new owner's log) and to the last partition resumed
(its first alert), the streams and changelog records restored, the
restore time the new owner measured, and the load average at the kill. For
``restart``, also where the new process's start went (its log): TensorFlow's
import, the model's load and warm-up, and the seconds from the kill to the
model ready and to the broker connected.

Run: ``python -m tests.state_bench --streams 1000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from beatwatch.artifact import SHIPPED_MODEL_DIR, content_sha256
from beatwatch.clients import ConsumerOptions, Partition, ensure_topics, new_consumer
from beatwatch.data import load_ecg5000
from beatwatch.kafka import KafkaSettings
from beatwatch.tools import promtext
from beatwatch.tools.broker import EmbeddedBroker, free_port
from beatwatch.tools.processes import child_environment, wait_ready
from producer.service import ProducerSettings
from producer.service import run as produce
from producer.source import ReplaySource

PARTITIONS = 4
SESSION_TIMEOUT_MS = 6000
RESTORE_LINE = re.compile(
    r"^(\S+ \S+) INFO detector.stream_state: state of partition (\d+) rebuilt: "
    r"(\d+) streams from (\d+) changelog records"
)
ASSIGNED_LINE = re.compile(r"^(\S+ \S+) INFO detector.assignment: partitions assigned: (.+)$")
UP_LINE = re.compile(r"^(\S+ \S+) INFO beatwatch.exposition: metrics on ")
MODEL_LINE = re.compile(
    r"^(\S+ \S+) INFO detector\.\w+: model \S+ loaded and warmed in ([\d.]+) s "
    r"\(this process imported TensorFlow in ([\d.]+) s\)"
)
CONNECTED_LINE = re.compile(r"^(\S+ \S+) INFO detector\.\w+: connected to ")


def all_alert_model(target: Path) -> Path:
    """A copy of the shipped model whose threshold every beat exceeds."""
    shutil.copytree(SHIPPED_MODEL_DIR, target)
    config = json.loads((target / "artifact.json").read_text())
    config["threshold"]["value"] = 1e-30
    # The threshold is part of what the model computes: a new checksum and version.
    content = content_sha256(target / "model.keras", config)
    config["content_sha256"] = content
    config["model_version"] = f"all-alert-{content[:12]}"
    (target / "artifact.json").write_text(json.dumps(config))
    return target


class Detector:
    """A ``python -m detector`` child of the benchmark."""

    def __init__(
        self, name: str, bootstrap: str, prefix: str, model: Path, work: Path, session_ms: int
    ) -> None:
        self.port = free_port()
        self.log_path = work / f"{name}.log"
        self.command = [
            sys.executable,
            "-m",
            "detector",
            "--bootstrap-servers",
            bootstrap,
            "--model",
            str(model),
            "--beats-topic",
            f"{prefix}-beats",
            "--alerts-topic",
            f"{prefix}-alerts",
            "--dlq-topic",
            f"{prefix}-dlq",
            "--incidents-topic",
            f"{prefix}-incidents",
            "--state-topic",
            f"{prefix}-state",
            "--group-id",
            f"{prefix}-g",
            "--metrics-port",
            str(self.port),
            "--metrics-host",
            "127.0.0.1",
            "--session-timeout-ms",
            str(session_ms),
            "--no-create-topics",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Detector:
        """Start the process."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=child_environment()
            )
        return self

    def wait_ready(self) -> None:
        """Wait until /ready answers 200."""
        assert self.process is not None
        wait_ready(f"http://127.0.0.1:{self.port}/ready", self.process, self.log_path, 120)

    def metric(self, name: str) -> float:
        """A metric summed over its labels; 0 while the endpoint does not answer."""
        with contextlib.suppress(OSError):
            return promtext.total(promtext.scrape(f"http://127.0.0.1:{self.port}/metrics"), name)
        return 0.0

    def partitions(self) -> set[int]:
        """The beats partitions it owns (its lag gauges)."""
        samples = promtext.scrape(f"http://127.0.0.1:{self.port}/metrics")
        return {
            int(dict(labels)["partition"])
            for (name, labels) in samples
            if name == "beatwatch_consumer_lag_messages"
        }

    def kill(self) -> float:
        """SIGKILL; return the time of the kill (epoch s)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        killed = time.time()
        self.process.wait(10)
        return killed

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def startup_after(self, after: float) -> dict[str, float | None]:
        """Where a start after ``after`` went: seconds from ``after`` to each logged step."""
        found: dict[str, float | None] = {
            "tensorflow_import_s": None,
            "model_load_and_warm_s": None,
            "kill_to_model_ready_s": None,
            "kill_to_connected_s": None,
        }
        for line in self.log_path.read_text(errors="replace").splitlines():
            if (match := MODEL_LINE.match(line)) and _log_time(match.group(1)) > after:
                if found["kill_to_model_ready_s"] is None:
                    found["kill_to_model_ready_s"] = round(_log_time(match.group(1)) - after, 2)
                    found["model_load_and_warm_s"] = float(match.group(2))
                    found["tensorflow_import_s"] = float(match.group(3))
            elif (
                (match := CONNECTED_LINE.match(line))
                and _log_time(match.group(1)) > after
                and found["kill_to_connected_s"] is None
            ):
                found["kill_to_connected_s"] = round(_log_time(match.group(1)) - after, 2)
        return found

    def restores_after(self, after: float) -> tuple[float, float, float, int, int]:
        """(up at, assigned at, last restore at, streams, records) logged after ``after``."""
        up_at = assigned_at = restored_at = 0.0
        streams = records = 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            if match := UP_LINE.match(line):
                at = _log_time(match.group(1))
                if at > after and not up_at:
                    up_at = at
            elif match := ASSIGNED_LINE.match(line):
                at = _log_time(match.group(1))
                if at > after and not assigned_at:
                    assigned_at = at
            elif match := RESTORE_LINE.match(line):
                at = _log_time(match.group(1))
                if at > after:
                    restored_at = max(restored_at, at)
                    streams += int(match.group(3))
                    records += int(match.group(4))
        return up_at, assigned_at, restored_at, streams, records


def _log_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def first_alerts_after(
    kafka: KafkaSettings, topic: str, partitions: set[int], after_ms: int, timeout_s: float
) -> dict[int, int]:
    """Per source partition: ``detected_ts_ms`` of its first alert detected after ``after_ms``."""
    import orjson

    consumer = new_consumer(kafka, ConsumerOptions(group_id=None, max_batch=10_000))
    found: dict[int, int] = {}
    try:
        consumer.assign([Partition(topic, p) for p in range(PARTITIONS)], from_beginning=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and set(found) < partitions:
            for record in consumer.poll(200, 10_000):
                alert = orjson.loads(record.value or b"{}")
                source, at = int(alert["partition"]), int(alert["detected_ts_ms"])
                if source in partitions and at > after_ms:
                    found[source] = min(found.get(source, at), at)
    finally:
        consumer.close(3.0)
    return found


@contextlib.contextmanager
def flowing_beats(
    bootstrap: str, topic: str, streams: int, rate_hz: float, seconds: float
) -> Iterator[threading.Thread]:
    """A producer thread replaying ECG5000 beats over ``streams`` streams."""
    data = load_ecg5000()
    n = int(rate_hz * seconds)
    rows = np.arange(n) % data.x.shape[0]
    source = ReplaySource(np.asarray(data.x, dtype=np.float32)[rows], None, rows)
    settings = ProducerSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topic=topic,
        rate_hz=rate_hz,
        streams=streams,
        wire_format="binary",
        include_labels=False,
        progress_interval_s=0,
        create_topics=False,
        first_seq=0,
    )
    stop = threading.Event()
    thread = threading.Thread(target=produce, args=(settings, source, stop), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)


def scenario(name: str, args: argparse.Namespace, work: Path, model: Path) -> dict[str, object]:
    """Run one scenario on a fresh broker; return its figures."""
    prefix = f"bench-{name}"
    with EmbeddedBroker(log_path=work / f"{name}-tansu.log") as broker:
        bootstrap = broker.bootstrap_servers
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        ensure_topics(
            kafka, {f"{prefix}-{t}": PARTITIONS for t in ("beats", "alerts", "incidents", "state")}
        )
        ensure_topics(kafka, {f"{prefix}-dlq": 1})
        count = 2 if name == "standby" else 1
        detectors = [
            Detector(f"{name}-{i}", bootstrap, prefix, model, work, args.session_timeout_ms).start()
            for i in range(count)
        ]
        try:
            for detector in detectors:
                detector.wait_ready()
            with flowing_beats(bootstrap, f"{prefix}-beats", args.streams, args.rate, args.seconds):
                deadline = time.monotonic() + 120
                while sum(d.metric("beatwatch_state_streams") for d in detectors) < args.streams:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name}: not every stream had state after 120 s")
                    time.sleep(0.5)
                time.sleep(args.warm_s)  # the changelog grows as it would in service
                victim = detectors[0]
                owned = victim.partitions()
                killed = victim.kill()
                load_at_kill = os.getloadavg()[0]
                if name == "restart":
                    taker = Detector(
                        f"{name}-new", bootstrap, prefix, model, work, args.session_timeout_ms
                    ).start()
                    detectors.append(taker)
                else:
                    taker = detectors[1]
                resumed = first_alerts_after(
                    kafka, f"{prefix}-alerts", owned, int(killed * 1000), timeout_s=90
                )
                restore_sum_s = taker.metric("beatwatch_state_restore_seconds_sum")
            up_at, assigned_at, restored_at, streams, records = taker.restores_after(killed)
            startup = taker.startup_after(killed) if name == "restart" else {}
        finally:
            for detector in detectors:
                detector.stop()
    last_resumed = max(resumed.values()) / 1000 if set(resumed) == owned else float("nan")
    return {
        "scenario": name,
        "streams": args.streams,
        "rate_beats_per_s": args.rate,
        "session_timeout_ms": args.session_timeout_ms,
        "partitions_taken_over": len(owned),
        "load_average_1m_at_kill": round(load_at_kill, 2),
        **startup,
        "kill_to_new_process_up_s": round(up_at - killed, 2) if up_at else None,
        "kill_to_assigned_s": round(assigned_at - killed, 2) if assigned_at else None,
        "kill_to_state_rebuilt_s": round(restored_at - killed, 2) if restored_at else None,
        "kill_to_processing_resumed_s": round(last_resumed - killed, 2),
        "streams_restored": streams,
        "changelog_records_read": records,
        "restore_seconds_measured_by_new_owner": round(restore_sum_s, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print one JSON line per scenario."""
    parser = argparse.ArgumentParser(prog="python -m tests.state_bench", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="beats/s over all streams")
    parser.add_argument("--seconds", type=float, default=240.0, help="longest replay")
    parser.add_argument(
        "--warm-s", type=float, default=10.0, help="seconds of flow after all streams have state"
    )
    parser.add_argument("--all-alert", action="store_true", help="every beat alerts")
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=SESSION_TIMEOUT_MS,
        help="the detectors' group session timeout",
    )
    parser.add_argument(
        "--scenarios", nargs="+", default=["standby", "restart"], choices=["standby", "restart"]
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep the detectors' and broker's logs here (default: a temporary directory, removed)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="state-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = all_alert_model(work / "model") if args.all_alert else SHIPPED_MODEL_DIR
        for name in args.scenarios:
            print(json.dumps(scenario(name, args, work, model)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
