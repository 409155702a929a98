"""Measure incident rules on annotated records: events per hour, ventricular runs caught, delay.

Truth comes from the reference annotations: a ventricular run is 3 or more
consecutive beats of AAMI class V. Per-beat verdicts (which beats alert) come
either from a noise model over the annotations (``--simulate``: each V beat
alerts with probability ``--se-v``, other abnormal beats with ``--se-other``,
normal beats with ``--fpr`` outside and 30% inside artifact bursts) or from a
CSV of real verdicts (``--verdicts``: columns ``record,index,alert[,score]``,
``index`` = the beat's position among the record's annotated beats).

Figures, per rule set, pooled over records and seeds:

- incident events (open + update + close) per hour, and their ratio to the
  per-beat alerts on the same beats (target <= 1/20);
- share of ventricular runs inside an incident (an incident whose beats
  overlap the run; target >= 95%);
- delay from the run's first beat to its incident's ``open`` in signal time
  (0 when the incident was already open; targets: median <= 5 s, p95 <= 10 s).

Run: ``python -m beatwatch.tools.incident_eval --data ~/.cache/beatwatch/mitbih``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from beatwatch.incident import IncidentEvent
from beatwatch.incident_rules import BeatVerdict, IncidentRules, close_silent, new_state, step
from beatwatch.recording import aami_class, read_wfdb

MIN_RUN_BEATS = 3
BURST_FPR = 0.3


@dataclass(frozen=True)
class AnnotatedBeats:
    """The reference beats of one record, in order."""

    record: str
    classes: list[str]
    ts_ms: np.ndarray
    rr_prev_ms: np.ndarray
    hours: float


def load_annotated(path: Path) -> AnnotatedBeats:
    """Beats (AAMI class, time, RR before) of a WFDB record from its annotations."""
    rec = read_wfdb(path)
    symbols = rec.ann_symbol or []
    keep = [i for i, s in enumerate(symbols) if aami_class(s) is not None]
    classes = [str(aami_class(symbols[i])) for i in keep]
    ts_ms = (np.asarray(rec.ann_index)[keep] * 1000.0 / rec.fs_hz).round().astype(np.int64)
    rr = np.diff(ts_ms, prepend=ts_ms[0]).astype(np.float64)
    hours = rec.signal.shape[0] / rec.fs_hz / 3600
    return AnnotatedBeats(rec.name, classes, ts_ms, rr, hours)


def ventricular_runs(classes: Sequence[str]) -> list[tuple[int, int]]:
    """``(first, last)`` beat index of each run of >= 3 consecutive V beats."""
    runs = []
    start = None
    for i, c in enumerate([*classes, "end"]):
        if c == "V":
            start = i if start is None else start
        elif start is not None:
            if i - start >= MIN_RUN_BEATS:
                runs.append((start, i - 1))
            start = None
    return runs


def simulate_alerts(
    classes: Sequence[str],
    rng: np.random.Generator,
    *,
    se_v: float,
    se_other: float,
    fpr: float,
    burst_share: float,
    burst_beats: float,
) -> np.ndarray:
    """Per-beat alert flags from the classes and a noise model with artifact bursts."""
    n = len(classes)
    # Two-state Markov chain: bursts last burst_beats on average and cover burst_share.
    leave = 1.0 / burst_beats
    enter = leave * burst_share / max(1e-9, 1 - burst_share)
    in_burst = np.zeros(n, dtype=bool)
    state = False
    u = rng.random(n)
    for i in range(n):
        state = (u[i] >= leave) if state else (u[i] < enter)
        in_burst[i] = state
    p = np.where(in_burst, BURST_FPR, fpr)
    kinds = np.asarray(classes)
    p = np.where(kinds == "V", se_v, np.where(kinds == "N", p, se_other))
    return np.asarray(rng.random(n) < p)


def replay(
    beats: AnnotatedBeats, alerts: np.ndarray, scores: np.ndarray, rules: IncidentRules
) -> list[IncidentEvent]:
    """Run the machine over one record; the stream goes silent at the end."""
    state = new_state()
    events: list[IncidentEvent] = []
    for i in range(len(beats.classes)):
        verdict = BeatVerdict(
            seq=i,
            ts_ms=int(beats.ts_ms[i]),
            score=float(scores[i]),
            ratio=float(scores[i]),
            abnormal=bool(alerts[i]),
            rr_prev_ms=float(beats.rr_prev_ms[i]) if i else None,
        )
        events.extend(step(state, verdict, stream=beats.record, model_version="m", rules=rules))
    last = close_silent(state, beats.record)
    if last is not None:
        events.append(last)
    return events


@dataclass
class Tally:
    """Figures summed over records."""

    hours: float = 0.0
    alerts: int = 0
    events: int = 0
    incidents: int = 0
    runs: int = 0
    covered: int = 0
    delays_s: list[float] = field(default_factory=list)

    def add(
        self, beats: AnnotatedBeats, alerts: np.ndarray | int, events: list[IncidentEvent]
    ) -> None:
        """Score one record's events against its ventricular runs.

        Args:
            beats: the record's reference beats.
            alerts: its per-beat alert flags, or just their number.
            events: its incident events, ``first_seq``/``last_seq`` being
                indices of ``beats`` and ``event_ts_ms`` ms from its start.
        """
        self.hours += beats.hours
        self.alerts += int(np.sum(alerts))
        self.events += len(events)
        opens = {e["incident_id"]: e for e in events if e["kind"] == "open"}
        closes = {e["incident_id"]: e for e in events if e["kind"] == "close"}
        self.incidents += len(opens)
        spans = [
            (o["first_seq"], closes[i]["last_seq"] if i in closes else 1 << 62, o["event_ts_ms"])
            for i, o in opens.items()
        ]
        for first, last in ventricular_runs(beats.classes):
            self.runs += 1
            start_ts = int(beats.ts_ms[first])
            hits = [opened for lo, hi, opened in spans if lo <= last and hi >= first]
            if hits:
                self.covered += 1
                self.delays_s.append(max(0.0, (min(hits) - start_ts) / 1000))

    def figures(self) -> dict[str, float]:
        """The summary line's numbers."""
        delays = np.asarray(self.delays_s or [np.nan])
        return {
            "alerts_per_hour": self.alerts / self.hours,
            "events_per_hour": self.events / self.hours,
            "incidents_per_hour": self.incidents / self.hours,
            "events_per_alert": self.events / max(1, self.alerts),
            "v_runs": self.runs,
            "v_runs_covered": self.covered / max(1, self.runs),
            "delay_median_s": float(np.median(delays)),
            "delay_p95_s": float(np.percentile(delays, 95)),
        }


def read_verdicts(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per record: alert flags and scores, by annotated beat index."""
    rows: dict[str, list[tuple[int, bool, float]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            score = float(row.get("score") or 0.0)
            rows.setdefault(row["record"], []).append(
                (int(row["index"]), row["alert"] in ("1", "true", "True"), score)
            )
    out = {}
    for record, items in rows.items():
        n = max(i for i, _, _ in items) + 1
        alerts, scores = np.zeros(n, dtype=bool), np.zeros(n)
        for i, alert, score in items:
            alerts[i], scores[i] = alert, score
        out[record] = (alerts, scores)
    return out


def _padded(alerts: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    out_alerts, out_scores = np.zeros(n, dtype=bool), np.zeros(n)
    m = min(n, alerts.size)
    out_alerts[:m], out_scores[:m] = alerts[:m], scores[:m]
    return out_alerts, out_scores


def evaluate(
    records: list[AnnotatedBeats],
    rules: IncidentRules,
    verdicts: list[list[tuple[np.ndarray, np.ndarray]]],
) -> dict[str, float]:
    """Pool the figures of ``rules`` over every record and every verdict set (seed)."""
    tally = Tally()
    for per_record in verdicts:
        for beats, (alerts, scores) in zip(records, per_record, strict=True):
            tally.add(beats, alerts, replay(beats, alerts, scores, rules))
    return tally.figures()


def _grid(base: IncidentRules) -> list[IncidentRules]:
    out = []
    for (n, k), run, rate, quiet_s, update_s in itertools.product(
        [(8, 4), (8, 5), (8, 6), (6, 4), (10, 6)],
        [3, 4],
        [0.0, 90.0],
        [15.0, 30.0, 60.0],
        [60.0, 120.0],
    ):
        out.append(
            replace(
                base,
                window_beats=n,
                min_abnormal=k,
                run_beats=run,
                run_rate_bpm=rate,
                quiet_s=quiet_s,
                update_interval_s=update_s,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures of the default rules (or of a grid) as JSON lines."""
    parser = argparse.ArgumentParser(prog="beatwatch.tools.incident_eval", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="directory of WFDB records")
    parser.add_argument("--records", nargs="*", default=None, help="record names (default all)")
    parser.add_argument("--verdicts", type=Path, help="CSV of real per-beat verdicts")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--se-v", type=float, default=0.90)
    parser.add_argument("--se-other", type=float, default=0.5)
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--burst-share", type=float, default=0.01)
    parser.add_argument("--burst-beats", type=float, default=15.0)
    parser.add_argument("--rules", type=json.loads, default={}, help="JSON rule overrides")
    parser.add_argument("--grid", action="store_true", help="try a grid of rules")
    args = parser.parse_args(argv)
    names = args.records or sorted(p.stem for p in args.data.glob("*.hea"))
    records = [load_annotated(args.data / name) for name in names]
    if args.verdicts:
        real = read_verdicts(args.verdicts)
        missing = [r.record for r in records if r.record not in real]
        if missing:
            print(f"--verdicts has no rows for {', '.join(missing)}", file=sys.stderr)
            return 2
        # Beats without a verdict (a window cut off at the record's edge) count as normal.
        verdicts = [[_padded(*real[r.record], len(r.classes)) for r in records]]
    else:
        verdicts = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            per_record = []
            for beats in records:
                alerts = simulate_alerts(
                    beats.classes,
                    rng,
                    se_v=args.se_v,
                    se_other=args.se_other,
                    fpr=args.fpr,
                    burst_share=args.burst_share,
                    burst_beats=args.burst_beats,
                )
                per_record.append((alerts, np.where(alerts, 2.0, 0.5)))
            verdicts.append(per_record)
    base = IncidentRules.from_dict({**IncidentRules().to_dict(), **args.rules})
    for rules in _grid(base) if args.grid else [base]:
        figures = evaluate(records, rules, verdicts)
        print(
            json.dumps({"rules": rules.to_dict(), **{k: round(v, 4) for k, v in figures.items()}})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
