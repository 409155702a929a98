"""``beatwatch produce``: options, environment variables and the entry point of the producer."""

from __future__ import annotations

import argparse
import threading

from beatwatch.errors import ConfigError
from beatwatch.kafka import add_kafka_options, kafka_settings_from_args
from beatwatch.settings import (
    INT32_MAX,
    add_flag,
    add_option,
    field_defaults,
    int_between,
    metrics_port,
    non_negative_float,
    non_negative_int,
)
from beatwatch.signals import stop_on_signals
from beatwatch.wire import FORMATS
from producer.service import ProducerSettings, ProducerStats, run
from producer.source import load_source

# Each option's default is its ProducerSettings field's: written once, there.
_P = field_defaults(ProducerSettings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch produce``."""
    add_kafka_options(parser)
    add_option(parser, "--beats-topic", default=_P["topic"], help="topic to send beats to")
    add_option(
        parser,
        "--partitions",
        default=_P["partitions"],
        type=int_between(1, INT32_MAX),
        help="partitions if the topic is created",
    )
    add_option(
        parser,
        "--replication-factor",
        default=_P["replication_factor"],
        type=int_between(1, 32767),
        help="replication factor if the topic is created (3 on production Kafka)",
    )
    add_option(
        parser,
        "--data",
        default=None,
        help="CSV of vectors + label; default ECG5000 (found or fetched)",
    )
    add_option(parser, "--label-column", default="-1", help="label column name or index (CSV)")
    add_option(parser, "--normal-label", default=1.0, type=float, help="label of normal rows")
    add_option(parser, "--rows", default=None, help="rows to replay, e.g. 0-99,200")
    add_option(
        parser,
        "--rows-from",
        default=None,
        help="replay an artifact's recorded rows: DIR[:train|calibration|test]",
    )
    add_flag(parser, "--only-normal", help="replay only the rows labelled normal")
    add_option(
        parser,
        "--rate",
        default=_P["rate_hz"],
        type=non_negative_float,
        help="beats per second (0 = as fast as possible)",
    )
    add_option(
        parser,
        "--streams",
        default=_P["streams"],
        type=int_between(1, 1_000_000),
        help="patient streams to spread beats over",
    )
    add_option(
        parser,
        "--limit",
        default=_P["limit"],
        type=non_negative_int,
        help="stop after this many beats (0 = no limit)",
    )
    add_flag(parser, "--loop", help="start over at the end of the data")
    add_option(parser, "--format", default=_P["wire_format"], choices=FORMATS, help="wire format")
    add_flag(parser, "--no-labels", help="do not send ground-truth labels")
    add_option(
        parser,
        "--metrics-port",
        default=_P["metrics_port"],
        type=metrics_port,
        env="BEATWATCH_PRODUCE_METRICS_PORT",
        legacy_env=["BEATWATCH_METRICS_PORT"],
        help="port of /metrics (0 picks one, -1 disables)",
    )
    add_option(
        parser,
        "--progress-interval-s",
        default=_P["progress_interval_s"],
        type=non_negative_float,
        help="seconds between progress lines (0 = none)",
    )
    add_option(
        parser,
        "--linger-ms",
        default=_P["linger_ms"],
        type=int_between(0, 10_000),
        help="how long a batch may wait for more beats before it is sent",
    )
    add_flag(parser, "--no-create-topics", help="do not create a missing topic")
    add_option(
        parser,
        "--first-seq",
        default=_P["first_seq"],
        type=int_between(0, 2**53 - 1),
        help="seq of each stream's first beat (default: the run's start time in "
        "microseconds, so that reruns never reuse a stream's seq)",
    )
    records = parser.add_argument_group("continuous recordings (instead of --data)")
    records.add_argument(
        "--record",
        nargs="+",
        default=None,
        metavar="PATH",
        help="WFDB records (path without extension) or CSV signals "
        "(a header row of lead names, a column per lead); one stream "
        "per record, beats found by the QRS detector",
    )
    add_option(
        records, "--fs-hz", default=None, type=_positive_float, help="sampling rate of CSV signals"
    )
    add_option(
        records,
        "--speed",
        default=1.0,
        type=non_negative_float,
        help="signal seconds replayed per second (1 = real time, 0 = as fast as possible)",
    )
    add_option(
        records,
        "--model",
        default=None,
        env="BEATWATCH_PRODUCE_MODEL",
        help="artifact whose segmentation cuts the beats (default models/mitbih)",
    )
    add_option(
        records,
        "--qrs-lead",
        default=None,
        help="lead the QRS detector reads, by name (default MLII, else II or ML2, else the first)",
    )
    add_flag(
        records,
        "--beats-from-annotations",
        help="take the R peaks from the reference annotations, not the QRS detector",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive number, got {text}")
    return value


def main(args: argparse.Namespace) -> int:
    """Replay beats until done or Ctrl-C; exit 1 if any beat was not delivered."""
    stop = threading.Event()
    stop_on_signals(stop)
    if args.record:
        return _main_records(args, stop)
    source = load_source(
        args.data,
        label_column=args.label_column,
        normal_label=args.normal_label,
        rows=args.rows,
        rows_from=args.rows_from,
        only_normal=args.only_normal,
    )
    stats = run(_settings(args), source, stop)
    return _report(stats)


def _settings(args: argparse.Namespace) -> ProducerSettings:
    return ProducerSettings(
        kafka=kafka_settings_from_args(args),
        topic=args.beats_topic,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        rate_hz=args.rate,
        streams=args.streams,
        limit=args.limit,
        loop=args.loop,
        wire_format=args.format,
        include_labels=not args.no_labels,
        metrics_port=args.metrics_port,
        progress_interval_s=args.progress_interval_s,
        linger_ms=args.linger_ms,
        create_topics=not args.no_create_topics,
        first_seq=args.first_seq,
    )


def _main_records(args: argparse.Namespace, stop: threading.Event) -> int:
    """``--record``: replay continuous recordings, one stream per record."""
    from beatwatch.recording_beats import load_segmentation
    from producer.record_service import RecordReplaySettings, run_records
    from producer.record_source import load_records

    for flag, value in (
        ("--data", args.data),
        ("--rows", args.rows),
        ("--rows-from", args.rows_from),
    ):
        if value:
            raise ConfigError(f"give --record or {flag}, not both")
    if args.only_normal:
        raise ConfigError("--only-normal replays rows of a data set, not --record")
    seg = load_segmentation(args.model)
    records = load_records(
        args.record,
        seg,
        fs_hz=args.fs_hz,
        from_annotations=args.beats_from_annotations,
        qrs_lead=args.qrs_lead,
    )
    replay = RecordReplaySettings(
        speed=args.speed, from_annotations=args.beats_from_annotations, qrs_lead=args.qrs_lead
    )
    stats = run_records(_settings(args), replay, records, seg, stop)
    return _report(stats)


def _report(stats: ProducerStats) -> int:
    print(
        f"done: {stats.attempted} beats in {stats.elapsed_s:.3f} s ({stats.rate_hz:,.1f}/s), "
        f"{stats.acknowledged} acknowledged, {stats.errors} errors",
        flush=True,
    )
    return 1 if stats.errors else 0
