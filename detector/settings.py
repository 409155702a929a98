"""The detector's settings: everything ``run`` needs, checked when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from beatwatch.changelog import STATE_TOPIC
from beatwatch.clients import ConsumerOptions
from beatwatch.drift import DEFAULT_WINDOW_BEATS
from beatwatch.errors import ConfigError
from beatwatch.incident import INCIDENTS_TOPIC
from beatwatch.incident_rules import IncidentRules
from beatwatch.kafka import (
    ALERTS_TOPIC,
    BEATS_TOPIC,
    CONFLUENT_CLIENT,
    DLQ_TOPIC,
    FETCH_MAX_WAIT_MS,
    KafkaSettings,
)
from detector.model_watch import DEFAULT_MODEL_POLL_S

# The longest --batch-linger-ms: a linger trades latency for CPU, and past a
# second the trade belongs to a batch job, not a monitor.
MAX_BATCH_LINGER_MS = 1000


@dataclass(frozen=True)
class DetectorSettings:
    """Everything ``run`` needs; built from flags and ``BEATWATCH_*`` variables."""

    kafka: KafkaSettings
    model_dir: Path
    beats_topic: str = BEATS_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    group_id: str = "beatwatch-detector"
    partitions: int = 4
    replication_factor: int = 1
    max_batch: int = 1000
    batch_linger_ms: int = 0
    poll_timeout_ms: int = 100
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    auto_offset_reset: str = "earliest"
    max_message_bytes: int = 64 * 1024
    metrics_port: int = 9108
    metrics_host: str = "0.0.0.0"
    retry_backoff_max_s: float = 10.0
    publish_retry_backoff_s: float = 0.5
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    scoring_threads: int = 1
    create_topics: bool = True
    model_poll_s: float = DEFAULT_MODEL_POLL_S
    drift_window_beats: int = DEFAULT_WINDOW_BEATS
    # Per-stream state and incidents (docs/incidents.md).
    incidents: bool = True
    incidents_topic: str = INCIDENTS_TOPIC
    state_topic: str = STATE_TOPIC
    incident_rules: IncidentRules = field(default_factory=IncidentRules)

    def __post_init__(self) -> None:
        self.kafka.client_kwargs()  # a malformed address is refused here, not retried forever
        topics = {
            "--beats-topic": self.beats_topic,
            "--alerts-topic": self.alerts_topic,
            "--dlq-topic": self.dlq_topic,
        }
        if self.incidents:
            topics.update(
                {"--incidents-topic": self.incidents_topic, "--state-topic": self.state_topic}
            )
        if len(set(topics.values())) < len(topics):
            # The detector would read its own alerts or dead letters as beats: a
            # dead letter of a dead letter, forever.
            raise ConfigError(
                "the beats, alerts and dead-letter topics must differ, also from the incidents "
                "and state topics: " + ", ".join(f"{flag} {name}" for flag, name in topics.items())
            )
        # A linger is a sleep between polls: past the poll interval the group evicts
        # this detector, and a stop request waits for it to end.
        limit_ms = min(MAX_BATCH_LINGER_MS, self.max_poll_interval_ms // 2)
        if self.batch_linger_ms > limit_ms:
            raise ConfigError(
                f"--batch-linger-ms {self.batch_linger_ms} is over {limit_ms} ms "
                f"(at most {MAX_BATCH_LINGER_MS} ms and half of --max-poll-interval-ms)"
            )
        if (
            self.kafka.client == CONFLUENT_CLIENT
            and self.max_poll_interval_ms < self.session_timeout_ms
        ):
            raise ConfigError(
                f"--max-poll-interval-ms {self.max_poll_interval_ms} is under "
                f"--session-timeout-ms {self.session_timeout_ms}: librdkafka "
                "(--kafka-client confluent) needs it at least as long"
            )

    def consumer_options(self) -> ConsumerOptions:
        """How the detector's consumer reads (the benchmark's ceilings read the same way)."""
        return ConsumerOptions(
            group_id=self.group_id,
            auto_offset_reset=self.auto_offset_reset,
            max_batch=self.max_batch,
            session_timeout_ms=self.session_timeout_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
