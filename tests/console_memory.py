"""Memory of ``beatwatch console`` after 100k alerts: the server's RSS and an open page's JS heap.

Run: ``BEATWATCH_CACHE_DIR=... python -m tests.console_memory [--alerts N] [--streams S]``.
It starts the embedded broker and the console (as a user does), opens the page in
Debian's headless chromium, publishes N alerts over S streams (more streams than
the console holds, so its bounds are exercised) and prints the console's RSS
before and after and the page's JavaScript heap. Nothing is asserted: the figure
is for the documentation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from kafka import KafkaProducer

from beatwatch.artifact import load_artifact
from beatwatch.clients import ensure_topics
from beatwatch.kafka import KafkaSettings
from beatwatch.tools.broker import EmbeddedBroker
from tests.support.console import browser_page, running_console
from tests.support.pipeline import MODEL_DIR


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident set size and its peak (VmHWM) of ``pid``, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def state(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "api/state", timeout=10) as response:
        parsed: dict[str, object] = json.load(response)
        return parsed


def settle(pid: int, quiet_s: float = 5.0, timeout_s: float = 120.0) -> float:
    """Wait until the RSS has not grown for ``quiet_s`` (the model has loaded); return it."""
    deadline = time.monotonic() + timeout_s
    last, since = rss_mib(pid)[0], time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = rss_mib(pid)[0]
        if now > last + 1:
            last, since = now, time.monotonic()
    return rss_mib(pid)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=2_000)
    args = parser.parse_args()
    artifact = load_artifact(MODEL_DIR)
    # A real alert's shape and size: explanation with ranges and all regions.
    template = {
        "stream": "",
        "seq": 0,
        "ts_ms": 0,
        "detected_ts_ms": 0,
        "score": 0.05,
        "threshold": artifact.threshold,
        "score_ratio": 0.05 / artifact.threshold,
        "model_version": artifact.model_version,
        "topic": "ecg-beats",
        "partition": 0,
        "offset": 0,
        "p_value": 0.002,
        "explanation": {
            "summary": "reconstruction failed mostly in the T region (41% of the error); "
            "worst at samples 60-71, samples 80-84, samples 120-125",
            "worst_ranges": [{"start": 60, "end": 72, "error_share": 0.31}] * 3,
            "regions": [dict(r, error_share=0.2) for r in artifact.regions],
        },
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        kafka = KafkaSettings(broker.bootstrap_servers)
        ensure_topics(kafka, {"ecg-beats": 4, "ecg-alerts": 4})
        with (
            running_console(
                "--bootstrap-servers",
                broker.bootstrap_servers,
                "--model",
                str(MODEL_DIR),
                "--metrics-url",
                "",
                log_path=Path(tmp) / "console.log",
            ) as console,
            browser_page() as page,
        ):
            pid = console.popen.pid
            page.goto(console.url)
            page.wait_for_selector("#status.ok")
            before = settle(pid)
            producer = KafkaProducer(**kafka.client_kwargs(), linger_ms=20, batch_size=1 << 20)
            now_ms = int(time.time() * 1000)
            started = time.monotonic()
            for i in range(args.alerts):
                stream, seq = f"p-{i % args.streams:05d}", i // args.streams
                alert = dict(
                    template,
                    stream=stream,
                    seq=seq,
                    ts_ms=now_ms + i,
                    detected_ts_ms=now_ms + i + 5,
                    offset=i,
                    alert_id=f"{stream}/{seq}/{artifact.model_version}",
                )
                producer.send("ecg-alerts", key=stream.encode(), value=orjson.dumps(alert))
            producer.flush()
            producer.close()
            while state(console.url)["alerts_total"] != args.alerts:
                time.sleep(0.5)
            read_s = time.monotonic() - started
            page.wait_for_function(
                "n => document.getElementById('totals').textContent.startsWith(n + ' alerts')",
                arg=args.alerts,
            )
            time.sleep(2)
            after, peak = rss_mib(pid)
            cdp = page.context.new_cdp_session(page)
            cdp.send("HeapProfiler.collectGarbage")
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            if not metrics:
                cdp.send("Performance.enable")
                metrics = {
                    m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                }
            view = state(console.url)
            message = len(orjson.dumps(dict(template, stream="p-00000", alert_id="x" * 30)))
            print(
                f"console memory after {args.alerts} alerts over {args.streams} streams "
                f"(~{message} bytes each; read and shown in {read_s:.1f} s):\n"
                f"  console RSS: {before:.1f} MiB before, {after:.1f} MiB after "
                f"(+{after - before:.1f} MiB; peak {peak:.1f} MiB)\n"
                f"  held: {view['streams_total']} streams (bound 1000, "
                f"{view['streams_dropped']} dropped), at most 50 alerts each\n"
                f"  open page: JS heap {metrics.get('JSHeapUsedSize', 0) / 2**20:.1f} MiB used "
                f"of {metrics.get('JSHeapTotalSize', 0) / 2**20:.1f} MiB, "
                f"{int(metrics.get('Nodes', 0))} DOM nodes"
            )


if __name__ == "__main__":
    main()
