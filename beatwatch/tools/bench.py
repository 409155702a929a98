"""``beatwatch bench`` (``make bench``): throughput and latency measured side by side in one run.

On the embedded broker (or ``BEATWATCH_BOOTSTRAP_SERVERS``), over topics of 4
partitions pre-filled with ECG5000 beats, it measures:

(a) the ceiling: a bare kafka-python consumer that only decodes, per wire format;
(a') the same consumer doing all of the detector's Kafka work: publishing one alert
    per abnormal beat, flushing, committing; only the model and building each alert are missing;
(b) the detector process draining the same topic, alerts and commits included;
(c) the course baseline: ``model.predict`` one beat at a time;
(d) scoring alone: the detector's batched compiled call;
(e) produce->alert latency at offered loads, read off the alerts topic, with
    each process's share of the machine during the load;
(f) the producer: maximum replay rate and pacing error at a target rate;
(g) the detector's resident memory over about a million beats;
(h) two detector processes in one group against one.

With confluent-kafka installed, (a), (a') and (b) on ECG5000, (e) at 2,000 and
10,000 beats/s and (g) are also measured with ``--kafka-client confluent``
(alternated with the kafka-python runs), under keys starting ``confluent.``.
The beats are produced by the same kafka-python producer for both clients.

Absolute figures depend on the machine; the ratios (b)/(a), (b)/(c), (d)/(b)
measured in one run do not. Nothing here passes or fails: it prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.clients import ensure_topics
from beatwatch.errors import ConfigError
from beatwatch.kafka import CONFLUENT_CLIENT, FETCH_MAX_WAIT_MS, KAFKA_PYTHON_CLIENT, KafkaSettings
from beatwatch.settings import add_flag, add_option
from beatwatch.tools import promtext
from beatwatch.tools.broker import EmbeddedBroker, free_port
from beatwatch.tools.processes import child, cpu_and_waits, wait_ready, waited_ns

PARTITIONS = 4
DONE_LINE = re.compile(r"done: (\d+) beats in ([\d.]+) s")
# Progress scrapes of a draining detector: fine where the clock is read, coarse between.
FINE_SCRAPE_S = 0.02
COARSE_SCRAPE_S = 0.5
# Result keys of the confluent-kafka figures start with this (kafka-python's have none).
CONFLUENT_PREFIX = "confluent."
# What the confluent-kafka detector is measured on: the ECG5000 mix, and the loads
# where its latency is compared with kafka-python's (2,000/s) and taken alone.
CONFLUENT_CASES = ("json", "binary")
CONFLUENT_LOADS_HZ = (2_000, 10_000)


def key_prefix(client: str) -> str:
    """The result-key prefix of ``client``'s figures."""
    return CONFLUENT_PREFIX if client == CONFLUENT_CLIENT else ""


def confluent_available() -> bool:
    """Whether the confluent-kafka extra is installed."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class BenchSizes:
    """How much work each measurement does."""

    drain_beats: int = 60_000
    repeats: int = 3
    baseline_beats: int = 100
    scoring_beats: int = 200_000
    loads_hz: tuple[int, ...] = (500, 2_000, 10_000)
    load_seconds: float = 10.0
    memory_beats: int = 1_000_000
    max_batch: int = 1_000

    @classmethod
    def quick(cls) -> BenchSizes:
        """Tiny sizes for the smoke test: every code path, seconds of work."""
        return cls(
            drain_beats=20_000,
            repeats=1,
            baseline_beats=5,
            scoring_beats=5_000,
            loads_hz=(200,),
            load_seconds=2.0,
            memory_beats=10_000,
        )


class Bench:
    """One benchmark run against one broker."""

    def __init__(
        self,
        bootstrap: str,
        model_dir: Path,
        sizes: BenchSizes,
        logs: Path,
        broker_pid: int | None = None,
        clients: tuple[str, ...] = (KAFKA_PYTHON_CLIENT,),
    ) -> None:
        self.bootstrap = bootstrap
        self.clients = clients
        self.broker_pid = broker_pid  # the embedded broker's, to read its CPU share
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.model_dir = model_dir
        self.sizes = sizes
        self.logs = logs
        self.results: dict[str, Any] = {}
        self._run_id = f"{os.getpid()}-{int(time.time())}"

    def topic(self, name: str) -> str:
        """A topic unique to this run (a shared external broker may hold older ones)."""
        return f"bench-{self._run_id}-{name}"

    # -- processes ---------------------------------------------------------------
    def producer_command(
        self, topic: str, fmt: str, limit: int, rate_hz: float, *extra: str
    ) -> list[str]:
        """The command line of a producer process replaying ECG5000 in a loop."""
        return [
            sys.executable,
            "-m",
            "producer",
            "--bootstrap-servers",
            self.bootstrap,
            "--beats-topic",
            topic,
            "--format",
            fmt,
            "--limit",
            str(limit),
            "--loop",
            "--rate",
            str(rate_hz),
            "--streams",
            "64",
            "--progress-interval-s",
            "0",
            *extra,
        ]

    def produce(
        self,
        topic: str,
        fmt: str,
        limit: int,
        rate_hz: float,
        name: str,
        *extra: str,
        while_running: Callable[[subprocess.Popen[bytes]], None] | None = None,
    ) -> float:
        """Run the producer process to the end; return its achieved beats/s.

        ``while_running`` is called with the producer process once it started.
        """
        log_path = self.logs / f"producer-{name}.log"
        with child(self.producer_command(topic, fmt, limit, rate_hz, *extra), log_path) as process:
            if while_running is not None:
                while_running(process)
            process.wait()
        match = DONE_LINE.search(log_path.read_text())
        if process.returncode != 0 or match is None:
            raise ConfigError(f"producer failed (see {log_path})")
        return int(match.group(1)) / float(match.group(2))

    @contextlib.contextmanager
    def detector(
        self,
        topic: str,
        alerts: str,
        name: str,
        group: str | None = None,
        wait: bool = True,
        client: str = KAFKA_PYTHON_CLIENT,
    ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
        """Run a detector process (of ``client``) in a fresh group; yield it and its metrics URL.

        With ``wait`` it yields once the detector is ready (partitions assigned).
        """
        port = free_port()
        log_path = self.logs / f"detector-{name}.log"
        command = [
            sys.executable,
            "-m",
            "detector",
            "--bootstrap-servers",
            self.bootstrap,
            "--model",
            str(self.model_dir),
            "--beats-topic",
            topic,
            "--alerts-topic",
            alerts,
            "--dlq-topic",
            self.topic("dlq"),
            "--group-id",
            f"g-{topic}-{group or name}",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            "--session-timeout-ms",
            "6000",
            "--max-batch",
            str(self.sizes.max_batch),
            "--kafka-client",
            client,
        ]
        with child(command, log_path) as process:
            url = f"http://127.0.0.1:{port}"
            if wait:
                wait_ready(f"{url}/ready", process, log_path, timeout_s=120)
            yield process, url

    # -- measurements ------------------------------------------------------------
    def prefill(self, case: str) -> str:
        """(f, part) Fill a topic with ``drain_beats`` beats as fast as the producer can.

        ``case`` is ``FORMAT`` (all ECG5000 rows: 42% abnormal, so 42% of beats
        alert) or ``FORMAT_normal`` (normal rows only: alerts are false alarms).
        """
        fmt, _, mix = case.partition("_")
        topic = self.topic(f"drain-{case}")
        ensure_topics(self.kafka, {topic: PARTITIONS})
        extra = ["--only-normal"] if mix == "normal" else []
        rate = self.produce(topic, fmt, self.sizes.drain_beats, 0, f"prefill-{case}", *extra)
        if not mix:
            self.results[f"f_producer_max_{fmt}_beats_per_s"] = rate
        return topic

    def ceiling_and_detector(self, topic: str, case: str) -> None:
        """(a), (a') and (b), alternated ``repeats`` times on the same topic.

        Single runs on a shared 2-core machine vary; alternating the three keeps
        them under the same conditions. The ceilings keep their fastest run: a
        bare consumer sometimes idles waiting for fetches (kafka-python sends
        the next fetch only once the buffered records are drained), measured at
        0.6 of a core in slow runs against 0.95 in fast ones, and an idle
        consumer is no ceiling. The detector, busy at 1.0 core, keeps its median.
        """
        clients = [
            client
            for client in self.clients
            if client == KAFKA_PYTHON_CLIENT or case in CONFLUENT_CASES
        ]
        runs: dict[str, dict[str, list[float]]] = {
            client: {"ceiling": [], "ceiling_publishing": [], "detector": []} for client in clients
        }
        for run in range(self.sizes.repeats):
            for client in clients:  # alternated, so both clients meet the same conditions
                mine, prefix = runs[client], key_prefix(client)
                mine["ceiling"].append(self._ceiling_once(topic, f"{run}", client=client)[0])
                rate, published = self._ceiling_once(
                    topic, f"{run}-publishing", publish_to=self.topic("ceiling"), client=client
                )
                mine["ceiling_publishing"].append(rate)
                self.results[f"{prefix}a2_ceiling_publishing_{case}_alerts"] = published
                mine["detector"].append(self._detector_once(topic, case, run, client))
        for client, mine in runs.items():
            prefix = key_prefix(client)
            self.results[f"{prefix}a_ceiling_{case}_beats_per_s"] = max(mine["ceiling"])
            self.results[f"{prefix}a2_ceiling_publishing_{case}_beats_per_s"] = max(
                mine["ceiling_publishing"]
            )
            self.results[f"{prefix}b_detector_{case}_beats_per_s"] = float(
                np.median(mine["detector"])
            )
            self.results[f"{prefix}runs_{case}"] = mine

    def _ceiling_once(
        self,
        topic: str,
        run: str,
        publish_to: str | None = None,
        client: str = KAFKA_PYTHON_CLIENT,
    ) -> tuple[float, int]:
        """(a) A bare consumer that reads and decodes every beat, nothing else.

        It joins a fresh consumer group with the detector's fetch settings and
        decodes with the detector's batch decoder: kafka-python fetches
        measurably faster for a subscribed group than for ``assign()`` (13-18k
        against 11-12k JSON beats/s here), so anything else would flatter the
        detector.

        (a') With ``publish_to``, it also does the rest of the detector's Kafka
        work without the model: one alert-sized message per abnormal-labelled
        beat (the detector alerts on about as many), sent with the detector's
        producer settings, flushed, then the offsets committed, per batch.

        Both are built by the detector's factory for ``client``.

        Returns:
            Beats/s, and the messages published (0 without ``publish_to``).
        """
        from beatwatch.clients import (
            ALERT_PUBLISHER,
            ConsumerOptions,
            Outgoing,
            new_consumer,
            new_publisher,
            next_offsets,
        )
        from beatwatch.wire import decode_batch

        # The detector's consumer and publisher settings, through the detector's
        # factory; its processes run with --session-timeout-ms 6000 and --max-batch.
        kafka = dataclasses.replace(self.kafka, client=client)
        options = ConsumerOptions(
            group_id=f"ceiling-{topic}-{run}-{client}",
            session_timeout_ms=6000,
            max_batch=self.sizes.max_batch,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        consumer = new_consumer(kafka, options)
        producer, alert = None, typical_alert()
        if publish_to is not None:
            producer = new_publisher(kafka, ALERT_PUBLISHER)
        consumer.subscribe([topic])
        seen, counted, published, started = 0, 0, 0, None
        deadline = time.monotonic() + 600
        while seen < self.sizes.drain_beats and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=500, max_records=self.sizes.max_batch)
            decoded = decode_batch(records, expected_length=140)
            if producer is not None and publish_to is not None and records:
                alerts = [
                    Outgoing(stream.encode(), alert)
                    for stream, label in zip(decoded.streams, decoded.labels, strict=True)
                    if label == 0
                ]
                delivery = producer.send(publish_to, alerts)
                producer.flush(timeout_s=None)
                delivery.check()
                published += len(delivery)
                consumer.commit(next_offsets(records), timeout_s=30.0)
            seen += len(records)
            if started is not None:
                counted += len(records)
            elif records:
                # Like the detector's figure below, the clock starts after the first batch.
                started = time.perf_counter()
        elapsed = time.perf_counter() - started if started is not None else 0.0
        consumer.close(timeout_s=30.0)
        if producer is not None:
            producer.close(timeout_s=30.0)
        return (counted / elapsed if elapsed > 0 else 0.0), published

    def _detector_once(
        self, topic: str, case: str, run: int, client: str = KAFKA_PYTHON_CLIENT
    ) -> float:
        """(b) A detector process (fresh group) drains the topic: decode, score, alert, commit."""
        alerts = self.topic(f"alerts-{case}")
        name = f"drain-{case}-{run}-{client}"
        with self.detector(topic, alerts, name, client=client) as (_, url):
            # Count only what is scored between two scrapes: beats scored before the
            # first scrape (while /ready was being polled) would inflate the rate.
            first: tuple[float, float] | None = None
            scored = 0.0
            deadline = time.monotonic() + 600
            while scored < self.sizes.drain_beats and time.monotonic() < deadline:
                samples = scrape(f"{url}/metrics")
                scored = promtext.value(samples, "beatwatch_beats_scored_total")
                if first is None and scored > 0:
                    first = (time.perf_counter(), scored)
                time.sleep(next_scrape_s(first, scored, self.sizes.drain_beats))
            if first is None or scored < self.sizes.drain_beats:
                raise ConfigError(f"detector scored {scored:.0f} of {self.sizes.drain_beats} beats")
            self.results[f"{key_prefix(client)}b_detector_{case}_alerts"] = promtext.value(
                samples, "beatwatch_alerts_total"
            )
            if scored == first[1]:  # drained before a second scrape: too small to time
                return 0.0
            return (scored - first[1]) / (time.perf_counter() - first[0])

    def scaling(self) -> None:
        """(h) Two detector processes in one group on a 4-partition topic, 2 partitions each.

        Both start together so they usually join in one round; the clock starts
        once both hold two partitions, and only beats scored after that count.
        """
        topic, n = self.topic("scaling"), 2 * self.sizes.drain_beats
        ensure_topics(self.kafka, {topic: PARTITIONS})
        self.produce(topic, "binary", n, 0, "prefill-scaling")
        alerts = self.topic("alerts-scaling")
        with (
            self.detector(topic, alerts, "scale", group="scaling", wait=False) as (_, first),
            self.detector(topic, alerts, "scale-2", group="scaling", wait=False) as (_, second),
        ):
            urls = [f"{first}/metrics", f"{second}/metrics"]

            def both() -> list[promtext.Samples]:
                return [scrape(url) for url in urls]

            deadline = time.monotonic() + 120
            scraped: list[promtext.Samples] = []
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):  # endpoints come up with the model
                    scraped = both()
                if [promtext.value(x, "beatwatch_assigned_partitions") for x in scraped] == [2, 2]:
                    break
                time.sleep(0.02)
            start_scored = sum(promtext.value(x, "beatwatch_beats_scored_total") for x in scraped)
            started = time.perf_counter()
            scored = start_scored
            while scored < n and time.monotonic() < deadline + 600:
                scored = sum(promtext.value(x, "beatwatch_beats_scored_total") for x in both())
                time.sleep(next_scrape_s((started, start_scored), scored, n))
            elapsed = time.perf_counter() - started
        self.results["h_two_detectors_binary_beats_per_s"] = (scored - start_scored) / elapsed
        self.results["h_two_detectors_beats_counted"] = scored - start_scored

    def model_speed(self) -> None:
        """(c) ``model.predict`` per beat, the course way; (d) the batched compiled call."""
        from beatwatch.artifact import load_artifact
        from beatwatch.data import load_ecg5000

        x = load_ecg5000().x
        artifact = load_artifact(self.model_dir)
        model, scorer = artifact.keras_model(), artifact.scorer()
        scaled = scorer.scaling.apply(x)
        model.predict(scaled[:1], verbose=0)  # build once, as the course's loop would be warm
        n = self.sizes.baseline_beats
        started = time.perf_counter()
        for i in range(n):
            model.predict(scaled[i : i + 1], verbose=0)
        self.results["c_course_predict_per_beat_beats_per_s"] = n / (time.perf_counter() - started)
        batch = self.sizes.max_batch
        beats = x[np.arange(self.sizes.scoring_beats) % len(x)]
        scorer.score(beats[:batch])
        started = time.perf_counter()
        for i in range(0, len(beats), batch):
            scorer.score(beats[i : i + batch])
        self.results["d_scoring_only_beats_per_s"] = len(beats) / (time.perf_counter() - started)

    def latency(self) -> None:
        """(e) Produce->alert latency at each offered load; (f) pacing error at each target.

        Each load gets fresh topics and a fresh detector, so that no load pays
        for the ones before it: with one topic and one detector for all loads,
        2,000/s measured p50 45 / p99 98 ms after a 500/s run, against
        31 / 66 ms alone (on tansu; likely its in-memory storage slowing as a
        topic grows, not established).
        """
        runs = [(KAFKA_PYTHON_CLIENT, load) for load in self.sizes.loads_hz]
        if CONFLUENT_CLIENT in self.clients:
            loads = [load for load in CONFLUENT_LOADS_HZ if load <= max(self.sizes.loads_hz)]
            runs += [(CONFLUENT_CLIENT, load) for load in loads or self.sizes.loads_hz]
        for client, load in runs:
            prefix = key_prefix(client)
            name = f"latency-{load}-{client}"
            beats, alerts = self.topic(name), self.topic(f"{name}-alerts")
            ensure_topics(self.kafka, {beats: PARTITIONS, alerts: PARTITIONS})
            with self.detector(beats, alerts, name, client=client) as (detector, url):
                # Per alert: (detected_ts_ms - ts_ms, read time - detected_ts_ms), ms.
                delays_ms: list[tuple[float, float]] = []
                usage: dict[str, dict[str, float]] = {}
                pids = {"detector": detector.pid, "broker": self.broker_pid, "bench": os.getpid()}
                stop = threading.Event()
                reader = threading.Thread(
                    target=self._collect_delays, args=(alerts, stop, delays_ms), daemon=True
                )
                reader.start()
                time.sleep(1.0)  # the reader is positioned at the end before beats flow
                count = int(load * self.sizes.load_seconds)
                achieved = self.produce(
                    beats,
                    "json",
                    count,
                    load,
                    f"load-{load}-{client}",
                    while_running=functools.partial(self._share_while_flowing, url, pids, usage),
                )
                time.sleep(1.0)  # the last alerts arrive
                stop.set()
                reader.join(timeout=10)
            parts = np.array(delays_ms).reshape(-1, 2)
            self.results[f"{prefix}e_latency_{load}hz"] = {
                "achieved_beats_per_s": achieved,
                "alerts": len(delays_ms),
                **_percentiles_ms("", parts.sum(axis=1)),
                # Where it sits: up to detection (producer linger, broker, fetch
                # wait, the batch ahead) and after it (scoring, publishing, reading).
                **_percentiles_ms("to_detection_", parts[:, 0]),
                **_percentiles_ms("after_detection_", parts[:, 1]),
                # Cores each process used, and how long its threads were ready to
                # run with no core free (ms per second, over threads alive throughout).
                "machine_share": usage,
            }
            if client == KAFKA_PYTHON_CLIENT:
                self.results[f"f_pacing_error_{load}hz_percent"] = 100 * abs(achieved - load) / load

    def _share_while_flowing(
        self,
        url: str,
        pids: dict[str, int | None],
        usage: dict[str, dict[str, float]],
        producer: subprocess.Popen[bytes],
    ) -> None:
        """Fill ``usage`` with each process's share of the machine over half the load.

        The window opens once the detector has scored a beat, so the producer's
        start-up (imports, connecting) stays out of it.
        """
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and producer.poll() is None:
            scraped = scrape(f"{url}/metrics")
            if promtext.value(scraped, "beatwatch_beats_scored_total") > 0:
                break
            time.sleep(0.1)
        usage.update(machine_share({**pids, "producer": producer.pid}, self.sizes.load_seconds / 2))

    def _collect_delays(
        self, topic: str, stop: threading.Event, delays_ms: list[tuple[float, float]]
    ) -> None:
        """For every alert read from ``topic`` until ``stop``, note where its delay went."""
        from beatwatch.tools.alerts import iter_alerts

        for alert in iter_alerts(self.kafka, topic, stop):
            detected_ms = alert.detected_ts_ms
            delays_ms.append((detected_ms - alert.ts_ms, time.time() * 1e3 - detected_ms))

    def memory(self) -> None:
        """(g) Detector resident memory while it scores about ``memory_beats`` beats, per client."""
        for client in self.clients:
            self._memory_once(client)

    def _memory_once(self, client: str) -> None:
        beats = self.topic(f"memory-{client}")
        alerts = self.topic(f"memory-{client}-alerts")
        ensure_topics(self.kafka, {beats: PARTITIONS, alerts: PARTITIONS})
        n = self.sizes.memory_beats
        with self.detector(beats, alerts, f"memory-{client}", client=client) as (process, url):
            command = self.producer_command(beats, "binary", n, 0)
            trace: list[tuple[float, float]] = []
            with child(command, self.logs / f"producer-memory-{client}.log"):
                scored = 0.0
                deadline = time.monotonic() + 900
                while scored < n and time.monotonic() < deadline:
                    scored = promtext.value(
                        scrape(f"{url}/metrics"), "beatwatch_beats_scored_total"
                    )
                    trace.append((scored, _rss_mib(process.pid)))
                    time.sleep(0.5)
        warm = next((rss for done, rss in trace if done >= n * 0.2), trace[-1][1])
        self.results[f"{key_prefix(client)}g_memory"] = {
            "beats_scored": trace[-1][0],
            "rss_after_warmup_mib": warm,
            "rss_final_mib": trace[-1][1],
            "growth_after_warmup_mib": trace[-1][1] - warm,
            "rss_max_mib": max(rss for _, rss in trace),
        }


def scrape(url: str, timeout_s: float = 60.0) -> promtext.Samples:
    """Scrape a process's metrics, retrying for up to ``timeout_s``.

    On a machine shared with other work a busy detector can take more than
    one scrape's 2 s to answer; that is a slow answer, not a failed run.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return promtext.scrape(url, timeout_s=5.0)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def next_scrape_s(first: tuple[float, float] | None, scored: float, target: float) -> float:
    """How long to wait before the next progress scrape of a draining detector.

    A scrape costs the detector about 1 ms of its one core (rendering ~10 kB
    of metrics, serving the request): scraping every 20 ms throughout cost it
    7-16% in alternating runs, and Prometheus scrapes every 15 s. Scrapes are
    20 ms apart only at the start and near the end, where the clock is read;
    in between, the wait is half the expected remaining time, at most 0.5 s.

    Args:
        first: ``(perf_counter, scored)`` when the clock started, or None yet.
        scored: beats scored now.
        target: beats scored when the measurement ends.
    """
    if first is None or scored <= first[1]:
        return FINE_SCRAPE_S
    rate_per_s = (scored - first[1]) / max(time.perf_counter() - first[0], 1e-9)
    remaining_s = max(target - scored, 0.0) / rate_per_s
    return min(COARSE_SCRAPE_S, max(FINE_SCRAPE_S, remaining_s / 2))


def machine_share(pids: dict[str, int | None], window_s: float) -> dict[str, dict[str, float]]:
    """What each process got from the machine over the next ``window_s`` seconds.

    Returns:
        Per name: ``cores`` (CPU seconds per second) and ``runqueue_wait_ms_per_s``
        (time its threads were ready to run while every core was busy, summed
        over the threads alive at both ends of the window). Processes that
        cannot be read (no pid, no ``/proc``) are left out.
    """
    known = {name: pid for name, pid in pids.items() if pid is not None}
    # Each reading carries its own clock: reading a process's threads takes a
    # while on busy cores, and with the window timed around the sleep alone a
    # unit test once read 2.23 of 2 cores over 0.3 s.
    before = {name: (time.perf_counter(), cpu_and_waits(pid)) for name, pid in known.items()}
    time.sleep(window_s)
    share = {}
    for name, (started, first) in before.items():
        elapsed_s, last = time.perf_counter() - started, cpu_and_waits(known[name])
        if first is not None and last is not None:
            share[name] = {
                "cores": (last[0] - first[0]) / elapsed_s,
                "runqueue_wait_ms_per_s": waited_ns(first[1], last[1]) / 1e6 / elapsed_s,
            }
    return share


def _percentiles_ms(prefix: str, values_ms: np.ndarray) -> dict[str, float]:
    """p50, p95 and p99 of ``values_ms`` as ``{prefix}p50_ms`` ...; NaN when empty."""
    return {
        f"{prefix}p{q}_ms": float(np.percentile(values_ms, q)) if values_ms.size else float("nan")
        for q in (50, 95, 99)
    }


def typical_alert() -> bytes:
    """An alert as the detector writes it, five ECG regions explained (about 900 bytes)."""
    from beatwatch.alert import build_alert, encode_alert, explain
    from beatwatch.artifact import ECG5000_REGIONS
    from beatwatch.wire import Beat

    error = np.abs(np.sin(np.linspace(0.0, 9.0, 140)))
    beat = Beat("p-0007", 100_030, 1_763_822_400_153, np.zeros(140, dtype=np.float32), 0)
    alert = build_alert(
        beat,
        score=0.054168340244463514,
        threshold=0.02014910051865237,
        model_version="ecg5000-50efce68014d",
        explanation=explain(error, ECG5000_REGIONS),
        topic="ecg-beats",
        partition=2,
        offset=80_030,
        detected_ts_ms=1_763_822_400_200,
        p_value=0.002136752136752137,
    )
    return encode_alert(alert)


def _rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# The line in docs/performance.md under which ``--doc`` writes the latest run.
LATEST_RUN_MARKER = "<!-- The latest full `beatwatch bench` run; replaced by the next one. -->"


def with_latest_run(doc_text: str, run_text: str) -> str:
    """``doc_text`` with the block under :data:`LATEST_RUN_MARKER` replaced by ``run_text``.

    The block is the marker's paragraph and the fenced table after it: from
    the marker to the line closing the first fence.

    Raises:
        ConfigError: the marker, or a fenced block after it, is missing.
    """
    start = doc_text.find(LATEST_RUN_MARKER)
    opening = doc_text.find("\n```", start)
    closing = doc_text.find("\n```", opening + 4)
    if start < 0 or opening < 0 or closing < 0:
        raise ConfigError(f"no {LATEST_RUN_MARKER!r} line followed by a fenced block")
    end = closing + len("\n```")
    return doc_text[:start] + LATEST_RUN_MARKER + "\n" + run_text.rstrip("\n") + doc_text[end:]


def latest_run_text(
    command: str, where: dict[str, Any], load_before: float, load_after: float, table: str
) -> str:
    """The latest-run block: the command, the machine and its load, the table."""
    return (
        f"`{command}`, as the benchmark printed it. Machine: {where['cores']} cores "
        f"({where['cpu']}), Python {where['python']}; load average {load_before:.1f} "
        f"before the run and {load_after:.1f} after it (the run itself uses both cores).\n\n"
        f"```\n{table.rstrip()}\n```"
    )


CASES = ("json", "binary", "json_normal", "binary_normal")
CASE_TITLES = {
    "json": "JSON, ECG5000 (42% alert)",
    "binary": "binary, ECG5000 (42% alert)",
    "json_normal": "JSON, normal beats only",
    "binary_normal": "binary, normal beats only",
}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The figures that travel between machines."""
    out: dict[str, float] = {}
    for case in CASES:
        a = results.get(f"a_ceiling_{case}_beats_per_s")
        b = results.get(f"b_detector_{case}_beats_per_s")
        if a and b:
            out[f"(b)/(a) {CASE_TITLES[case]}"] = b / a
        a2 = results.get(f"a2_ceiling_publishing_{case}_beats_per_s")
        if a2 and b:
            out[f"(b)/(a') {CASE_TITLES[case]}"] = b / a2
    one, two = (
        results.get("b_detector_binary_beats_per_s"),
        results.get("h_two_detectors_binary_beats_per_s"),
    )
    if one and two:
        out["(h)/(b) two detectors / one, binary"] = two / one
    c = results.get("c_course_predict_per_beat_beats_per_s")
    d = results.get("d_scoring_only_beats_per_s")
    for case in ("json", "binary"):
        b = results.get(f"b_detector_{case}_beats_per_s")
        if b and c:
            out[f"(b)/(c) {CASE_TITLES[case]}"] = b / c
        if b and d:
            out[f"(d)/(b) {CASE_TITLES[case]}"] = d / b
    cf = CONFLUENT_PREFIX
    for case in CONFLUENT_CASES:
        a2 = results.get(f"{cf}a2_ceiling_publishing_{case}_beats_per_s")
        b = results.get(f"{cf}b_detector_{case}_beats_per_s")
        kp = results.get(f"b_detector_{case}_beats_per_s")
        if a2 and b:
            out[f"confluent (b)/(a') {CASE_TITLES[case]}"] = b / a2
        if b and kp:
            out[f"(b) confluent / kafka-python, {CASE_TITLES[case]}"] = b / kp
        if b and c:
            out[f"confluent (b)/(c) {CASE_TITLES[case]}"] = b / c
    return out


def render(results: dict[str, Any]) -> str:
    """The side-by-side table."""

    def spread(case: str, which: str, prefix: str = "") -> str:
        runs = results.get(f"{prefix}runs_{case}", {}).get(which, [])
        return f"  (runs {min(runs):,.0f}-{max(runs):,.0f})" if len(runs) > 1 else ""

    cf = CONFLUENT_PREFIX

    rows = (
        [
            (
                f"(a) ceiling: consume + decode, {CASE_TITLES[case]}",
                results.get(f"a_ceiling_{case}_beats_per_s"),
                spread(case, "ceiling"),
            )
            for case in CASES
        ]
        + [
            (
                f"(a') + publish alerts, commit, {CASE_TITLES[case]}",
                results.get(f"a2_ceiling_publishing_{case}_beats_per_s"),
                spread(case, "ceiling_publishing"),
            )
            for case in CASES
        ]
        + [
            (
                f"(b) detector drain, {CASE_TITLES[case]}",
                results.get(f"b_detector_{case}_beats_per_s"),
                spread(case, "detector"),
            )
            for case in CASES
        ]
        + [
            (
                f"confluent {label}, {CASE_TITLES[case]}",
                results.get(f"{cf}{key}_{case}_beats_per_s"),
                spread(case, which, cf),
            )
            for case in CONFLUENT_CASES
            for label, key, which in (
                ("(a) ceiling", "a_ceiling", "ceiling"),
                ("(a') + publish, commit", "a2_ceiling_publishing", "ceiling_publishing"),
                ("(b) detector drain", "b_detector", "detector"),
            )
        ]
        + [
            (name, value, "")
            for name, value in [
                (
                    "(c) course: model.predict per beat",
                    results.get("c_course_predict_per_beat_beats_per_s"),
                ),
                (
                    "(d) scoring only, batched compiled call",
                    results.get("d_scoring_only_beats_per_s"),
                ),
                ("(f) producer max rate, JSON", results.get("f_producer_max_json_beats_per_s")),
                ("(f) producer max rate, binary", results.get("f_producer_max_binary_beats_per_s")),
                (
                    "(h) two detector processes, binary, ECG5000",
                    results.get("h_two_detectors_binary_beats_per_s"),
                ),
            ]
        ]
    )
    lines = [f"{'measure':<56}{'value':>12}  unit", "-" * 76]
    lines += [
        f"{name:<56}{value:>12,.0f}  beats/s{runs}"
        for name, value, runs in rows
        if value is not None
    ]
    for key, value in results.items():
        client = "confluent " if key.startswith(cf) else ""
        key = key.removeprefix(cf)
        if key.startswith("e_latency_"):
            load = key.removeprefix("e_latency_")
            lines.append(
                f"(e) {client}produce->alert latency at {load:<7} p50 {value['p50_ms']:6.1f}  "
                f"p95 {value['p95_ms']:6.1f}  p99 {value['p99_ms']:6.1f} ms  "
                f"(achieved {value['achieved_beats_per_s']:,.0f}/s, {value['alerts']} alerts)"
            )
            lines.append(
                f"    of which beat->detection       p50 {value['to_detection_p50_ms']:6.1f}  "
                f"p99 {value['to_detection_p99_ms']:6.1f} ms; detection->alert read  "
                f"p50 {value['after_detection_p50_ms']:6.1f}  "
                f"p99 {value['after_detection_p99_ms']:6.1f} ms"
            )
            if value.get("machine_share"):
                share = value["machine_share"]
                cores = ", ".join(f"{name} {v['cores']:.2f}" for name, v in share.items())
                waits = ", ".join(
                    f"{name} {v['runqueue_wait_ms_per_s']:.0f}" for name, v in share.items()
                )
                total = sum(v["cores"] for v in share.values())
                lines.append(
                    f"    cores in use (of {os.cpu_count()}): {cores}, total {total:.2f}; "
                    f"waiting for a free core, ms/s: {waits}"
                )
        if key.startswith("f_pacing_error_"):
            target = key.removeprefix("f_pacing_error_").removesuffix("_percent")
            lines.append(f"(f) pacing error at {target:<26}{value:>14.2f}  %")
    for client, g in (("", results.get("g_memory")), ("confluent ", results.get(f"{cf}g_memory"))):
        if g is None:
            continue
        lines.append(
            f"(g) {client}detector RSS after warm-up / final / max  "
            f"{g['rss_after_warmup_mib']:.0f} / "
            f"{g['rss_final_mib']:.0f} / {g['rss_max_mib']:.0f} MiB over {g['beats_scored']:,.0f} "
            f"beats (growth {g['growth_after_warmup_mib']:+.1f} MiB)"
        )
    lines += ["-" * 76] + [f"{name:<56}{value:>12,.2f}" for name, value in ratios(results).items()]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch bench``."""
    add_option(parser, "--model", default=str(SHIPPED_MODEL_DIR), help="model artifact directory")
    add_option(
        parser,
        "--out",
        default="reports/bench.json",
        help="where to write the JSON results",
        env="BEATWATCH_BENCH_OUT",
    )
    add_flag(parser, "--quick", help="tiny sizes: a smoke run of every measurement")
    add_option(
        parser,
        "--only",
        default="",
        help="comma list of parts to run: a,b,c,d,e,f,g,h (default all)",
        env="BEATWATCH_BENCH_ONLY",
    )
    add_option(
        parser,
        "--clients",
        default="",
        help="comma list of Kafka clients to measure: kafka-python,confluent "
        "(default both when confluent-kafka is installed)",
        env="BEATWATCH_BENCH_CLIENTS",
    )
    add_option(
        parser,
        "--doc",
        default="",
        help="also write the table into this file's latest-run block "
        "(make bench: docs/performance.md)",
        env="BEATWATCH_BENCH_DOC",
    )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write JSON."""
    sizes = BenchSizes.quick() if args.quick else BenchSizes()
    parts = set(args.only.replace(" ", "").split(",")) if args.only else set("abcdefgh")
    if args.clients:
        clients = tuple(c for c in args.clients.replace(" ", "").split(",") if c)
        unknown = set(clients) - {KAFKA_PYTHON_CLIENT, CONFLUENT_CLIENT}
        if unknown or KAFKA_PYTHON_CLIENT not in clients:
            raise ConfigError(
                f"--clients {args.clients!r}: kafka-python, optionally with confluent "
                "(the ratios are against kafka-python)"
            )
        if CONFLUENT_CLIENT in clients and not confluent_available():
            raise ConfigError("--clients confluent needs pip install 'beatwatch[confluent]'")
    else:
        clients = (KAFKA_PYTHON_CLIENT,) + ((CONFLUENT_CLIENT,) if confluent_available() else ())
    doc = Path(args.doc) if args.doc else None
    if doc is not None and args.quick:
        raise ConfigError("--doc records a full run; a --quick run's figures mean nothing")
    if doc is not None:  # refused before the run, not after half an hour of it
        with_latest_run(doc.read_text() if doc.is_file() else "", "")
    load_before = os.getloadavg()[0]
    logs = Path(tempfile.mkdtemp(prefix="beatwatch-bench-"))
    print(
        f"beatwatch bench ({'quick' if args.quick else 'full'}, clients {', '.join(clients)}); "
        f"logs in {logs}",
        flush=True,
    )
    external = os.environ.get("BEATWATCH_BOOTSTRAP_SERVERS")
    with contextlib.ExitStack() as stack:
        broker_pid = None
        if external:
            bootstrap = external
        else:
            broker = stack.enter_context(EmbeddedBroker(log_path=logs / "broker.log"))
            bootstrap = broker.bootstrap_servers
            broker_pid = broker.process.pid if broker.process is not None else None
        bench = Bench(bootstrap, Path(args.model), sizes, logs, broker_pid, clients)
        steps: list[tuple[str, str, Any]] = []
        for case in CASES if parts & set("ab") else ("json", "binary") if "f" in parts else ():
            topic = bench.prefill(case)
            if parts & set("ab"):
                steps.append(
                    (
                        "ab",
                        f"(a)+(b) ceiling and detector, {case}",
                        lambda t=topic, c=case: bench.ceiling_and_detector(t, c),
                    )
                )
        if parts & set("cd"):
            steps.append(("c", "(c)+(d) model speed", bench.model_speed))
        if parts & set("ef"):
            steps.append(("e", "(e)+(f) latency at offered loads", bench.latency))
        if "g" in parts:
            steps.append(("g", "(g) detector memory", bench.memory))
        if "h" in parts:
            steps.append(("h", "(h) two detector processes", bench.scaling))
        for _, title, step in steps:
            print(f"measuring {title} ...", flush=True)
            step()
    results = {
        "machine": machine(),
        "sizes": sizes.__dict__,
        "clients": list(clients),
        **bench.results,
        "ratios": ratios(bench.results),
    }
    table = render(bench.results)
    print(table, flush=True)
    if doc is not None:
        command = "beatwatch bench" + (f" --only {args.only}" if args.only else "")
        run_text = latest_run_text(
            command, results["machine"], load_before, os.getloadavg()[0], table
        )
        doc.write_text(with_latest_run(doc.read_text(), run_text))
        print(f"wrote the table into {doc}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=list))
    print(f"wrote {out}", flush=True)
    return 0
