"""``beatwatch evaluate``: score a saved artifact on data, its own test rows or any other.

Three ways:
- default: verifies that ``--data`` is the very file the model was trained on
  (sha256), scores the recorded test rows through the artifact's own Scorer,
  prints the metrics and whether they equal those stored at training time;
- ``--all-rows``: scores every row of any labelled CSV (``--data``) and prints
  the metrics;
- ``--wfdb DIR [--records ...]``: annotated continuous records through the live
  path (QRS detection, cutting, the sequential per-stream scorer), reported the
  EC57 way (:mod:`trainer.evaluate_records`); ``--qrs-only`` evaluates the QRS
  detection alone, without a model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact import SHIPPED_MODEL_DIR, Artifact, load_artifact
from beatwatch.artifact_config import HEADLINE_METRICS, DataRecord, Evaluation
from beatwatch.data import Dataset, attach_ecg5000_classes, load_csv, load_ecg5000
from beatwatch.errors import ArtifactError, ConfigError, DataError
from beatwatch.settings import add_flag, add_option
from trainer.metrics import detection_metrics
from trainer.outputs import check_file, write_text

HEADLINE = HEADLINE_METRICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``evaluate`` flags."""
    add_option(
        parser,
        "--model",
        default=None,
        help="artifact directory (default: the shipped ECG5000 model; with --wfdb "
        "the shipped MIT-BIH model)",
        env="BEATWATCH_EVALUATE_MODEL",
    )
    add_option(parser, "--data", default=None, help="the CSV it was trained on; ECG5000 when unset")
    add_option(
        parser,
        "--json",
        default=None,
        help="also write the metrics to this JSON file",
        env="BEATWATCH_EVALUATE_JSON",
    )
    add_flag(
        parser,
        "--all-rows",
        help="score every row of --data (any labelled CSV), not the recorded test rows",
    )
    add_option(
        parser,
        "--label-column",
        default=None,
        env="BEATWATCH_EVALUATE_LABEL_COLUMN",
        help="with --all-rows: label column name or index (default: the artifact's)",
    )
    add_option(
        parser,
        "--normal-label",
        default=None,
        type=float,
        env="BEATWATCH_EVALUATE_NORMAL_LABEL",
        help="with --all-rows: label of normal rows (default: the artifact's)",
    )
    records = parser.add_argument_group("annotated continuous records (EC57)")
    add_option(
        records,
        "--wfdb",
        default=None,
        help="directory of WFDB records with reference annotations (.atr)",
    )
    records.add_argument(
        "--records",
        nargs="+",
        default=None,
        metavar="NAME",
        help="records in --wfdb to evaluate (default: all)",
    )
    add_flag(records, "--qrs-only", help="evaluate the QRS detection only (no model needed)")
    add_option(
        records,
        "--live-alerts",
        default=None,
        help="also score these alerts (JSON lines of `beatwatch alerts --json`) of a "
        "detector fed by `beatwatch produce --record`, beat for beat beside "
        "evaluate's",
    )
    add_option(
        records,
        "--qrs-lead",
        default=None,
        help="lead the QRS detector reads, by name (default MLII, else II or ML2, else the first)",
    )
    add_flag(
        records,
        "--beats-from-annotations",
        help="cut beats at the reference R peaks instead of the detected ones",
    )


def evaluate_artifact(model_dir: str | Path, dataset: Dataset) -> dict[str, Any]:
    """Score the artifact's recorded test rows of ``dataset`` and return the metrics.

    Raises:
        DataError: the data's sha256 differs from the one recorded.
        ArtifactError: the artifact is invalid or records no test rows.
    """
    artifact = load_artifact(model_dir)
    data = recorded_data(artifact)
    if dataset.sha256 != data.sha256:
        raise DataError(
            f"{dataset.source}: sha256 {dataset.sha256[:12]}... is not the training data's "
            f"({str(data.sha256)[:12]}...; it was {data.source or 'not recorded'}); "
            "--all-rows scores every row of another labelled CSV"
        )
    rows = np.asarray(data.test_rows() or (), np.int64)
    if len(rows) == 0 or rows.max() >= len(dataset.x):
        raise ArtifactError(f"{model_dir}: no usable test rows recorded")
    scores, _ = artifact.scorer().score(dataset.x[rows])
    return detection_metrics(
        scores,
        artifact.threshold,
        dataset.normal[rows],
        None if dataset.classes is None else dataset.classes[rows],
    )


def recorded_data(artifact: Artifact) -> DataRecord:
    """The artifact's ``data`` section (checked by load; empty when not recorded)."""
    return artifact.config.data or DataRecord()


def _undefined(value: float | None) -> bool:
    # An undefined metric (no abnormal test rows) is stored as null and read as NaN.
    return value is None or math.isnan(value)


def _same(before: float | None, after: float) -> bool:
    if _undefined(before):
        return math.isnan(after)
    return math.isclose(float(before or 0.0), after, abs_tol=1e-9)


def main(args: argparse.Namespace) -> int:
    """Run ``beatwatch evaluate``; exit 1 when the metrics differ from the recorded ones."""
    if args.json:
        check_file(args.json, "--json")
    if args.wfdb is not None:
        from trainer.evaluate_records_cli import main_records

        return main_records(args)
    if (
        args.records
        or args.qrs_only
        or args.beats_from_annotations
        or args.live_alerts
        or args.qrs_lead
    ):
        raise ConfigError(
            "--records, --qrs-only, --qrs-lead, --live-alerts and --beats-from-annotations "
            "need --wfdb DIR"
        )
    if args.all_rows:
        return _main_all_rows(args)
    if args.label_column is not None or args.normal_label is not None:
        raise ConfigError("--label-column and --normal-label go with --all-rows")
    artifact = load_artifact(args.model or SHIPPED_MODEL_DIR)
    recorded = artifact.config.evaluation or Evaluation()
    data = recorded_data(artifact)
    label_column = -1 if data.label_column is None else data.label_column
    normal_label = 1.0 if data.normal_label is None else float(data.normal_label)
    if args.data is None:
        dataset = load_ecg5000()
        if (str(label_column), normal_label) != ("-1", 1.0):
            # ECG5000 with its labels read another way, as at training time.
            dataset = attach_ecg5000_classes(
                load_csv(dataset.source, label_column=label_column, normal_label=normal_label)
            )
    else:
        dataset = attach_ecg5000_classes(
            load_csv(args.data, label_column=label_column, normal_label=normal_label)
        )
    metrics = evaluate_artifact(args.model or SHIPPED_MODEL_DIR, dataset)
    print(f"{artifact.model_version} on {dataset.source}: {metrics['n']} test rows")
    same = True
    for key in HEADLINE:
        before = recorded.metric(key)
        match = _same(before, metrics[key])
        same = same and match
        was = "undefined" if _undefined(before) else f"{before:.4f}"
        shown = f" (recorded {was}{'' if match else ', DIFFERS'})"
        print(f"{key:>16} {metrics[key]:.4f}{shown}")
    print(f"{'confusion':>16} {json.dumps(metrics['confusion'])}")
    for label, row in metrics.get("per_class", {}).items():
        rate = row["detection_rate"]
        print(f"{'class ' + label:>16} {row['name']}: alerted {rate:.3f} of {row['n']}")
    if args.json:
        write_text(Path(args.json), json.dumps(metrics, indent=1) + "\n", "--json")
    print("metrics match the artifact" if same else "metrics DIFFER from the artifact")
    return 0 if same else 1


def _main_all_rows(args: argparse.Namespace) -> int:
    """``--all-rows``: score every row of any labelled CSV and print the metrics."""
    if args.data is None:
        raise ConfigError("--all-rows needs --data CSV")
    artifact = load_artifact(args.model or SHIPPED_MODEL_DIR)
    data = recorded_data(artifact)
    recorded_label = -1 if data.label_column is None else data.label_column
    label_column = recorded_label if args.label_column is None else args.label_column
    if isinstance(label_column, str) and label_column.lstrip("-").isdigit():
        label_column = int(label_column)
    recorded_normal = 1.0 if data.normal_label is None else float(data.normal_label)
    normal_label = recorded_normal if args.normal_label is None else args.normal_label
    dataset = attach_ecg5000_classes(
        load_csv(args.data, label_column=label_column, normal_label=normal_label)
    )
    if dataset.x.shape[1] != artifact.input_length:
        raise DataError(
            f"{args.data}: rows of {dataset.x.shape[1]} values, the model takes "
            f"{artifact.input_length}"
        )
    scores, _ = artifact.scorer().score(dataset.x)
    metrics = detection_metrics(scores, artifact.threshold, dataset.normal, dataset.classes)
    print(f"{artifact.model_version} on {dataset.source}: all {metrics['n']} rows")
    for key in HEADLINE:
        print(f"{key:>16} {metrics[key]:.4f}")
    print(f"{'confusion':>16} {json.dumps(metrics['confusion'])}")
    for label, row in metrics.get("per_class", {}).items():
        rate = row["detection_rate"]
        print(f"{'class ' + label:>16} {row['name']}: alerted {rate:.3f} of {row['n']}")
    if args.json:
        write_text(Path(args.json), json.dumps(metrics, indent=1) + "\n", "--json")
    return 0
