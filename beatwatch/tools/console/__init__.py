"""``beatwatch console``: a live web page of alerts and incidents, with the beats behind them.

It joins its own consumer group on the alerts topic (and on the incidents
topic once that exists), keeps a bounded view of the streams in memory, and
serves one page on 127.0.0.1: the streams newest first with their state
(quiet, alerting, open incident), each alert's beat re-scored with the same
artifact and drawn with its reconstruction, error and regions, a stream's
recent beats, and the detector's health from its ``/metrics``. Read-only; it
survives broker restarts; its logs carry no stream ids or patient data.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import threading
import uuid

from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.errors import ConfigError
from beatwatch.kafka import (
    ALERTS_TOPIC,
    BEATS_TOPIC,
    add_kafka_options,
    kafka_settings_from_args,
)
from beatwatch.settings import add_flag, add_option, int_between, positive_float, positive_int
from beatwatch.signals import stop_on_signals
from beatwatch.tools.console.state import (
    DEFAULT_ALERTING_WINDOW_S,
    DEFAULT_ALERTS_PER_STREAM,
    DEFAULT_MAX_STREAMS,
)

log = logging.getLogger(__name__)

INCIDENTS_TOPIC = "ecg-incidents"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch console`` (its own read ``BEATWATCH_CONSOLE_*``)."""
    add_kafka_options(parser)
    add_option(
        parser,
        "--alerts-topic",
        default=ALERTS_TOPIC,
        help="topic to read alerts from (waited for, never created)",
    )
    add_option(
        parser,
        "--incidents-topic",
        default=INCIDENTS_TOPIC,
        help="topic of incident events, read once it exists ('' = none)",
    )
    add_option(
        parser,
        "--beats-topic",
        default=BEATS_TOPIC,
        help="topic the alerts' beats are read back from",
    )
    add_option(
        parser,
        "--model",
        default=str(SHIPPED_MODEL_DIR),
        help="the artifact the detector uses: beats are re-scored with it",
    )
    add_option(
        parser,
        "--host",
        default="127.0.0.1",
        env="BEATWATCH_CONSOLE_HOST",
        help="address to serve the page on (loopback: this machine only)",
    )
    add_option(
        parser,
        "--port",
        default=DEFAULT_PORT,
        type=int_between(0, 65535),
        env="BEATWATCH_CONSOLE_PORT",
        help="port of the page (0 = any free port)",
    )
    add_option(
        parser,
        "--metrics-url",
        default="http://127.0.0.1:9108/metrics",
        env="BEATWATCH_CONSOLE_METRICS_URL",
        help="the detector's metrics endpoint, for its health ('' = none)",
    )
    add_option(
        parser,
        "--group-id",
        default=None,
        env="BEATWATCH_CONSOLE_GROUP_ID",
        help="the console's consumer group (default: a new one per start, so "
        "every console sees every alert)",
    )
    add_flag(
        parser,
        "--from-latest",
        env="BEATWATCH_CONSOLE_FROM_LATEST",
        help="start at new alerts, not the oldest the topic keeps",
    )
    add_option(
        parser,
        "--max-streams",
        default=DEFAULT_MAX_STREAMS,
        type=positive_int,
        env="BEATWATCH_CONSOLE_MAX_STREAMS",
        help="streams held in memory; the least recently active is dropped",
    )
    add_option(
        parser,
        "--alerts-per-stream",
        default=DEFAULT_ALERTS_PER_STREAM,
        type=positive_int,
        env="BEATWATCH_CONSOLE_ALERTS_PER_STREAM",
        help="latest alerts held per stream",
    )
    add_option(
        parser,
        "--alerting-window-s",
        default=DEFAULT_ALERTING_WINDOW_S,
        type=positive_float,
        env="BEATWATCH_CONSOLE_ALERTING_WINDOW_S",
        help="a stream shows as alerting this long after its last alert",
    )


def main(args: argparse.Namespace) -> int:
    """Serve the console until Ctrl-C or SIGTERM."""
    from beatwatch.tools.console.feed import BeatReader, Feed
    from beatwatch.tools.console.health import poll_health
    from beatwatch.tools.console.rescore import Rescorer
    from beatwatch.tools.console.server import Console, make_server
    from beatwatch.tools.console.state import Store

    settings = kafka_settings_from_args(args)
    settings.client_kwargs()  # refuse bad bootstrap servers now, with one line
    rescorer = Rescorer(args.model)
    store = Store(
        max_streams=args.max_streams,
        alerts_per_stream=args.alerts_per_stream,
        alerting_window_s=args.alerting_window_s,
    )
    stop = threading.Event()
    reader = BeatReader(settings)
    console = Console(store, reader, rescorer, args.beats_topic, stop)
    try:
        server = make_server(console, args.host, args.port)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        log.warning(
            "serving on %s, not a loopback address: anyone who reaches it sees the alerts "
            "(the console has no authentication; put it behind one)",
            host,
        )
    feed = Feed(
        settings,
        store,
        alerts_topic=args.alerts_topic,
        incidents_topic=args.incidents_topic or None,
        group_id=args.group_id or f"beatwatch-console-{uuid.uuid4().hex[:12]}",
        from_latest=args.from_latest,
    )
    stop_on_signals(stop)
    workers = [
        threading.Thread(target=feed.run, args=(stop,), name="feed", daemon=True),
        threading.Thread(target=rescorer.warm, name="model", daemon=True),
        threading.Thread(target=server.serve_forever, name="http", daemon=True),
    ]
    if args.metrics_url:
        workers.append(
            threading.Thread(
                target=poll_health, args=(args.metrics_url, store, stop), name="health", daemon=True
            )
        )
    for worker in workers:
        worker.start()
    print(f"beatwatch console: http://{host}:{port}/", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        workers[0].join(timeout=15)
        reader.close()
    return 0
