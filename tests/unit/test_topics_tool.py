"""``beatwatch topics``: which topics it asks for, with which configs (no broker)."""

from __future__ import annotations

import argparse

import pytest

from beatwatch.changelog import CHANGELOG_CONFIG, STATE_TOPIC
from beatwatch.errors import ConfigError
from beatwatch.incident import INCIDENTS_TOPIC
from beatwatch.kafka import ALERTS_TOPIC, BEATS_TOPIC, DLQ_TOPIC
from beatwatch.tools.topics import add_arguments, main, topic_specs


def parse(*argv: str, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    for variable in ("BEATWATCH_PARTITIONS", "BEATWATCH_RETENTION_MS", "BEATWATCH_STATE_TOPIC"):
        monkeypatch.delenv(variable, raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_five_topics_one_partition_count_and_a_compacted_changelog(monkeypatch):
    args = parse(
        "--partitions",
        "12",
        "--min-insync-replicas",
        "2",
        "--retention-ms",
        "1000",
        monkeypatch=monkeypatch,
    )
    specs = {spec.name: spec for spec in topic_specs(args)}
    assert set(specs) == {BEATS_TOPIC, ALERTS_TOPIC, DLQ_TOPIC, INCIDENTS_TOPIC, STATE_TOPIC}
    assert {spec.partitions for spec in specs.values()} == {12}
    state = specs.pop(STATE_TOPIC).configs
    assert state == {**CHANGELOG_CONFIG, "min.insync.replicas": "2"}, "no retention on state"
    for spec in specs.values():
        assert spec.configs == {"min.insync.replicas": "2", "retention.ms": "1000"}


def test_broker_defaults_when_not_asked(monkeypatch):
    args = parse(monkeypatch=monkeypatch)
    for spec in topic_specs(args):
        assert "retention.ms" not in spec.configs and "min.insync.replicas" not in spec.configs


def test_refused_before_any_connection(monkeypatch):
    args = parse(
        "--bootstrap-servers",
        "192.0.2.1:1",
        "--replication-factor",
        "1",
        "--min-insync-replicas",
        "2",
        monkeypatch=monkeypatch,
    )
    with pytest.raises(ConfigError, match="exceeds --replication-factor"):
        main(args)
