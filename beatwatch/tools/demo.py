"""``beatwatch demo`` (``make demo``): the whole system on one machine, then a summary.

It starts the embedded broker, a detector with the shipped model and a producer
replaying the artifact's held-out test rows over a few dozen streams, shows a
live view (beats/s, alerts/s, latency p50/p99, running precision and recall
against the replayed labels, the latest alerts), and ends with a summary that
compares the live alerts with an offline scoring of the same rows by the same
artifact. A live web console (``beatwatch console``) shows the alerts with
their beats while it runs; its address is printed at the start. Producer,
detector and console run as child processes (as in production); a
Ctrl-C or SIGTERM at any moment stops them in order and leaves nothing behind.

The children run the demo's own flags only: the user's ``BEATWATCH_*``
settings for ``produce`` and ``detect`` (a ``BEATWATCH_LIMIT``, another alerts
topic, TLS/SASL) are not passed on, since the demo reads its topics itself over
PLAINTEXT and expects every test row scored (:func:`beatwatch.tools.processes.child`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from beatwatch.alert import Alert
from beatwatch.artifact import CONFIG_FILE, SHIPPED_MODEL_DIR, Artifact, load_artifact
from beatwatch.artifact_config import Evaluation
from beatwatch.clients import ensure_topics
from beatwatch.data import Dataset
from beatwatch.errors import ArtifactError, ConfigError, DataError
from beatwatch.kafka import KafkaSettings
from beatwatch.settings import add_flag, add_option, int_between, positive_float, positive_int
from beatwatch.tools import promtext
from beatwatch.tools.alerts import Deduplicator, iter_alerts
from beatwatch.tools.broker import EmbeddedBroker, free_port
from beatwatch.tools.processes import child, wait_ready

BEATS, ALERTS, DLQ = "ecg-beats", "ecg-alerts", "ecg-beats-dlq"
# Once the producer has exited, how long scoring may make no progress before
# the demo gives up instead of waiting for beats that will never come.
STALL_S = 15.0


@dataclass
class LiveAlerts:
    """Alerts read back from the alerts topic, deduplicated by ``alert_id``."""

    by_label: dict[int | None, int] = field(default_factory=dict)
    latest: deque[Alert] = field(default_factory=lambda: deque(maxlen=5))
    keys: set[tuple[str, int]] = field(default_factory=set)
    count: int = 0
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self, settings: KafkaSettings, stop: threading.Event) -> None:
        """Read alerts until ``stop`` (runs in a thread)."""
        dedup = Deduplicator()
        for alert in iter_alerts(settings, ALERTS, stop, from_beginning=True):
            with self.lock:
                if not dedup.is_new(alert.alert_id):
                    self.duplicates += 1
                    continue
                self.count += 1
                self.by_label[alert.label] = self.by_label.get(alert.label, 0) + 1
                self.latest.append(alert)
                self.keys.add((alert.stream, alert.seq))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch demo``."""
    add_option(parser, "--model", default=str(SHIPPED_MODEL_DIR), help="model artifact directory")
    add_option(
        parser,
        "--rate",
        default=200.0,
        type=positive_float,
        help="beats per second",
        env="BEATWATCH_DEMO_RATE",
    )
    add_option(
        parser,
        "--streams",
        default=32,
        type=positive_int,
        help="patient streams",
        env="BEATWATCH_DEMO_STREAMS",
    )
    add_option(
        parser, "--data", default=None, help="CSV the artifact was trained on (default ECG5000)"
    )
    add_option(
        parser,
        "--format",
        default="json",
        choices=["json", "binary"],
        help="wire format",
        env="BEATWATCH_DEMO_FORMAT",
    )
    add_option(
        parser, "--logs", default=None, help="directory for the children's logs (default: temp)"
    )
    add_option(
        parser,
        "--bootstrap-servers",
        default=None,
        help="a PLAINTEXT Kafka to use instead of starting the embedded broker",
    )
    add_option(
        parser,
        "--console-port",
        default=0,
        type=int_between(0, 65535),
        env="BEATWATCH_DEMO_CONSOLE_PORT",
        help="port of the live web console on 127.0.0.1 (0 = any free port)",
    )
    add_flag(
        parser,
        "--no-console",
        env="BEATWATCH_DEMO_NO_CONSOLE",
        help="do not start the live web console",
    )


class View:
    """The live terminal view: redrawn in place on a terminal, a line per tick otherwise."""

    def __init__(self, expected: int, labels: list[int]) -> None:
        self.expected = expected
        self.labels = labels
        self.tty = sys.stdout.isatty()
        self.console_url: str | None = None
        self._last: tuple[float, float, float] = (time.monotonic(), 0.0, 0.0)

    def draw(self, samples: promtext.Samples, alerts: LiveAlerts) -> None:
        """Show one tick from a fresh scrape and the alerts read so far."""
        now = time.monotonic()
        scored = promtext.value(samples, "beatwatch_beats_scored_total")
        alerted = promtext.value(samples, "beatwatch_alerts_total")
        last_time, last_scored, last_alerted = self._last
        elapsed = max(now - last_time, 1e-6)
        beats_rate, alerts_rate = (
            (scored - last_scored) / elapsed,
            (alerted - last_alerted) / elapsed,
        )
        self._last = (now, scored, alerted)
        p50 = promtext.histogram_quantile(samples, "beatwatch_end_to_end_latency_seconds", 0.5)
        p99 = promtext.histogram_quantile(samples, "beatwatch_end_to_end_latency_seconds", 0.99)
        with alerts.lock:
            true_pos = alerts.by_label.get(0, 0)
            precision = true_pos / alerts.count if alerts.count else float("nan")
            abnormal_so_far = sum(1 for label in self.labels[: int(scored)] if label == 0)
            recall = true_pos / abnormal_so_far if abnormal_so_far else float("nan")
            latest = list(alerts.latest)
        status = (
            f"scored {int(scored)}/{self.expected} | {beats_rate:6.0f} beats/s | "
            f"{alerts_rate:5.1f} alerts/s | "
            f"latency p50 {p50 * 1e3:5.1f} ms p99 {p99 * 1e3:5.1f} ms | "
            f"precision {precision:.3f} recall~ {recall:.3f}"
        )
        if not self.tty:
            print(status, flush=True)
            return
        lines = [
            "\x1b[2J\x1b[H beatwatch demo - Ctrl-C stops everything",
            "",
            " " + status,
            "",
            " latest alerts:",
        ]
        if self.console_url:
            lines[1] = f" console: {self.console_url}"
        lines += [
            f"  {a.stream} beat {a.seq:>4}  score/threshold {a.score_ratio or 0:.2f}  "
            f"label {a.label}  {a.explanation.summary[:70]}"
            for a in reversed(latest)
        ]
        print("\n".join(lines), flush=True)


def offline_alert_keys(
    model_dir: Path, data: str | None, rows: list[int], streams: int
) -> set[tuple[str, int]]:
    """Score the replayed rows offline with the same artifact: the alerts the demo must see."""
    import numpy as np

    from beatwatch.data import load_csv, load_ecg5000

    dataset = load_ecg5000() if data is None else load_csv(data)
    artifact = load_artifact(model_dir)
    scores, _ = artifact.scorer().score(dataset.x[np.array(rows)])
    over = [int(i) for i in np.flatnonzero(scores > artifact.threshold)]
    return {(f"p-{i % streams:04d}", i // streams) for i in over}


def recorded_test_rows(artifact: Artifact) -> list[int]:
    """The held-out test rows the artifact records (``data.rows.test``): what the demo replays.

    Raises:
        ArtifactError: they are missing, empty, or not row numbers.
    """
    rows = None if artifact.config.data is None else artifact.config.data.test_rows()
    if not rows:
        raise ArtifactError(
            f"{artifact.path / CONFIG_FILE}: no held-out test rows to replay "
            "(data.rows.test must be a non-empty list of row numbers)"
        )
    return list(rows)


def check_data_fits(dataset: Dataset, artifact: Artifact, rows: list[int]) -> None:
    """Refuse data the artifact's test rows cannot be replayed from.

    Raises:
        DataError: its beats are not the model's input length, or it has too few rows.
    """
    n_rows, length = dataset.x.shape
    hint = "pass the CSV the model was trained on with --data"
    if length != artifact.input_length:
        raise DataError(
            f"{dataset.source}: beats of {length} values, but the model at {artifact.path} "
            f"takes {artifact.input_length}; {hint}"
        )
    if max(rows) >= n_rows:
        raise DataError(
            f"{dataset.source}: {n_rows} rows, but the artifact's test rows go up to row "
            f"{max(rows)}; {hint}"
        )


def logs_directory(requested: str | None) -> Path:
    """Create the directory for the children's logs (a temporary one by default).

    Raises:
        ConfigError: it cannot be created or written to.
    """
    try:
        logs = Path(requested) if requested else Path(tempfile.mkdtemp(prefix="beatwatch-demo-"))
        logs.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--logs {requested}: exists and is not a directory") from None
    except OSError as exc:
        where = requested or tempfile.gettempdir()
        raise ConfigError(
            f"--logs {where}: cannot create a directory there ({exc.strerror or exc})"
        ) from None
    if not os.access(logs, os.W_OK | os.X_OK):
        raise ConfigError(f"--logs {logs}: the directory is not writable")
    return logs


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind as a Ctrl-C does, which stops the children in order."""
    # A supervisor may repeat SIGTERM; that must not cut the children's shutdown short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM as Ctrl-C while the demo runs.

    By default SIGTERM kills the demo outright, and its children, each in its
    own session, would be left running. An exception instead unwinds every
    phase (broker start, detector warm-up, the view, the offline scoring)
    through the code that stops the children.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class StallWatch:
    """Notices that scoring stopped short after the producer exited.

    A producer that exits with code 0 may still have sent fewer beats than the
    demo expects; without this, the view would wait for them forever.
    """

    limit_s: float = STALL_S
    _progress: tuple[float, ...] = ()
    _since: float = 0.0

    def stalled(self, progress: tuple[float, ...], producer_exited: bool, now: float) -> bool:
        """Record one tick of ``progress`` (any comparable counts).

        Returns:
            True once the producer has exited and ``progress`` has not changed
            for more than ``limit_s`` seconds.
        """
        if not producer_exited or progress != self._progress:
            self._progress, self._since = progress, now
            return False
        return now - self._since > self.limit_s


def main(args: argparse.Namespace) -> int:
    """Run the demo end to end; exit 1 if the live alerts differ from the offline ones."""
    with sigterm_as_interrupt():
        return run(args)


def run(args: argparse.Namespace) -> int:
    """The demo itself (see :func:`main`)."""
    import numpy as np

    from beatwatch.data import load_csv, load_ecg5000

    model_dir = Path(args.model)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"no model at {model_dir}: run `make train` (or pass --model)")
    artifact = load_artifact(model_dir)
    rows = recorded_test_rows(artifact)
    dataset = load_ecg5000() if args.data is None else load_csv(args.data)
    check_data_fits(dataset, artifact, rows)
    labels = [int(v) for v in dataset.normal[np.array(rows)]]
    logs = logs_directory(args.logs)
    python = sys.executable
    external = args.bootstrap_servers
    print(
        f"beatwatch demo: {len(rows)} held-out test beats over {args.streams} streams at "
        f"{args.rate:.0f} beats/s; logs in {logs}",
        flush=True,
    )
    stop = threading.Event()
    alerts = LiveAlerts()
    with contextlib.ExitStack() as stack:
        if external:
            bootstrap = external
        else:
            broker = stack.enter_context(EmbeddedBroker(log_path=logs / "broker.log"))
            bootstrap = broker.bootstrap_servers
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        ensure_topics(kafka, {BEATS: 4, ALERTS: 4, DLQ: 1})
        metrics_port = free_port()
        detector = stack.enter_context(
            child(
                [
                    python,
                    "-m",
                    "detector",
                    "--bootstrap-servers",
                    bootstrap,
                    "--model",
                    str(model_dir),
                    "--metrics-port",
                    str(metrics_port),
                    "--metrics-host",
                    "127.0.0.1",
                    "--session-timeout-ms",
                    "6000",
                    "--group-id",
                    f"demo-{os.getpid()}",
                ],
                logs / "detector.log",
            )
        )
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        print(f"starting detector (metrics: {metrics_url}/metrics) ...", flush=True)
        wait_ready(f"{metrics_url}/ready", detector, logs / "detector.log", timeout_s=90)
        console_url, console = None, None
        if not args.no_console:
            console_port = args.console_port or free_port()
            console = stack.enter_context(
                child(
                    [
                        python,
                        "-m",
                        "beatwatch.cli",
                        "console",
                        "--bootstrap-servers",
                        bootstrap,
                        "--model",
                        str(model_dir),
                        "--port",
                        str(console_port),
                        "--metrics-url",
                        f"{metrics_url}/metrics",
                        "--group-id",
                        f"demo-console-{os.getpid()}",
                    ],
                    logs / "console.log",
                )
            )
            console_url = f"http://127.0.0.1:{console_port}/"
            wait_ready(f"{console_url}healthz", console, logs / "console.log", 30, name="console")
            print(f"console: {console_url} (open it in a browser)", flush=True)
        collector = threading.Thread(target=alerts.collect, args=(kafka, stop), daemon=True)
        collector.start()
        producer_command = [
            python,
            "-m",
            "producer",
            "--bootstrap-servers",
            bootstrap,
            "--rows-from",
            f"{model_dir}:test",
            "--streams",
            str(args.streams),
            "--rate",
            str(args.rate),
            "--format",
            args.format,
            "--progress-interval-s",
            "0",
            # Numbered from 0: the summary matches alerts to rows by (stream, seq).
            "--first-seq",
            "0",
        ]
        if args.data:
            producer_command += ["--data", args.data]
        producer = stack.enter_context(child(producer_command, logs / "producer.log"))
        stack.callback(stop.set)
        # For whoever checks that the demo leaves no process behind (its test does).
        children = [detector.pid, producer.pid] + ([] if external else [broker.process.pid])  # type: ignore[union-attr]
        children += [console.pid] if console else []
        (logs / "pids").write_text("\n".join(map(str, children)) + "\n")
        view = View(len(rows), labels)
        view.console_url = console_url
        started = time.monotonic()
        samples: promtext.Samples = {}
        settled_since = None
        stall = StallWatch()
        while True:
            time.sleep(1.0)
            if detector.poll() is not None:
                raise ConfigError(f"detector exited with code {detector.returncode} (see {logs})")
            samples = promtext.scrape(f"{metrics_url}/metrics")
            view.draw(samples, alerts)
            scored = promtext.value(samples, "beatwatch_beats_scored_total")
            done = scored >= len(rows)
            alerted = promtext.value(samples, "beatwatch_alerts_total")
            with alerts.lock:
                caught_up = alerts.count >= alerted
                read = alerts.count
            if producer.poll() is not None and producer.returncode != 0:
                raise ConfigError(f"producer exited with code {producer.returncode} (see {logs})")
            if done and caught_up:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > 1.0:
                    break
            elif stall.stalled((scored, read), producer.poll() is not None, time.monotonic()):
                raise ConfigError(
                    f"the producer has exited, but the detector scored {int(scored)} of "
                    f"{len(rows)} beats ({read} of {int(alerted)} alerts read back) with no "
                    f"progress for {STALL_S:.0f} s (see {logs})"
                )
        elapsed_s = time.monotonic() - started
    print(
        "\ncomparing with an offline scoring of the same rows by the same artifact ...", flush=True
    )
    expected = offline_alert_keys(model_dir, args.data, rows, args.streams)
    recorded = artifact.config.evaluation or Evaluation()
    return summarize(samples, alerts, labels, expected, recorded, elapsed_s, metrics_url)


def _or_nan(metric: float | None) -> float:
    """A recorded metric, NaN when not recorded."""
    return float("nan") if metric is None else metric


def summarize(
    samples: promtext.Samples,
    alerts: LiveAlerts,
    labels: list[int],
    expected: set[tuple[str, int]],
    recorded: Evaluation,
    elapsed_s: float,
    metrics_url: str,
) -> int:
    """Print the summary; return 0 when the live alerts are exactly the offline ones.

    ``recorded`` is the trainer's evaluation of the same test rows (artifact.json).
    """
    scored = int(promtext.value(samples, "beatwatch_beats_scored_total"))
    abnormal = labels.count(0)
    true_pos = alerts.by_label.get(0, 0)
    false_pos = alerts.by_label.get(1, 0)
    precision = true_pos / max(alerts.count, 1)
    recall = true_pos / max(abnormal, 1)
    accuracy = (true_pos + (len(labels) - abnormal - false_pos)) / max(len(labels), 1)
    p50 = promtext.histogram_quantile(samples, "beatwatch_end_to_end_latency_seconds", 0.5)
    p99 = promtext.histogram_quantile(samples, "beatwatch_end_to_end_latency_seconds", 0.99)
    match = alerts.keys == expected
    dead_letters = promtext.value(samples, "beatwatch_dead_letters_total")
    print(
        "\n".join(
            [
                "beatwatch demo summary",
                f"  beats replayed/scored   {len(labels)} / {scored} in {elapsed_s:.1f} s",
                f"  alerts                  {alerts.count} "
                f"(+{alerts.duplicates} duplicate deliveries dropped)",
                f"  dead letters            {int(dead_letters)}",
                f"  true/false positives    {true_pos} / {false_pos} of {abnormal} abnormal beats",
                f"  live:    precision {precision:.4f}  recall {recall:.4f}  "
                f"accuracy {accuracy:.4f}",
                f"  trainer: precision {_or_nan(recorded.precision):.4f}  "
                f"recall {_or_nan(recorded.recall):.4f}  "
                f"accuracy {_or_nan(recorded.accuracy):.4f}  (artifact.json, same rows)",
                f"  beat -> scored latency  p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms",
                f"  offline scoring of the same rows: {len(expected)} alerts; live alerts "
                + ("match exactly" if match else f"DIFFER ({len(alerts.keys ^ expected)} beats)"),
                f"  metrics were at {metrics_url}/metrics (the demo has stopped everything)",
            ]
        ),
        flush=True,
    )
    return 0 if match and scored == len(labels) else 1
