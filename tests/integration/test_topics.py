"""``beatwatch topics`` on a real broker: what the Kubernetes topics job runs."""

from __future__ import annotations

import pytest

from beatwatch.cli import main

ARGS = ("--replication-factor", "1", "--min-insync-replicas", "1", "--timeout-s", "30")


def topic_args(prefix: str, partitions: int, state: str = "state") -> list[str]:
    """The command line for five topics named after ``prefix``."""
    names = {"beats": "beats", "alerts": "alerts", "dlq": "dlq", "incidents": "incidents"}
    args = [f"--{option}-topic={prefix}-{name}" for option, name in names.items()]
    return [*args, f"--state-topic={prefix}-{state}", "--partitions", str(partitions), *ARGS]


def test_creates_every_topic_then_leaves_them_alone(kafka_bootstrap, topic_prefix, capsys):
    args = ["topics", "--bootstrap-servers", kafka_bootstrap, *topic_args(topic_prefix, 3)]
    assert main([*args, "--retention-ms", "3600000"]) == 0
    first = capsys.readouterr().out
    for name in ("beats", "alerts", "dlq", "incidents", "state"):
        assert f"{topic_prefix}-{name}: 3 partitions" in first
    # Again, asking for more partitions: existing topics are left as they are.
    assert main([*args[: -len(ARGS) - 2], "--partitions", "6", *ARGS]) == 0
    assert capsys.readouterr().out == first


def test_refuses_a_changelog_partitioned_unlike_the_beats(kafka_bootstrap, topic_prefix, capsys):
    base = ["topics", "--bootstrap-servers", kafka_bootstrap]
    assert main([*base, *topic_args(topic_prefix, 2)]) == 0
    capsys.readouterr()
    # A changelog created separately with another partition count.
    args = topic_args(topic_prefix, 5, state="other-state")
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the beats topic's partition count" in err[0], err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-insync-replicas", "3"], "exceeds --replication-factor"),
        (["--state-topic", "same", "--beats-topic", "same"], "its own name"),
    ],
)
def test_refuses_settings_that_cannot_work(kafka_bootstrap, capsys, extra, message):
    assert main(["topics", "--bootstrap-servers", kafka_bootstrap, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
