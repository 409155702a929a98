"""``beatwatch evaluate``: recompute a saved artifact's metrics on the test rows it records.

Verifies that ``--data`` is the very file the model was trained on (sha256),
scores the recorded test rows through the artifact's own Scorer, prints the
metrics and whether they equal those stored at training time.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact import load_artifact
from beatwatch.data import Dataset, attach_ecg5000_classes, load_csv, load_ecg5000
from beatwatch.errors import ArtifactError, DataError
from beatwatch.settings import add_option
from trainer.metrics import detection_metrics

HEADLINE = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "false_alarm_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``evaluate`` flags."""
    add_option(parser, "--model", default="models/ecg5000", help="artifact directory")
    add_option(parser, "--data", default=None, help="the CSV it was trained on; ECG5000 when unset")
    add_option(parser, "--json", default=None, help="also write the metrics to this JSON file")


def evaluate_artifact(model_dir: str | Path, dataset: Dataset) -> dict[str, Any]:
    """Score the artifact's recorded test rows of ``dataset`` and return the metrics.

    Raises:
        DataError: the data's sha256 differs from the one recorded.
        ArtifactError: the artifact is invalid or records no test rows.
    """
    artifact = load_artifact(model_dir)
    data = artifact.config.get("data", {})
    if dataset.sha256 != data.get("sha256"):
        raise DataError(
            f"{dataset.source}: sha256 {dataset.sha256[:12]}... is not the training data's "
            f"({str(data.get('sha256'))[:12]}...)"
        )
    rows = np.asarray(data.get("rows", {}).get("test", []), np.int64)
    if len(rows) == 0 or rows.max() >= len(dataset.x):
        raise ArtifactError(f"{model_dir}: no usable test rows recorded")
    scores, _ = artifact.scorer().score(dataset.x[rows])
    return detection_metrics(
        scores,
        artifact.threshold,
        dataset.normal[rows],
        None if dataset.classes is None else dataset.classes[rows],
    )


def main(args: argparse.Namespace) -> int:
    """Run ``beatwatch evaluate``; exit 1 when the metrics differ from the recorded ones."""
    artifact = load_artifact(args.model)
    recorded = artifact.config.get("evaluation", {})
    data = artifact.config.get("data", {})
    if args.data is None:
        dataset = load_ecg5000()
    else:
        dataset = attach_ecg5000_classes(
            load_csv(
                args.data,
                label_column=data.get("label_column", -1),
                normal_label=float(data.get("normal_label", 1.0)),
            )
        )
    metrics = evaluate_artifact(args.model, dataset)
    print(f"{artifact.model_version} on {dataset.source}: {metrics['n']} test rows")
    same = True
    for key in HEADLINE:
        before = recorded.get(key)
        match = before is not None and math.isclose(before, metrics[key], abs_tol=1e-9)
        same = same and match
        shown = "" if before is None else f" (recorded {before:.4f}{'' if match else ', DIFFERS'})"
        print(f"{key:>16} {metrics[key]:.4f}{shown}")
    print(f"{'confusion':>16} {json.dumps(metrics['confusion'])}")
    for label, row in metrics.get("per_class", {}).items():
        rate = row["detection_rate"]
        print(f"{'class ' + label:>16} {row['name']}: alerted {rate:.3f} of {row['n']}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print("metrics match the artifact" if same else "metrics DIFFER from the artifact")
    return 0 if same else 1
