"""Whether the broker listens: :func:`broker_listens` and :func:`wait_for_broker`.

Its one job is a plain TCP probe of the bootstrap servers, made before a
client is created, and a bounded wait on it that logs once while the broker
is unreachable.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from beatwatch.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)


def broker_listens(settings: KafkaSettings, timeout_s: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection.

    A probe before creating a kafka-python client: in kafka-python 3.0 a client
    whose bootstrap fails leaves its I/O thread and sockets behind (measured:
    one thread and 4 file descriptors per attempt), so retrying clients through
    a long outage would run out of file descriptors.
    """
    for server in settings.client_kwargs()["bootstrap_servers"]:
        host, colon, port = server.rpartition(":")
        if not colon:
            host, port = server, "9092"
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def wait_for_broker(settings: KafkaSettings, timeout_s: float, stop: threading.Event) -> bool:
    """Wait until a bootstrap server listens, logging once while it does not.

    Returns:
        True when one listens; False after ``timeout_s`` or once ``stop`` is set.
    """
    deadline = time.monotonic() + timeout_s
    logged = False
    while not stop.is_set():
        if broker_listens(settings):
            return True
        if time.monotonic() >= deadline:
            return False
        if not logged:
            log.warning(
                "Kafka at %s not reachable yet; retrying for up to %.0f s",
                settings.bootstrap_servers,
                timeout_s,
            )
            logged = True
        stop.wait(0.5)
    return False
