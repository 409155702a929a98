"""``beatwatch evaluate --wfdb DIR``: EC57 figures of a model (or the QRS detector) on records.

Prints one row per record and the gross figures; ``--json FILE`` writes the
whole report (conventions, gross, per record, CPU cost). Exit 0 when the run
completed; the figures are for the reader to judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact import SHIPPED_MODELS_DIR, Artifact, load_artifact
from beatwatch.errors import ArtifactError, ConfigError
from beatwatch.segmentation import Segmentation
from beatwatch.wire import Beat
from trainer.ec57 import format_table
from trainer.evaluate_records import (
    StreamScoring,
    evaluate_records,
    read_live_alerts,
    record_names,
)
from trainer.outputs import write_text

RECORD_MODEL_DIR = SHIPPED_MODELS_DIR / "mitbih"


def _model_dir(args: argparse.Namespace) -> Path:
    """``--model``, or the shipped model of continuous ECG when it is not given."""
    return RECORD_MODEL_DIR if args.model is None else Path(args.model)


def artifact_segmentation(artifact: Artifact) -> Segmentation:
    """The segmentation the artifact records.

    Raises:
        ArtifactError: it records none (a model of pre-cut beats) or an invalid one.
    """
    seg = artifact.config.segmentation
    if seg is None:
        raise ArtifactError(
            f"{artifact.path}: records no segmentation; records need a model of continuous "
            "ECG (--model models/mitbih)"
        )
    return seg


def stream_scoring(artifact: Artifact) -> StreamScoring:
    """Score one stream's beats in order from a fresh patient-adaptive state.

    Uses the artifact's sequential :class:`beatwatch.patient.StreamScorer`, the
    scorer the detector runs per stream; its alert kinds (ventricular-like,
    premature) are the predicted classes V and S of EC57's VEB and SVEB counts.

    Raises:
        ArtifactError: the artifact records no patient rules.
    """
    from beatwatch.patient import KIND_NAMES, StreamScorer, stream_beats

    if artifact.config.patient is None:
        raise ArtifactError(f"{artifact.path}: records no patient rules (no stream scorer)")
    try:
        scorer = StreamScorer.from_artifact(artifact)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{artifact.path}: invalid patient rules: {exc}") from None

    def score(
        stream: str, beats: list[Beat]
    ) -> tuple[np.ndarray, np.ndarray, list[str | None] | None]:
        if not beats:
            return np.zeros(0), np.zeros(0, dtype=bool), []
        out = scorer.score_beats(
            stream_beats(
                [b.seq for b in beats],
                [b.ts_ms for b in beats],
                np.stack([b.samples for b in beats]),
                [np.nan if b.rr_prev_ms is None else b.rr_prev_ms for b in beats],
            ),
            None,
        )
        classes = [KIND_NAMES[int(k)] or None for k in out.kind]
        return np.asarray(out.scores, np.float64), np.asarray(out.is_alert, bool), classes

    return score


def qrs_table(report: dict[str, Any]) -> str:
    """Per-record and gross QRS detection figures."""
    lines = [f"{'record':>8} {'beats':>6} {'TP':>6} {'FN':>5} {'FP':>5} {'Se %':>7} {'+P %':>7}"]
    rows = [(r["record"], r["qrs"]) for r in report["per_record"]]
    rows.append(("gross", report["gross"]["qrs"]))
    for name, q in rows:
        se = "-" if q["se"] is None else f"{100 * q['se']:.2f}"
        ppv = "-" if q["ppv"] is None else f"{100 * q['ppv']:.2f}"
        beats = q["tp"] + q["fn"]
        lines.append(
            f"{name:>8} {beats:>6} {q['tp']:>6} {q['fn']:>5} {q['fp']:>5} {se:>7} {ppv:>7}"
        )
    lines.append("matched within 150 ms; first 5 min and ventricular flutter not scored")
    return "\n".join(lines)


def main_records(args: argparse.Namespace) -> int:
    """Run the record evaluation and print/write its report."""
    if args.all_rows or args.data is not None:
        raise ConfigError("--wfdb evaluates records; --data and --all-rows go without it")
    names = record_names(args.wfdb, args.records)
    scoring: StreamScoring | None = None
    model = "none (QRS detection only)"
    if args.qrs_only:
        seg = Segmentation()
    else:
        artifact = load_artifact(_model_dir(args))
        seg = artifact_segmentation(artifact)
        scoring = stream_scoring(artifact)
        model = artifact.model_version

    def progress(name: str) -> None:
        print(f"evaluated {name}", file=sys.stderr, flush=True)

    live = None
    if args.live_alerts is not None:
        if args.qrs_only:
            raise ConfigError("--live-alerts compares a model's alerts; not with --qrs-only")
        live = read_live_alerts(args.live_alerts)
    report = evaluate_records(
        args.wfdb,
        names,
        seg,
        scoring,
        from_annotations=args.beats_from_annotations,
        progress=progress,
        live_alerts=live,
        qrs_lead=args.qrs_lead,
    )
    report["model"] = model
    print(f"{model} on {len(names)} records of {args.wfdb} (beats from {report['beats_from']})")
    print(qrs_table(report) if args.qrs_only else format_table(report))
    cost = report["cost"]
    print(
        f"CPU per hour of signal: QRS detector {cost['qrs_cpu_s_per_hour']:.2f} s, "
        f"detect + cut {cost['detect_and_cut_cpu_s_per_hour']:.2f} s, "
        f"scoring {cost['scoring_cpu_s_per_hour']:.2f} s ({cost['signal_hours']:.2f} h of signal)"
    )
    if "live" in report:
        print(live_summary(report["live"]))
    if args.json:
        write_text(Path(args.json), json.dumps(report, indent=1) + "\n", "--json")
    return 0


def live_summary(live: dict[str, Any]) -> str:
    """Live alerts against evaluate's: figures side by side and the beats that differ."""

    def figures(g: dict[str, Any]) -> str:
        def pct(d: dict[str, Any], key: str) -> str:
            return "-" if d[key] is None else f"{100 * d[key]:.2f}"

        return (
            f"VEB Se {pct(g['veb'], 'se')} +P {pct(g['veb'], 'ppv')}, "
            f"SVEB Se {pct(g['sveb'], 'se')} +P {pct(g['sveb'], 'ppv')}, "
            f"false alerts {g['false_alerts']}"
        )

    lines = [f"live alerts: {figures(live['live'])}", f"evaluate:    {figures(live['evaluate'])}"]
    for c in live["per_record"]:
        lines.append(
            f"{c['record']}: {c['live_alerts']} live alerts ({c['live_alerts_not_on_a_beat']} on "
            f"no beat); beats alerted differently {c['beats_alerted_differently']}"
            + (f", kinds differing {c['kinds_differ']}" if c["kinds_compared"] else "")
        )
    lines.append("live alerts EQUAL evaluate's" if live["equal"] else "live alerts DIFFER")
    return "\n".join(lines)
