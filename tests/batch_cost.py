"""Measure where a detector's batch time goes outside Kafka, per beat.

Encodes ``--batch`` ECG5000 beats (a random sample of the whole file: about
42% of them alert with the shipped model, as in ``make bench``) in the wire
``--format``, then times, unprofiled, each part of
:func:`detector.batch.process_batch` over ``--repeats`` calls:

- decoding and checking the records (:func:`detector.batch.decode_checked`);
- the model call (:meth:`beatwatch.scoring.Scorer.score`);
- explanations (:func:`beatwatch.explanation.explain_numbers`);
- the alert messages' text: the detector's alert step (explanations, text,
  messages) less the explanations;
- the whole ``process_batch``, and what of it the parts above do not explain
  (the scored beats' columns for per-stream state, offsets, latencies, and
  the allocator and garbage collector working harder in one larger call).

Kafka's own work (fetching, publishing, committing) and the per-stream state
and incidents are not in these figures; ``beatwatch bench`` measures the whole
detector against its ceilings. Single figures move between runs; the shares
are what to read.

Run: ``python -m tests.batch_cost --format binary``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from beatwatch.clients.client import ConsumedRecord
from beatwatch.data import load_ecg5000
from beatwatch.explanation import explain_numbers
from beatwatch.wire import Beat, encode
from detector.batch import BatchOutcome, _alerts, decode_checked, process_batch
from detector.model_watch import open_model, warm_up

MODEL = Path(__file__).resolve().parents[1] / "models" / "ecg5000"
STREAMS = 64
PARTITIONS = 4
WARM_UP_CALLS = 3


def per_call_s(work: Callable[[], object], repeats: int) -> float:
    """Mean seconds of one call of ``work``, after a few warm-up calls."""
    for _ in range(WARM_UP_CALLS):
        work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("binary", "json"), default="binary")
    parser.add_argument("--batch", type=int, default=1000, help="beats per batch")
    parser.add_argument("--repeats", type=int, default=40, help="timed calls per part")
    parser.add_argument("--model", type=Path, default=MODEL, help="an artifact directory")
    args = parser.parse_args()

    loaded = warm_up(open_model(args.model, 1 << 20).artifact, 1 << 20, None)
    context, scorer = loaded.context, loaded.scorer
    data = load_ecg5000()
    rows = np.random.default_rng(0).permutation(len(data.x))[: args.batch]
    records = []
    for offset, row in enumerate(rows.tolist()):
        beat = Beat(
            stream=f"stream-{offset % STREAMS}",
            seq=offset,
            ts_ms=1_700_000_000_000 + offset,
            samples=data.x[row].astype(np.float32),
            label=int(data.labels[row]),
        )
        key, value, headers = encode(beat, args.format)
        records.append(ConsumedRecord("beats", offset % PARTITIONS, offset, key, value, headers))
    now_ms = 1_700_000_001_000

    decoded = decode_checked(records, context, BatchOutcome(next_offsets={}))
    scores, errors = scorer.score(decoded.samples)
    over = np.flatnonzero(scores > context.threshold)
    alert_rows = over.tolist()

    parts = {
        "decode and check": lambda: decode_checked(records, context, BatchOutcome(next_offsets={})),
        "model call": lambda: scorer.score(decoded.samples),
        "explanations": lambda: explain_numbers(errors[over], context.regions),
        # what the detector does per batch for its alerts: explanations included
        "alerts": lambda: _alerts(records, decoded, over, scores, errors, scorer, context, now_ms),
        "process_batch, all of it": lambda: process_batch(records, scorer, context, now_ms),
    }
    n = len(records)
    print(
        f"{args.format} beats, batches of {n}, {len(alert_rows)} alerts per batch "
        f"({len(alert_rows) / n:.0%}); microseconds per beat, and per alert where it applies"
    )
    measured = {name: per_call_s(work, args.repeats) for name, work in parts.items()}
    alerts_s = measured.pop("alerts")
    whole_s = measured.pop("process_batch, all of it")
    measured["alert text"] = alerts_s - measured["explanations"]
    measured["process_batch, all of it"] = whole_s
    measured["rest of process_batch"] = (
        whole_s - measured["decode and check"] - measured["model call"] - alerts_s
    )
    for name, seconds in measured.items():
        per_alert = (
            f"  ({seconds / len(alert_rows) * 1e6:5.1f} per alert)"
            if name in ("explanations", "alert text") and alert_rows
            else ""
        )
        print(f"  {name:<26} {seconds / n * 1e6:6.2f}{per_alert}")


if __name__ == "__main__":
    main()
