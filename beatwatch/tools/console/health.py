"""The detector's health for the page, from its ``/metrics`` endpoint."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from beatwatch.tools import promtext
from beatwatch.tools.console.state import Store

log = logging.getLogger(__name__)

POLL_S = 2.0


def health_of(
    samples: promtext.Samples, previous: tuple[float, float] | None, now: float
) -> tuple[dict[str, Any], tuple[float, float]]:
    """Beats/s (from the scored counter's change since ``previous``), lag and readiness.

    Args:
        samples: one scrape.
        previous: ``(time, beats scored)`` of the previous scrape, or None.
        now: monotonic seconds of this scrape.

    Returns:
        The health shown on the page, and this scrape's ``(time, beats scored)``.
    """
    scored = promtext.value(samples, "beatwatch_beats_scored_total")
    rate = None
    if previous is not None and now > previous[0] and scored >= previous[1]:
        rate = (scored - previous[1]) / (now - previous[0])
    health = {
        "up": True,
        "ready": promtext.value(samples, "beatwatch_ready") >= 1,
        "beats_per_s": rate,
        "lag_messages": promtext.total(samples, "beatwatch_consumer_lag_messages"),
        "beats_scored": scored,
        "alerts": promtext.value(samples, "beatwatch_alerts_total"),
        "dead_letters": promtext.value(samples, "beatwatch_dead_letters_total"),
    }
    return health, (now, scored)


def poll_health(url: str, store: Store, stop: threading.Event, interval_s: float = POLL_S) -> None:
    """Scrape ``url`` every ``interval_s`` into ``store`` until ``stop`` (runs in a thread)."""
    previous: tuple[float, float] | None = None
    while not stop.is_set():
        try:
            health, previous = health_of(promtext.scrape(url), previous, time.monotonic())
        except Exception as exc:  # unreachable, or not a metrics page: shown, not fatal
            health, previous = {"up": False, "error": type(exc).__name__}, None
        store.set_health(health)
        stop.wait(interval_s)
