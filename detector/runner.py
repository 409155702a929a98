"""A detector process's lifetime: metrics endpoint, model watcher, connect, loop, close."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry

from beatwatch.exposition import MetricsServer
from detector.service import Detector
from detector.settings import DetectorSettings

log = logging.getLogger(__name__)


def run(
    settings: DetectorSettings,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
) -> int:
    """Run the detector until ``stop`` is set; the current batch always finishes.

    Returns:
        Records handled.
    """
    registry = registry or CollectorRegistry()
    detector = Detector(settings, registry)
    server = None
    if settings.metrics_port >= 0:
        server = MetricsServer(
            registry,
            settings.metrics_port,
            host=settings.metrics_host,
            ready=lambda: detector.ready,
        ).start()
    handled = 0
    if detector.watcher is not None:
        detector.watcher.start()
    try:
        if detector.connect(stop):
            while not stop.is_set():
                handled += detector.run_once()
    finally:
        if detector.watcher is not None:
            detector.watcher.stop()
        detector.close()
        for step in detector.steps:
            step.close()
        if server is not None:
            server.stop()
        log.info("detector stopped after %d records", handled)
    return handled
