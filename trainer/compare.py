"""The multi-seed comparison: ``seed`` preset vs ``default``, with the published anchors."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from beatwatch.data import Dataset
from trainer.pipeline import train
from trainer.presets import TrainConfig

log = logging.getLogger(__name__)

COLUMNS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "train_seconds")
HEADERS = ("accuracy", "precision", "recall", "F1", "AUROC", "AUPRC", "train s")
# Figures measured elsewhere, printed beside ours for orientation (the team's
# design notes, ../shared/DESIGN.md, beside the repository).
ANCHORS = (
    ("course recipe, measured (5 seeds)", {"accuracy": 0.949, "auroc": 0.971, "auprc": 0.912}),
    ("TensorFlow tutorial (reported)", {"accuracy": 0.94}),
)


def run_comparison(
    dataset: Dataset, configs: dict[str, TrainConfig], seeds: list[int]
) -> dict[str, list[dict[str, float]]]:
    """Train every config once per seed; return each run's headline figures."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for seed in seeds:
        for name, config in configs.items():
            outcome = train(dataset, config.with_(seed=seed), verbose=False)
            row = {key: float(outcome.metrics[key]) for key in COLUMNS if key in outcome.metrics}
            row["train_seconds"] = outcome.train_seconds
            row["epochs"] = float(outcome.fitted.epochs_run)
            results[name].append(row)
            log.info(
                "seed %d %s: accuracy %.4f AUROC %.4f (%.1f s)",
                seed,
                name,
                row["accuracy"],
                row["auroc"],
                row["train_seconds"],
            )
    return results


def format_table(results: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    """Markdown table: mean ± std over seeds per config, then the anchors."""
    lines = [
        f"| model ({len(seeds)} seeds: {', '.join(map(str, seeds))}) | "
        + " | ".join(HEADERS)
        + " |",
        "| --- |" + " --- |" * len(HEADERS),
    ]
    for name, runs in results.items():
        cells = []
        for key in COLUMNS:
            values = np.array([run[key] for run in runs])
            digits = 1 if key == "train_seconds" else 4
            cells.append(f"{values.mean():.{digits}f} ± {values.std():.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, figures in ANCHORS:
        cells = [f"{figures[key]:.3f}" if key in figures else "" for key in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per-config means, for JSON output."""
    return {
        name: {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        for name, runs in results.items()
    }
