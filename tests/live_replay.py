"""Replay annotated records through a live detector and compare its alerts with ``evaluate``'s.

Run by hand (not part of ``make test``; about the record's length / ``--speed``)::

    python -m tests.live_replay --wfdb ../shared/data/mitbih --records 208 --speed 20

It starts the embedded broker on a free port, one ``beatwatch detect --model
MODEL`` process, waits for it to own its partitions, replays the records with
``beatwatch produce --record DIR/NAME ... --speed S``, captures ``beatwatch
alerts --json --from-beginning`` once the alerts stop coming, and runs
``beatwatch evaluate --model MODEL --wfdb DIR --records ... --live-alerts
FILE``, whose last lines compare the live alerts' VEB/SVEB Se and +P with
evaluate's and count the beats alerted differently. Exit 0 when they are
equal, 1 when they differ. Logs and the alerts file stay in ``--work-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from beatwatch.tools.broker import EmbeddedBroker, free_port
from tests.support.commands import BEATWATCH, Background, child_env, run
from tests.support.paths import REPO_ROOT

MODEL = REPO_ROOT / "models" / "mitbih"


def wait_for_line(proc: Background, text: str, timeout_s: float) -> None:
    """Wait until ``text`` is in ``proc``'s log (fails with the log when it exits first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.check_alive()
        if text in proc.log.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{proc.name}: no {text!r} within {timeout_s} s\n{proc.tail()}")


@contextlib.contextmanager
def replay_pipeline(
    work: Path, model: Path, client_args: Sequence[str], assign_timeout_s: float
) -> Iterator[tuple[list[str], Background]]:
    """An embedded broker and one ``beatwatch detect`` with its partitions assigned.

    Yields:
        The ``--bootstrap-servers`` flag pair for the other commands, and the detector.
    """
    with EmbeddedBroker(log_path=work / "tansu.log") as broker:
        bootstrap = ["--bootstrap-servers", broker.bootstrap_servers]
        detector = Background(
            "detector",
            [
                *BEATWATCH,
                "detect",
                "--model",
                str(model),
                *bootstrap,
                *client_args,
                "--metrics-port",
                str(free_port()),
                "--session-timeout-ms",
                "6000",
            ],
            work / "detector.log",
            env=child_env(),
        )
        with detector:
            wait_for_line(detector, "partitions assigned: ecg-beats", assign_timeout_s)
            yield bootstrap, detector


def produce_records(
    work: Path, wfdb: str, names: Sequence[str], speed: float, flags: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """``beatwatch produce --record`` of ``names`` at ``speed``; its output in producer.log."""
    produced = run(
        [
            *BEATWATCH,
            "produce",
            "--record",
            *[str(Path(wfdb) / name) for name in names],
            "--speed",
            str(speed),
            *flags,
        ],
        timeout_s=7200,
        env=child_env(),
    )
    (work / "producer.log").write_text(produced.stdout + produced.stderr)
    return produced


def replay(args: argparse.Namespace, work: Path) -> int:
    """One broker, one detector, the replay, the capture and the comparison."""
    env = child_env()
    client = ["--kafka-client", args.kafka_client]
    with replay_pipeline(work, Path(args.model), client, 120) as (bootstrap, detector):
        started = time.monotonic()
        produced = produce_records(
            work,
            args.wfdb,
            args.records,
            args.speed,
            ["--format", args.format, *bootstrap, *client],
        )
        if produced.returncode != 0:
            print(produced.stderr, file=sys.stderr)
            return 2
        print(f"replayed in {time.monotonic() - started:.1f} s", flush=True)
        alerts = run(
            [
                *BEATWATCH,
                "alerts",
                "--json",
                "--from-beginning",
                *bootstrap,
                "--idle-timeout-s",
                str(args.idle_s),
            ],
            timeout_s=7200,
            env=env,
        )
        detector.check_alive()
    alerts_file = work / "live-alerts.jsonl"
    alerts_file.write_text(alerts.stdout)
    print(f"{len(alerts.stdout.splitlines())} live alerts in {alerts_file}", flush=True)
    evaluated = run(
        [
            *BEATWATCH,
            "evaluate",
            "--model",
            str(args.model),
            "--wfdb",
            str(args.wfdb),
            "--records",
            *args.records,
            "--live-alerts",
            str(alerts_file),
            "--json",
            str(work / "evaluate.json"),
        ],
        timeout_s=7200,
        env=env,
    )
    print(evaluated.stdout)
    if evaluated.returncode != 0:
        print(evaluated.stderr, file=sys.stderr)
        return 2
    return 0 if "live alerts EQUAL" in evaluated.stdout else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the replay."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wfdb", required=True, help="directory of WFDB records")
    parser.add_argument("--records", nargs="+", required=True, help="record names")
    parser.add_argument("--model", default=str(MODEL), help="a patient-adaptive artifact")
    parser.add_argument("--speed", type=float, default=20.0, help="produce --speed")
    parser.add_argument("--format", default="json", choices=("json", "binary"))
    parser.add_argument(
        "--kafka-client", default="kafka-python", choices=("kafka-python", "confluent")
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=20.0,
        help="alerts are captured until none came for this long",
    )
    parser.add_argument("--work-dir", default=None, help="keep logs and files here")
    args = parser.parse_args(argv)
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        return replay(args, work)
    with tempfile.TemporaryDirectory(prefix="live-replay-") as tmp:
        return replay(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
