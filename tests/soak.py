"""The soak: the whole pipeline at a steady rate for an hour, with faults on a schedule.

``make soak`` (not part of ``make test``) runs the embedded broker, one
detector process with an always-alerting copy of the shipped model, and one
producer process replaying ECG5000 beats at ``--rate-hz`` over 16 streams. On
a schedule the detector is killed with ``kill -9`` and started again, and the
broker is faulted: with ``--storage s3`` (a local ``moto`` server, so its log
survives) it is killed and restarted; with ``--storage memory`` (the default:
tansu on moto does not sustain 2,000 beats/s on a 2-core machine) it is
frozen with SIGSTOP for ``--freeze-s`` and resumed, which every client sees
as a broker that stops answering, without losing its log. Every ``--interval-s`` it samples each
process's resident memory, open file descriptors and threads, and the
detector's consumer lag.

At the end it stops the producer, lets the detector drain, reads both topics
back and counts, per (stream, seq): beats the broker holds, beats with an
alert, and the difference (lost). It exits 1 when a beat is lost or a bound
below is broken, and writes a JSON summary and a plot (RSS, descriptors,
threads and lag over time, faults marked).

Bounds (each process incarnation, after its first ``WARMUP_S``): resident
memory grows by at most ``RSS_GROWTH_BOUND`` of its warmed-up value (not the
broker's with memory storage: that memory is the topics' data); open
descriptors and threads by at most ``FD_GROWTH_BOUND`` and
``THREAD_GROWTH_BOUND``; lag returns below one second of beats after the last
fault.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.clients import ensure_topics
from beatwatch.kafka import KafkaSettings
from beatwatch.tools import promtext
from beatwatch.tools.broker import EmbeddedBroker, free_port, wait_for_port
from beatwatch.wire import decode
from tests.support.faults import all_alert_artifact
from tests.support.pipeline import REPO_ROOT

WARMUP_S = 300.0
RSS_GROWTH_BOUND = 0.10
FD_GROWTH_BOUND = 16
THREAD_GROWTH_BOUND = 8
STREAMS = 16
PARTITIONS = 4
BUCKET = "tansu"
DONE_LINE = re.compile(r"done: (\d+) beats .* (\d+) acknowledged, (\d+) errors")


@dataclass
class Sample:
    """One reading of one process."""

    t_s: float
    rss_mib: float
    fds: int
    threads: int


@dataclass
class Incarnation:
    """One run of one process, from its start to its kill or stop."""

    role: str
    pid: int
    started_s: float
    samples: list[Sample] = field(default_factory=list)

    def growth(self) -> dict[str, float] | None:
        """Growth from the first sample after warm-up to the last; None when too short."""
        warm = [s for s in self.samples if s.t_s - self.started_s >= WARMUP_S]
        if len(warm) < 2:
            return None
        first, last = warm[0], warm[-1]
        return {
            "rss_ratio": last.rss_mib / first.rss_mib - 1.0,
            "fds": last.fds - first.fds,
            "threads": last.threads - first.threads,
        }


def read_proc(pid: int) -> tuple[float, int, int] | None:
    """(RSS MiB, open descriptors, threads) of ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, fds, threads


class Soak:
    """The processes, the schedule, the samples."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.t0 = time.monotonic()
        self.incarnations: list[Incarnation] = []
        self.lag: list[tuple[float, float]] = []
        self.events: list[tuple[float, str]] = []
        self.s3_port = free_port()
        self.s3_env = {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "soak",
            "AWS_SECRET_ACCESS_KEY": "soak",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        self.s3 = args.storage == "s3"
        self.broker = EmbeddedBroker(
            storage=f"s3://{BUCKET}/" if self.s3 else "memory://tansu/",
            env=self.s3_env if self.s3 else {},
            log_path=workdir / "tansu.log",
        )
        self.model = all_alert_artifact(workdir / "all-alert")
        self.detector_port = free_port()
        self.producer_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _spawn(self, role: str, args: list[str]) -> None:
        log = (self.workdir / f"{role}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
        self.processes[role] = process
        self.incarnations.append(Incarnation(role, process.pid, self.now()))

    def start_s3(self) -> None:
        log = (self.workdir / "moto.log").open("ab")
        self.processes["s3"] = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port("127.0.0.1", self.s3_port, 30):
            raise SystemExit("soak: the local S3 server did not start")
        request = urllib.request.Request(f"{self.s3_env['AWS_ENDPOINT']}/{BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()

    def start_broker(self) -> None:
        self.broker.start()
        pid = self.broker.process.pid if self.broker.process else -1
        self.incarnations.append(Incarnation("broker", pid, self.now()))

    def start_detector(self) -> None:
        self._spawn(
            "detector",
            [
                "detector",
                "--bootstrap-servers",
                self.broker.bootstrap_servers,
                "--model",
                str(self.model),
                "--metrics-port",
                str(self.detector_port),
                "--metrics-host",
                "127.0.0.1",
                "--session-timeout-ms",
                "6000",
                # tansu on S3 answers fetches empty below ~100 ms of wait (see test R6).
                "--fetch-max-wait-ms",
                "500",
                "--partitions",
                str(PARTITIONS),
            ],
        )

    def start_producer(self) -> None:
        self._spawn(
            "producer",
            [
                "producer",
                "--bootstrap-servers",
                self.broker.bootstrap_servers,
                "--rate",
                str(self.args.rate_hz),
                "--streams",
                str(STREAMS),
                "--loop",
                "--first-seq",
                "0",
                "--format",
                "binary",
                "--no-labels",
                "--metrics-port",
                str(self.producer_port),
            ],
        )

    def sample(self) -> None:
        t = self.now()
        for incarnation in self.incarnations:
            reading = read_proc(incarnation.pid)
            if reading is not None and self._is_current(incarnation):
                incarnation.samples.append(Sample(t, *reading))
        try:
            samples = promtext.scrape(f"http://127.0.0.1:{self.detector_port}/metrics")
            self.lag.append((t, promtext.total(samples, "beatwatch_consumer_lag_messages")))
        except OSError:
            self.lag.append((t, float("nan")))

    def _is_current(self, incarnation: Incarnation) -> bool:
        latest = [i for i in self.incarnations if i.role == incarnation.role][-1]
        return latest is incarnation

    def run(self) -> dict[str, Any]:
        args = self.args
        if self.s3:
            self.start_s3()
        self.start_broker()
        ensure_topics(
            KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers),
            {"ecg-beats": PARTITIONS, "ecg-alerts": PARTITIONS, "ecg-beats-dlq": 1},
        )
        self.start_detector()
        self.start_producer()
        broker_fault = "restart broker" if self.s3 else f"freeze broker {args.freeze_s:g} s"
        schedule = sorted(
            [(t, "kill -9 detector") for t in _every(args.kill_every_s, args.duration_s)]
            + [(t, broker_fault) for t in _every(args.broker_fault_every_s, args.duration_s)]
        )
        next_sample = 0.0
        while self.now() < args.duration_s:
            if schedule and self.now() >= schedule[0][0]:
                _, what = schedule.pop(0)
                self.fault(what)
            if self.now() >= next_sample:
                self.sample()
                next_sample += args.interval_s
                print(self.progress_line(), flush=True)
            time.sleep(0.2)
        return self.finish()

    def fault(self, what: str) -> None:
        self.events.append((self.now(), what))
        print(f"soak: {self.now():7.0f} s  {what}", flush=True)
        if what == "kill -9 detector":
            self.processes["detector"].send_signal(signal.SIGKILL)
            self.processes["detector"].wait(10)
            self.start_detector()
        elif what == "restart broker":
            self.broker.kill()
            time.sleep(3)
            self.start_broker()
        else:
            assert self.broker.process is not None
            self.broker.process.send_signal(signal.SIGSTOP)
            try:
                self._wait_sampling(self.args.freeze_s)
            finally:
                self.broker.process.send_signal(signal.SIGCONT)

    def _wait_sampling(self, seconds: float) -> None:
        """Sleep ``seconds``, sampling on schedule meanwhile."""
        deadline = self.now() + seconds
        while self.now() < deadline:
            time.sleep(min(self.args.interval_s, max(0.0, deadline - self.now())))
            self.sample()

    def progress_line(self) -> str:
        lag = self.lag[-1][1] if self.lag else float("nan")
        current = {i.role: i for i in self.incarnations}
        parts = [f"soak: {self.now():7.0f} s  lag {lag:,.0f}"]
        for role in ("producer", "detector", "broker"):
            incarnation = current.get(role)
            if incarnation and incarnation.samples:
                s = incarnation.samples[-1]
                parts.append(f"{role} {s.rss_mib:.0f} MiB {s.fds} fds {s.threads} thr")
        return "  ".join(parts)

    def finish(self) -> dict[str, Any]:
        producer = self.processes["producer"]
        producer.send_signal(signal.SIGTERM)
        code = producer.wait(60)
        done = DONE_LINE.search((self.workdir / "producer.log").read_text(errors="replace"))
        attempted, acknowledged, errors = (int(g) for g in done.groups()) if done else (0, 0, 0)
        drain_deadline = time.monotonic() + 300
        while time.monotonic() < drain_deadline:
            self.sample()
            if self.lag and self.lag[-1][1] == 0:
                break
            time.sleep(2)
        kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers)
        held = _seq_bitmaps(kafka, "ecg-beats", beats=True)
        alerted = _seq_bitmaps(kafka, "ecg-alerts", beats=False)
        lost = sum(
            int(np.count_nonzero(bits & ~_fit(alerted.get(s), len(bits))))
            for s, bits in held.items()
        )
        held_count = sum(int(np.count_nonzero(b)) for b in held.values())
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        self.broker.stop()
        growth = {
            f"{i.role}#{n}": i.growth()
            for n, i in enumerate(self.incarnations)
            if i.growth() is not None
        }
        broken = [
            f"{name}: {g}"
            for name, g in growth.items()
            if g is not None
            and (
                (g["rss_ratio"] > RSS_GROWTH_BOUND and not self._holds_data(name))
                or g["fds"] > FD_GROWTH_BOUND
                or g["threads"] > THREAD_GROWTH_BOUND
            )
        ]
        final_lag = self.lag[-1][1] if self.lag else float("nan")
        if not final_lag < self.args.rate_hz:
            broken.append(f"lag after draining: {final_lag} beats (bound: one second of beats)")
        return {
            "duration_s": self.args.duration_s,
            "rate_hz": self.args.rate_hz,
            "events": self.events,
            "producer": {
                "attempted": attempted,
                "acknowledged": acknowledged,
                "not_delivered": errors,
                "exit_code": code,
            },
            "beats_held_by_broker": held_count,
            "acknowledged_missing_from_broker": max(0, acknowledged - held_count),
            "lost": lost,
            "final_lag": final_lag,
            "growth_after_warmup": growth,
            "bounds_broken": broken,
            "bounds": {
                "rss_ratio": RSS_GROWTH_BOUND,
                "fds": FD_GROWTH_BOUND,
                "threads": THREAD_GROWTH_BOUND,
                "warmup_s": WARMUP_S,
            },
        }

    def _holds_data(self, incarnation: str) -> bool:
        """Whether ``incarnation`` is a broker keeping the topics in its own memory."""
        return incarnation.startswith("broker") and not self.s3

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
        panels = (("rss_mib", "RSS (MiB)"), ("fds", "open fds"), ("threads", "threads"))
        for axis, (attribute, title) in zip(axes, panels, strict=False):
            for role, colour in (("producer", "C0"), ("detector", "C1"), ("broker", "C2")):
                first = True
                for incarnation in (i for i in self.incarnations if i.role == role):
                    xs = [s.t_s / 60 for s in incarnation.samples]
                    ys = [getattr(s, attribute) for s in incarnation.samples]
                    axis.plot(xs, ys, colour, label=role if first else None)
                    first = False
            axis.set_ylabel(title)
        axes[0].legend(loc="upper left")
        axes[3].plot([t / 60 for t, _ in self.lag], [v for _, v in self.lag], "C3")
        axes[3].set_ylabel("consumer lag (beats)")
        axes[3].set_xlabel("minutes")
        for axis in axes:
            for t, what in self.events:
                axis.axvline(t / 60, color="grey", ls=":" if "kill" in what else "--", lw=0.8)
        fig.suptitle(
            f"soak: {self.args.rate_hz:g} beats/s; dotted: detector kill -9, dashed: broker fault"
        )
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)


def _every(period_s: float, duration_s: float) -> list[float]:
    if period_s <= 0:
        return []
    return [float(t) for t in np.arange(period_s, duration_s - 60, period_s)]


def _fit(bits: np.ndarray | None, length: int) -> np.ndarray:
    out = np.zeros(length, bool)
    if bits is not None:
        n = min(length, len(bits))
        out[:n] = bits[:n]
    return out


def _seq_bitmaps(kafka: KafkaSettings, topic: str, *, beats: bool) -> dict[str, np.ndarray]:
    """Per stream, a bitmap of the seqs present in ``topic`` (read from the beginning)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    bitmaps: dict[str, np.ndarray] = {}
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 15:
        batches = consumer.poll(timeout_ms=1000, max_records=50_000)
        if batches:
            idle_since = time.monotonic()
        for records in batches.values():
            for record in records:
                if beats:
                    beat = decode(record.key, record.value, record.headers, expected_length=140)
                    stream, seq = beat.stream, beat.seq
                else:
                    alert = json.loads(record.value)
                    stream, seq = alert["stream"], int(alert["seq"])
                bits = bitmaps.get(stream)
                if bits is None or seq >= len(bits):
                    grown = np.zeros(max(seq + 1, 2 * (0 if bits is None else len(bits))), bool)
                    if bits is not None:
                        grown[: len(bits)] = bits
                    bits = bitmaps[stream] = grown
                bits[seq] = True
    consumer.close()
    return bitmaps


def main() -> int:
    """Run the soak; print the summary; exit 1 on a lost beat or a broken bound."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration-s", type=float, default=3600)
    parser.add_argument("--rate-hz", type=float, default=2000)
    parser.add_argument("--interval-s", type=float, default=10)
    parser.add_argument("--kill-every-s", type=float, default=900)
    parser.add_argument("--broker-fault-every-s", type=float, default=1200)
    parser.add_argument("--storage", choices=["memory", "s3"], default="memory")
    parser.add_argument("--freeze-s", type=float, default=30)
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "images" / "soak.png")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "reports" / "soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beatwatch-soak-") as tmp:
        soak = Soak(args, Path(tmp))
        try:
            summary = soak.run()
        finally:
            for process in soak.processes.values():
                if process.poll() is None:
                    process.kill()
            soak.broker.stop()
        soak.plot(args.plot)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    failed = summary["lost"] > 0 or summary["bounds_broken"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
