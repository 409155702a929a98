"""The ``beatwatch`` command: one console script, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules are imported only when their subcommand runs
(or its ``--help`` is asked for), so ``beatwatch produce`` never loads
TensorFlow. Errors from any command end here as one line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from beatwatch import __version__
from beatwatch.errors import BeatwatchError
from beatwatch.kafka import SecretRedactor
from beatwatch.settings import add_option

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("trainer.cli", "train, calibrate and evaluate a model; write an artifact"),
    "evaluate": (
        "trainer.evaluate_cli",
        "score a saved artifact: its test rows, any labelled CSV, or annotated records (EC57)",
    ),
    "produce": ("producer.cli", "replay beats onto the beats topic"),
    "detect": ("detector.cli", "score beats from the beats topic and publish alerts"),
    "alerts": ("beatwatch.tools.alerts", "tail the alerts topic"),
    "broker": ("beatwatch.tools.broker", "run the embedded Kafka-compatible broker"),
    "demo": ("beatwatch.tools.demo", "broker + detector + producer + live view, then a summary"),
    "bench": ("beatwatch.tools.bench", "measure throughput and latency side by side"),
    "data": ("beatwatch.tools.fetch", "fetch a data set (ECG5000, MIT-BIH), sha256-checked"),
    "topics": ("beatwatch.tools.topics", "create the topics a deployment needs, with configs"),
    "console": ("beatwatch.tools.console", "a live web page of alerts, with the beats behind them"),
    "model": ("beatwatch.tools.model", "publish, activate and list versions in a model root"),
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="beatwatch",
        description="Streaming ECG anomaly detection. Flags beat BEATWATCH_* variables, "
        "which beat defaults.",
    )
    parser.add_argument("--version", action="version", version=f"beatwatch {__version__}")
    level = add_option(
        parser,
        "--log-level",
        default="INFO",
        choices=LOG_LEVELS,
        help="least severe log line shown",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (_, summary) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        if name == chosen:
            # Also after the subcommand; SUPPRESS keeps the top-level value when it is
            # not given there.
            sub.add_argument(
                "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS, help=level.help
            )
            _load(name).add_arguments(sub)
    return parser


def configure_logging(level: str) -> None:
    """Log to stderr; keep kafka-python quiet and scrub secrets from every line.

    kafka-python logs its configuration (SASL password included) at DEBUG, so its
    loggers never go below INFO, and a :class:`SecretRedactor` on the handlers
    scrubs registered secrets from whatever is logged. Its socket-level chatter
    (``kafka.net``: four lines per refused connection attempt) is silenced below
    DEBUG, and the programs probe the broker before creating clients while it
    is away; during an outage in mid-run kafka-python's own WARNING lines
    (metadata, coordinator) still show, a few per second.
    """
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    redactor = SecretRedactor()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    debug = level == "DEBUG"
    logging.getLogger("kafka").setLevel(logging.INFO if debug else logging.WARNING)
    logging.getLogger("kafka.net").setLevel(logging.INFO if debug else logging.CRITICAL)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # A fresh machine's first Keras import builds matplotlib's font cache and says so.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit code (2 for a clear error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in args_list if arg in COMMANDS), "beatwatch")
    try:
        args = build_parser(args_list).parse_args(args_list)
        configure_logging(args.log_level)
        code: int = _load(args.command).main(args)
        return code
    except BeatwatchError as exc:
        print(f"beatwatch {command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"beatwatch {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run_module(command: str) -> None:
    """Entry for ``python -m producer`` and friends: ``beatwatch COMMAND`` with argv."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
