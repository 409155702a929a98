"""Helpers for the console's browser tests: the console as a user starts it, a real chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from beatwatch.alert import Alert, build_alert, encode_alert, explain
from beatwatch.artifact import Artifact
from beatwatch.wire import Beat, encode
from tests.support.commands import BEATWATCH, child_env
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_for

CHROMIUM = os.environ.get("BEATWATCH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = REPO_ROOT / "docs" / "images" / "console.png"


def chromium_or_skip() -> str:
    """The chromium binary, or skip with the reason (the Makefile's system-deps install it)."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium (make system-deps)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return CHROMIUM


@contextmanager
def browser_page() -> Iterator[Any]:
    """A page in headless chromium (Debian's binary; nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1480, "height": 860})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


class ConsoleProcess:
    """``beatwatch console`` in a subprocess, as a user runs it."""

    def __init__(self, *args: str, log_path: Path) -> None:
        self.log_path = log_path
        self.popen = subprocess.Popen(
            [*BEATWATCH, "console", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log_path.open("w"),
            cwd=REPO_ROOT,
            env=child_env(),
            text=True,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no address printed: {line!r}\n{self.log()}"
        self.url = match.group(1)
        wait_for(self.serving, 30, "the console to serve", interval_s=0.2, context=self.log)

    def serving(self) -> bool:
        """Whether ``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.popen.terminate()
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"console did not stop on SIGTERM\n{self.log()}") from None


@contextmanager
def running_console(*args: str, log_path: Path) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(*args, log_path=log_path)
    try:
        yield console
    finally:
        if console.popen.poll() is None:
            console.stop()


def send_beat(producer: KafkaProducer, topic: str, beat: Beat) -> tuple[int, int]:
    """Publish a beat keyed by its stream (as the producer does); its (partition, offset)."""
    key, value, headers = encode(beat, "json")
    metadata = producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    return metadata.partition, metadata.offset


def send_alert_for(
    producer: KafkaProducer,
    artifact: Artifact,
    beats_topic: str,
    alerts_topic: str,
    beat: Beat,
    *,
    model_version: str | None = None,
) -> Alert:
    """Publish a beat and the alert a detector with ``artifact`` would publish for it."""
    partition, offset = send_beat(producer, beats_topic, beat)
    scores, errors = artifact.scorer().score(beat.samples[None, :])
    alert = build_alert(
        beat,
        score=float(scores[0]),
        threshold=artifact.threshold,
        model_version=model_version or artifact.model_version,
        explanation=explain(errors[0], artifact.regions),
        topic=beats_topic,
        partition=partition,
        offset=offset,
        detected_ts_ms=int(time.time() * 1000),
    )
    producer.send(alerts_topic, key=beat.stream.encode(), value=encode_alert(alert)).get(30)
    return alert


def path_points(d: str) -> np.ndarray:
    """The (x, y) points of an SVG path made of M and L commands."""
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return np.array(numbers).reshape(-1, 2)


def expected_points(values: np.ndarray, plot: dict[str, float]) -> np.ndarray:
    """Where the page must draw ``values``: x evenly over the plot, y scaled to vmin..vmax."""
    n = len(values)
    x = plot["left"] + plot["width"] * np.arange(n) / (n - 1)
    y = plot["top"] + plot["height"] * (plot["vmax"] - values) / (plot["vmax"] - plot["vmin"])
    return np.stack([x, y], axis=1)
