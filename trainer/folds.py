"""Record-disjoint folds: train on some patients, evaluate EC57-style on the others.

``beatwatch train --preset mitbih --wfdb DIR --folds K`` splits the records
into K folds (sorted names, record ``i`` in fold ``i mod K``), trains a model
on the records outside each fold, and evaluates the fold's records through the
live path (:func:`trainer.evaluate_records.evaluate_record`: beats from the
reference R peaks and, separately, from the causal QRS detector; one fresh
patient-adaptive state per record). Beats of one patient are never on both
sides: a random beat split hides exactly the problem this measures.

The table gives, per metric, the gross figure over all held-out records and
the mean and standard deviation of the per-fold figures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.patient import KIND_NAMES, StreamScorer, stream_beats
from beatwatch.recording import read_wfdb
from beatwatch.segmentation import Segmentation
from beatwatch.wire import Beat
from trainer.ec57 import RecordResult, summarize
from trainer.evaluate_records import StreamScoring, evaluate_record
from trainer.presets import TrainConfig
from trainer.records_train import RecordBeats, keras_reconstruct, load_record_beats, train_records

log = logging.getLogger(__name__)

BEAT_SOURCES = ("annotations", "qrs-detector")
# (label, path into a summarize() report's "gross" section)
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AUROC N-vs-V", ("auroc_n_vs_v",)),
    ("VEB Se", ("veb", "se")),
    ("VEB +P", ("veb", "ppv")),
    ("SVEB Se", ("sveb", "se")),
    ("SVEB +P", ("sveb", "ppv")),
    ("false alerts / N", ("false_alert_share_of_n",)),
    ("worst record FA / N", ("max_record_false_alert_share_of_n",)),
    ("QRS Se", ("qrs", "se")),
    ("QRS +P", ("qrs", "ppv")),
)


def make_folds(names: Sequence[str], n_folds: int) -> list[list[str]]:
    """Split record names into ``n_folds`` disjoint folds, deterministically."""
    ordered = sorted(names)
    if not 2 <= n_folds <= len(ordered):
        raise ValueError(
            f"--folds must be between 2 and {len(ordered)} (the records), got {n_folds}"
        )
    return [ordered[i::n_folds] for i in range(n_folds)]


def scorer_scoring(scorer: StreamScorer) -> StreamScoring:
    """Score one stream's beats from a fresh state (what ``beatwatch evaluate`` does)."""

    def score(stream: str, beats: list[Beat]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
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
        return out.scores, out.is_alert, [KIND_NAMES[int(k)] or None for k in out.kind]

    return score


def run_folds(
    wfdb_dir: str | Path,
    names: Sequence[str],
    n_folds: int,
    seg: Segmentation,
    config: TrainConfig,
    *,
    sources: Sequence[str] = BEAT_SOURCES,
    rules_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate every fold; the JSON-ready fold report.

    Raises:
        DataError: a record is missing, malformed or unannotated.
    """
    folds = make_folds(names, n_folds)
    beats: dict[str, RecordBeats] = {n: load_record_beats(wfdb_dir, n, seg) for n in names}
    results: dict[str, list[list[RecordResult]]] = {s: [] for s in sources}
    fits = []
    for k, test in enumerate(folds):
        train = [beats[n] for n in sorted(names) if n not in test]
        trained = train_records(
            train, seg, config.with_(seed=config.seed + k), rules_overrides=rules_overrides
        )
        fits.append({"fold": k, "test": test, **trained.fit_info})
        scorer = StreamScorer(trained.rules, keras_reconstruct(trained.model), seg.n_values)
        scoring = scorer_scoring(scorer)
        for source in sources:
            fold_results = []
            for name in test:
                rec = read_wfdb(Path(wfdb_dir) / name)
                run = evaluate_record(rec, seg, scoring, from_annotations=source == "annotations")
                fold_results.append(run.result)
            results[source].append(fold_results)
        log.info("fold %d/%d (%s) done", k + 1, n_folds, " ".join(test))
    report: dict[str, Any] = {
        "folds": folds,
        "segmentation": seg.to_dict(),
        "training": config.to_json(),
        "rules_overrides": rules_overrides or {},
        "fits": fits,
    }
    for source in sources:
        per_fold = [summarize(r) for r in results[source]]
        pooled = summarize([r for fold in results[source] for r in fold])
        report[source] = {
            "gross": pooled["gross"],
            "per_record": pooled["per_record"],
            "per_fold": [p["gross"] for p in per_fold],
            "table": fold_table(pooled["gross"], [p["gross"] for p in per_fold]),
        }
    return report


def _get(node: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = node
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def fold_table(gross: dict[str, Any], per_fold: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric: gross value, fold mean, fold std, folds where it is defined."""
    rows = []
    for label, path in METRICS:
        values = [v for v in (_get(f, path) for f in per_fold) if v is not None and np.isfinite(v)]
        rows.append(
            {
                "metric": label,
                "gross": _get(gross, path),
                "fold_mean": float(np.mean(values)) if values else None,
                "fold_std": float(np.std(values)) if values else None,
                "fold_min": float(np.min(values)) if values else None,
                "folds_defined": len(values),
            }
        )
    return rows


def format_fold_table(report: dict[str, Any]) -> str:
    """The fold table(s) as readable text."""
    lines = [
        f"{len(report['folds'])} record-disjoint folds: "
        + " | ".join(" ".join(f) for f in report["folds"])
    ]
    for source in BEAT_SOURCES:
        if source not in report:
            continue
        lines.append(
            f"beats from {source}: gross over all held-out records; "
            "per-fold mean ± std (min, folds defined)"
        )
        for row in report[source]["table"]:
            gross = "-" if row["gross"] is None else f"{row['gross']:.4f}"
            spread = (
                "-"
                if row["fold_mean"] is None
                else f"{row['fold_mean']:.4f} ± {row['fold_std']:.4f} "
                f"(min {row['fold_min']:.4f}, {row['folds_defined']})"
            )
            lines.append(f"  {row['metric']:<22} {gross:>8}   {spread}")
    return "\n".join(lines)
