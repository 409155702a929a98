"""``beatwatch detect``: options, environment variables and the entry point of the detector."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.kafka import (
    add_kafka_options,
    kafka_settings_from_args,
)
from beatwatch.settings import (
    INT32_MAX,
    add_flag,
    add_option,
    field_defaults,
    int_between,
    metrics_port,
    positive_float,
)
from beatwatch.signals import stop_on_signals
from detector.runner import run
from detector.settings import DetectorSettings
from detector.stream_state import add_arguments as add_state_arguments
from detector.stream_state import rules_from_args

# Each option's default is its DetectorSettings field's: written once, there.
_D = field_defaults(DetectorSettings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch detect``."""
    add_kafka_options(parser)
    add_option(
        parser,
        "--model",
        default=str(SHIPPED_MODEL_DIR),
        help="model artifact directory, or a model root (a CURRENT file and versions/, "
        "see 'beatwatch model') watched for new versions",
    )
    add_option(
        parser,
        "--model-poll-s",
        default=_D["model_poll_s"],
        type=positive_float,
        help="how often a model root's CURRENT is read for a new version",
    )
    add_option(
        parser,
        "--drift-window-beats",
        default=_D["drift_window_beats"],
        type=int_between(1, 10_000_000),
        help="scored beats in the window of beatwatch_score_drift_psi",
    )
    add_option(parser, "--beats-topic", default=_D["beats_topic"], help="topic to read beats from")
    add_option(
        parser, "--alerts-topic", default=_D["alerts_topic"], help="topic to publish alerts to"
    )
    add_option(parser, "--dlq-topic", default=_D["dlq_topic"], help="dead-letter topic")
    add_option(parser, "--group-id", default=_D["group_id"], help="consumer group")
    add_option(
        parser,
        "--partitions",
        default=_D["partitions"],
        type=int_between(1, INT32_MAX),
        help="partitions for topics this command creates",
    )
    add_option(
        parser,
        "--replication-factor",
        default=_D["replication_factor"],
        type=int_between(1, 32767),
        help="replication factor for topics this command creates (3 on production Kafka)",
    )
    add_option(
        parser,
        "--max-batch",
        default=_D["max_batch"],
        type=int_between(1, 100_000),
        help="most beats scored per model call (the poll's max_records)",
    )
    add_option(
        parser,
        "--batch-linger-ms",
        default=_D["batch_linger_ms"],
        type=int_between(0, INT32_MAX),
        help="after a batch smaller than --max-batch, wait until this long after its "
        "poll before polling again: fewer, larger batches for less CPU, at up to "
        "about twice this in added latency",
    )
    add_option(
        parser,
        "--poll-timeout-ms",
        default=_D["poll_timeout_ms"],
        type=int_between(0, 60_000),
        help="longest wait for beats when none are pending",
    )
    add_option(
        parser,
        "--fetch-max-wait-ms",
        default=_D["fetch_max_wait_ms"],
        type=int_between(0, 10_000),
        help="longest the broker holds a fetch when no beats are pending",
    )
    add_option(
        parser,
        "--session-timeout-ms",
        default=_D["session_timeout_ms"],
        type=int_between(1000, 1_800_000),
        help="consumer group session timeout",
    )
    add_option(
        parser,
        "--max-poll-interval-ms",
        default=_D["max_poll_interval_ms"],
        type=int_between(1, INT32_MAX),
        help="longest time between polls before the group evicts this detector",
    )
    add_option(
        parser,
        "--auto-offset-reset",
        default=_D["auto_offset_reset"],
        choices=["earliest", "latest"],
        help="where a new group starts reading",
    )
    add_option(
        parser,
        "--scoring-threads",
        default=_D["scoring_threads"],
        type=int_between(0, 1024),
        help="threads TensorFlow may use per model call (0 = one per core)",
    )
    add_option(
        parser,
        "--max-message-bytes",
        default=_D["max_message_bytes"],
        type=int_between(1, INT32_MAX),
        help="larger beat messages are dead-lettered unread",
    )
    add_option(
        parser,
        "--metrics-port",
        default=_D["metrics_port"],
        type=metrics_port,
        env="BEATWATCH_DETECT_METRICS_PORT",
        legacy_env=["BEATWATCH_METRICS_PORT"],
        help="port of /metrics, /ready and /healthz (0 picks one, -1 disables)",
    )
    add_option(
        parser, "--metrics-host", default=_D["metrics_host"], help="address of the metrics endpoint"
    )
    add_flag(parser, "--no-create-topics", help="do not create missing topics")
    add_state_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> DetectorSettings:
    """Build :class:`DetectorSettings` from parsed options."""
    return DetectorSettings(
        kafka=kafka_settings_from_args(args),
        model_dir=Path(args.model),
        model_poll_s=args.model_poll_s,
        drift_window_beats=args.drift_window_beats,
        beats_topic=args.beats_topic,
        alerts_topic=args.alerts_topic,
        dlq_topic=args.dlq_topic,
        group_id=args.group_id,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        max_batch=args.max_batch,
        batch_linger_ms=args.batch_linger_ms,
        poll_timeout_ms=args.poll_timeout_ms,
        session_timeout_ms=args.session_timeout_ms,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        max_poll_interval_ms=args.max_poll_interval_ms,
        auto_offset_reset=args.auto_offset_reset,
        max_message_bytes=args.max_message_bytes,
        scoring_threads=args.scoring_threads,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        create_topics=not args.no_create_topics,
        incidents=not args.no_incidents,
        incidents_topic=args.incidents_topic,
        state_topic=args.state_topic,
        incident_rules=rules_from_args(args),
    )


def main(args: argparse.Namespace) -> int:
    """Run the detector until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    stop_on_signals(stop)
    run(settings_from_args(args), stop)
    return 0
