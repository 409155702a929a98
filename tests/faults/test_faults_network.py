"""N1-N4: faults on the wire between the broker and its clients, on real network paths.

The broker listens on a bridge in the root namespace; each detector or
producer runs in a namespace of its own whose only way to the broker is one
veth link (see :mod:`tests.support.network`). The test cuts that link or
degrades it with ``tc netem`` while beats flow, then counts from the durable
topics, as the rest of the suite does: every produced (stream, seq) must have
its alert (the artifact alerts on every beat), and redeliveries are bounded.

The tests need root and iproute2, and skip with the reason otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from beatwatch.tools.broker import EmbeddedBroker
from tests.support.faults import (
    Accounting,
    BackgroundProducer,
    DetectorProcess,
    OwnershipLog,
    alert_keys,
    producer_settings,
    replay_keys,
    source_of,
    wait_for_alerts,
)
from tests.support.network import Host, TestNetwork
from tests.support.pipeline import REPO_ROOT, Topics, create_topics, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARTITIONS = 4
STREAMS = 16
MAX_BATCH = 1000  # the detector's default --max-batch: what one rewind may redeliver


class NamespacedDetector(DetectorProcess):
    """``python -m detector`` inside ``host``'s namespace, its endpoint on the management link."""

    def __init__(self, host: Host, *args: Any) -> None:
        super().__init__(*args)
        self.host = host
        self.metrics_address = host.management_address
        index = self.args.index("--metrics-host")
        self.args[index + 1] = host.management_address
        self.args = host.command(self.args)


@contextmanager
def running(detector: DetectorProcess) -> Iterator[DetectorProcess]:
    """``detector`` started, and stopped (SIGTERM, then SIGKILL) on the way out."""
    detector.start()
    try:
        yield detector
    finally:
        detector.stop()


@pytest.fixture
def network() -> Iterator[TestNetwork]:
    with TestNetwork() as net:
        yield net


@pytest.fixture
def broker(network: TestNetwork, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(host=network.broker_address, log_path=tmp_path / "tansu.log") as running:
        yield running


def _detector(
    host: Host, broker: EmbeddedBroker, topics: Topics, model: Path, log: Path
) -> NamespacedDetector:
    return NamespacedDetector(
        host,
        broker.bootstrap_servers,
        topics,
        "detectors",
        model,
        log,
        "--partitions",
        str(PARTITIONS),
    )


def _feed(
    broker: EmbeddedBroker, topics: Topics, samples: np.ndarray, n: int, rate_hz: float
) -> BackgroundProducer:
    """``n`` beats at ``rate_hz`` over ``STREAMS`` streams, from a thread in the root namespace."""
    settings = producer_settings(
        broker.bootstrap_servers, topics.beats, rate_hz=rate_hz, streams=STREAMS
    )
    return BackgroundProducer(settings, source_of(samples, n)).start()


def _ready_states_during(detector: DetectorProcess, seconds: float) -> set[int]:
    """HTTP statuses of ``/ready`` sampled every 0.5 s for ``seconds``."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(detector.http_status("/ready"))
        time.sleep(0.5)
    return seen


def _latency_ms(records: list[Any], since_ms: int, until_ms: int) -> dict[str, float]:
    """Percentiles of beat time -> detection time for beats produced in [since, until)."""
    delays = []
    for record in records:
        alert = orjson.loads(record.value)
        if since_ms <= alert["ts_ms"] < until_ms:
            delays.append(alert["detected_ts_ms"] - alert["ts_ms"])
    if not delays:
        return {}
    values = np.percentile(np.asarray(delays, float), [50, 95, 99])
    return {"p50_ms": values[0], "p95_ms": values[1], "p99_ms": values[2]}


@pytest.mark.usefixtures("kafka_client")
def test_n1_detector_link_down_5s_then_60s(
    network: TestNetwork,
    broker: EmbeddedBroker,
    topic_prefix: str,
    all_alert_model: Path,
    ecg_samples: np.ndarray,
    tmp_path: Path,
) -> None:
    topics = Topics.named(topic_prefix)
    kafka = create_topics(broker.bootstrap_servers, topics, PARTITIONS)
    host = network.add_host("det")
    n = 400 * 110  # 400 beats/s through both outages and the catch-up
    produced = replay_keys(n, STREAMS)
    detector = _detector(host, broker, topics, all_alert_model, tmp_path / "detector.log")
    with running(detector):
        detector.wait_ready(90)
        producer = _feed(broker, topics, ecg_samples, n, rate_hz=400)
        time.sleep(5)
        statuses: dict[str, set[int]] = {}
        for outage_s in (5, 60):
            host.cut()
            statuses[f"{outage_s} s"] = _ready_states_during(detector, outage_s)
            host.restore()
            time.sleep(5)
        producer.join(120)
        records = wait_for_alerts(kafka, topics.alerts, produced, timeout_s=120)
        pid_alive = detector.alive()
    accounting = Accounting(produced, alert_keys(records))
    print(accounting.line("N1", ready_during_outages=statuses))
    assert pid_alive, "the detector had to be restarted"
    assert accounting.lost == 0
    assert accounting.unexpected == 0
    assert accounting.duplicates <= 2 * PARTITIONS * MAX_BATCH
    assert 503 in statuses["60 s"], f"/ready never reported the 60 s outage: {statuses}"


def test_n2_slow_lossy_link_at_2000_beats_per_s(
    network: TestNetwork,
    broker: EmbeddedBroker,
    topic_prefix: str,
    all_alert_model: Path,
    ecg_samples: np.ndarray,
    tmp_path: Path,
) -> None:
    topics = Topics.named(topic_prefix)
    kafka = create_topics(broker.bootstrap_servers, topics, PARTITIONS)
    host = network.add_host("det")
    rate_hz, fault_s = 2000, 60
    n = rate_hz * (fault_s + 10)
    produced = replay_keys(n, STREAMS)
    detector = _detector(host, broker, topics, all_alert_model, tmp_path / "detector.log")
    with running(detector):
        detector.wait_ready(90)
        producer = _feed(broker, topics, ecg_samples, n, rate_hz=rate_hz)
        time.sleep(5)
        fault_from_ms = time.time_ns() // 1_000_000
        fault = host.degrade(delay_ms=200, jitter_ms=50, loss_pct=2.0)
        time.sleep(fault_s)
        host.heal()
        fault_until_ms = time.time_ns() // 1_000_000
        producer.join(120)
        records = wait_for_alerts(kafka, topics.alerts, produced, timeout_s=300)
    accounting = Accounting(produced, alert_keys(records))
    before = _latency_ms(records, 0, fault_from_ms)
    during = _latency_ms(records, fault_from_ms, fault_until_ms)
    print(
        accounting.line("N2", fault=fault, latency_before=_fmt(before), latency_during=_fmt(during))
    )
    assert accounting.lost == 0
    assert accounting.unexpected == 0
    assert accounting.duplicates <= PARTITIONS * MAX_BATCH * 10


def _fmt(percentiles: dict[str, float]) -> str:
    return " ".join(f"{k} {v:,.0f}" for k, v in percentiles.items()) or "none"


DONE_LINE = re.compile(r"done: (\d+) beats .* (\d+) acknowledged, (\d+) errors")


def test_n3_producer_cut_off_for_30s(
    network: TestNetwork, broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics.named(topic_prefix)
    kafka = create_topics(broker.bootstrap_servers, topics, PARTITIONS)
    host = network.add_host("prod")
    rate_hz, n = 300, 300 * 50
    log_path = tmp_path / "producer.log"
    command = host.command(
        [
            sys.executable,
            "-m",
            "producer",
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--beats-topic",
            topics.beats,
            "--rate",
            str(rate_hz),
            "--streams",
            str(STREAMS),
            "--limit",
            str(n),
            "--loop",
            "--format",
            "binary",
            "--no-create-topics",
        ]
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        try:
            time.sleep(8)
            host.cut()
            time.sleep(30)
            host.restore()
            code = process.wait(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
    output = log_path.read_text(errors="replace")
    match = DONE_LINE.search(output)
    assert match, output[-2000:]
    attempted, acknowledged, errors = (int(g) for g in match.groups())
    in_topic = read_topic(kafka, topics.beats, acknowledged, timeout_s=60)
    distinct = {(r.key, r.value[:20]) for r in in_topic}
    print(
        f"[N3] attempted {attempted}, acknowledged {acknowledged}, not delivered {errors}, "
        f"in topic {len(in_topic)} ({len(distinct)} distinct), exit code {code}"
    )
    assert attempted == n
    assert acknowledged + errors == attempted, "a beat is neither acknowledged nor counted"
    assert len(distinct) >= acknowledged, "a beat reported delivered is missing"
    assert code == (1 if errors else 0)


@pytest.mark.usefixtures("kafka_client")
def test_n4_link_down_during_a_rebalance(
    network: TestNetwork,
    broker: EmbeddedBroker,
    topic_prefix: str,
    all_alert_model: Path,
    ecg_samples: np.ndarray,
    tmp_path: Path,
) -> None:
    topics = Topics.named(topic_prefix)
    kafka = create_topics(broker.bootstrap_servers, topics, PARTITIONS)
    first_host, second_host = network.add_host("det1"), network.add_host("det2")
    n = 400 * 70
    produced = replay_keys(n, STREAMS)
    first = _detector(first_host, broker, topics, all_alert_model, tmp_path / "det1.log")
    second = _detector(second_host, broker, topics, all_alert_model, tmp_path / "det2.log")
    with running(first):
        first.wait_ready(90)
        producer = _feed(broker, topics, ecg_samples, n, rate_hz=400)
        time.sleep(5)
        with running(second):
            # The first detector drops off the wire just as the second one joins.
            time.sleep(1)
            cut_from = time.time()
            first_host.cut()
            time.sleep(20)
            first_host.restore()
            cut_until = time.time()
            producer.join(120)
            records = wait_for_alerts(kafka, topics.alerts, produced, timeout_s=120)
    accounting = Accounting(produced, alert_keys(records))
    overlaps, nominal = ownership_overlaps(
        [first.log_path, second.log_path], first.log_path.stem, (cut_from, cut_until)
    )
    print(
        accounting.line("N4", partitions_owned_twice=len(overlaps), held_while_cut_off=len(nominal))
    )
    assert accounting.lost == 0
    assert accounting.unexpected == 0
    assert accounting.duplicates <= 2 * PARTITIONS * MAX_BATCH
    assert not overlaps, overlaps


def ownership_overlaps(
    logs: list[Path], cut_off: str, cut_window: tuple[float, float]
) -> tuple[list[str], list[str]]:
    """Partitions assigned to one detector while another still held them, from their logs.

    Merged by the lines' timestamps (one clock: same machine). An overlap with
    the detector named ``cut_off`` whose holding dates from before its link
    went down (``cut_window``, epoch seconds) and which it has not renewed
    since is nominal: that detector's generation is over, it could neither
    publish nor commit while cut off, and its first commit after the link
    returns is refused by the group (its batch is read again by the new
    owner); such overlaps are returned apart from the real ones.

    Returns:
        (real overlaps, nominal overlaps while ``cut_off`` was unreachable).
    """
    events = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            match = OwnershipLog.PATTERN.search(line)
            if match:
                when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                names = [] if match.group(2) == "none" else match.group(2).split(", ")
                events.append((when, path.stem, match.group(1), names))
    owner: dict[str, str] = {}
    since: dict[str, float] = {}  # when the current owner last logged the partition
    real: list[str] = []
    nominal: list[str] = []
    for when, detector, kind, names in sorted(events, key=lambda e: e[0]):
        for name in names:
            if kind == "assigned":
                holder = owner.get(name)
                if holder not in (None, detector):
                    text = f"{name} assigned to {detector} while {holder} held it"
                    stale = holder == cut_off and since[name] < cut_window[0] <= when
                    (nominal if stale else real).append(text)
                owner[name] = detector
                since[name] = when
            elif owner.get(name) == detector:
                del owner[name]
    return real, nominal
