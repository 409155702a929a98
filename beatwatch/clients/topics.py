"""Topic creation through the client seam: each missing topic created, existing ones left alone."""

from __future__ import annotations

import logging
import threading
import time

from beatwatch.clients.client import ClientError, TopicsRefused
from beatwatch.clients.factory import new_admin
from beatwatch.errors import ConfigError
from beatwatch.kafka import KafkaSettings, wait_for_broker

log = logging.getLogger(__name__)


class TopicCreationError(ConfigError):
    """The broker answered but would not create a topic (replication factor, policy, ACL).

    Unlike an unreachable broker this does not heal by waiting, so the detector
    stops on it instead of retrying.
    """


def ensure_topics(
    settings: KafkaSettings,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    stop: threading.Event | None = None,
) -> bool:
    """Create each missing topic with its partition count; existing topics are left alone.

    Args:
        settings: how to reach the broker.
        topics: topic name -> partition count.
        replication_factor: copies of each partition for topics created here;
            production Kafka wants 3 (with ``min.insync.replicas=2``).
        timeout_s: how long to keep retrying while the broker is not reachable.
        stop: when set, give up waiting at once (a stop signal during start-up).

    Returns:
        True when the topics exist, False when ``stop`` was set first.

    Raises:
        ConfigError: the broker did not answer within ``timeout_s``.
        TopicCreationError: the broker refused to create a missing topic.
    """
    deadline = time.monotonic() + timeout_s
    stop = stop or threading.Event()
    if not wait_for_broker(settings, deadline - time.monotonic(), stop):
        if stop.is_set():
            return False
        raise ConfigError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: no answer within {timeout_s:g} s"
        )
    try:
        admin = new_admin(settings, connect_timeout_s=deadline - time.monotonic())
    except ClientError as exc:
        raise ConfigError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    try:
        try:
            existing = admin.topics()
        except ClientError as exc:
            raise ConfigError(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
            ) from None
        missing = {name: count for name, count in topics.items() if name not in existing}
        if missing:
            names = ", ".join(missing)
            try:
                admin.create_topics(missing, replication_factor)
                log.info("created topics %s (replication factor %d)", names, replication_factor)
            except TopicsRefused as exc:
                raise TopicCreationError(
                    f"the broker refused to create {names} with replication factor "
                    f"{replication_factor}: {exc} (create them yourself, or see "
                    "--replication-factor and --no-create-topics)"
                ) from None
    finally:
        admin.close()
    return True
