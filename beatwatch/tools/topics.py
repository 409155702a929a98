"""``beatwatch topics``: create the topics a deployment needs, with their configs.

The detector and the producer can create a missing topic themselves, but only
with a partition count and a replication factor. A deployment wants more: the
same partition count for the beats topic and the detector's state changelog
(state for beats partition p lives in changelog partition p), a compacted
changelog, ``min.insync.replicas`` and retention. This command creates each
missing topic with all of that, leaves existing topics alone, and refuses
(exit 2, one line) when the beats topic and the changelog already exist with
different partition counts. It is the Kubernetes topics job's command, for
clusters without the Strimzi operator (``deploy/kubernetes/topics/job``).
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field

from beatwatch.changelog import CHANGELOG_CONFIG, STATE_TOPIC
from beatwatch.clients import TopicCreationError
from beatwatch.errors import ConfigError
from beatwatch.incident import INCIDENTS_TOPIC
from beatwatch.kafka import (
    ALERTS_TOPIC,
    BEATS_TOPIC,
    DLQ_TOPIC,
    KafkaSettings,
    add_kafka_options,
    kafka_settings_from_args,
    wait_for_broker,
)
from beatwatch.settings import INT32_MAX, add_option, int_between, non_negative_float
from beatwatch.signals import stop_on_signals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as a deployment wants it.

    Attributes:
        name: the topic.
        partitions: its partition count.
        configs: topic-level configs (``cleanup.policy``, ``retention.ms``, ...).
    """

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(args: argparse.Namespace) -> list[TopicSpec]:
    """The five topics from the parsed options; the changelog last, compacted."""
    shared: dict[str, str] = {}
    if args.min_insync_replicas:
        shared["min.insync.replicas"] = str(args.min_insync_replicas)
    logs = {**shared, "retention.ms": str(args.retention_ms)} if args.retention_ms else shared
    names = [args.beats_topic, args.alerts_topic, args.dlq_topic, args.incidents_topic]
    specs = [TopicSpec(name, args.partitions, logs) for name in names]
    specs.append(TopicSpec(args.state_topic, args.partitions, {**shared, **CHANGELOG_CONFIG}))
    if len({spec.name for spec in specs}) != len(specs):
        raise ConfigError("topics: every topic needs its own name")
    return specs


def ensure(
    settings: KafkaSettings,
    specs: list[TopicSpec],
    *,
    replication_factor: int,
    timeout_s: float,
    stop: threading.Event,
) -> dict[str, int]:
    """Create the missing topics; return every topic's partition count.

    Raises:
        ConfigError: the broker did not answer within ``timeout_s``.
        TopicCreationError: the broker refused a topic.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    if not wait_for_broker(settings, timeout_s, stop):
        if stop.is_set():
            return {}
        raise ConfigError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: no answer within {timeout_s:g} s"
        )
    try:
        admin = KafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=10_000)
    except KafkaError as exc:
        raise ConfigError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            topic = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs=spec.configs,
            )
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue  # another job won the race
            except KafkaError as exc:
                raise TopicCreationError(
                    f"the broker refused to create {spec.name} ({spec.partitions} partitions, "
                    f"replication factor {replication_factor}, {spec.configs}): {exc}"
                ) from None
            log.info("created %s: %d partitions, %s", spec.name, spec.partitions, spec.configs)
        described = admin.describe_topics([spec.name for spec in specs])
        return {topic["name"]: len(topic["partitions"]) for topic in described}
    finally:
        admin.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch topics``."""
    add_kafka_options(parser)
    add_option(parser, "--beats-topic", default=BEATS_TOPIC, help="beats topic")
    add_option(parser, "--alerts-topic", default=ALERTS_TOPIC, help="alerts topic")
    add_option(parser, "--dlq-topic", default=DLQ_TOPIC, help="dead-letter topic")
    add_option(parser, "--incidents-topic", default=INCIDENTS_TOPIC, help="incidents topic")
    add_option(
        parser,
        "--state-topic",
        default=STATE_TOPIC,
        help="the detector's compacted state changelog",
    )
    add_option(
        parser,
        "--partitions",
        default=4,
        type=int_between(1, INT32_MAX),
        help="partitions of every topic (the detector's scale limit)",
    )
    add_option(
        parser,
        "--replication-factor",
        default=1,
        type=int_between(1, 32767),
        help="copies of each partition (3 on production Kafka)",
    )
    add_option(
        parser,
        "--min-insync-replicas",
        default=0,
        type=int_between(0, 32767),
        help="copies that must have a write before it is acknowledged "
        "(2 with replication factor 3; 0 = the broker's default)",
    )
    add_option(
        parser,
        "--retention-ms",
        default=0,
        type=int_between(0, 2**63 - 1),
        help="how long the non-compacted topics keep records (0 = the broker's default)",
    )
    add_option(
        parser,
        "--timeout-s",
        default=60.0,
        type=non_negative_float,
        help="how long to wait for the broker",
    )


def main(args: argparse.Namespace) -> int:
    """Create the topics; print each one's partition count."""
    if args.min_insync_replicas > args.replication_factor:
        raise ConfigError(
            f"--min-insync-replicas {args.min_insync_replicas} exceeds --replication-factor "
            f"{args.replication_factor}: no write could ever be acknowledged"
        )
    stop = threading.Event()
    stop_on_signals(stop)
    specs = topic_specs(args)
    counts = ensure(
        kafka_settings_from_args(args),
        specs,
        replication_factor=args.replication_factor,
        timeout_s=args.timeout_s,
        stop=stop,
    )
    if stop.is_set():
        return 130
    for spec in specs:
        print(f"{spec.name}: {counts.get(spec.name, 0)} partitions")
    beats, state = counts.get(args.beats_topic), counts.get(args.state_topic)
    if beats != state:
        raise ConfigError(
            f"{args.state_topic} has {state} partitions and {args.beats_topic} {beats}: "
            "the state changelog needs the beats topic's partition count"
        )
    return 0
