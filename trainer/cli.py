"""``beatwatch train``: train, calibrate and evaluate a model; write the artifact and report.

``beatwatch train --compare --seeds 5`` instead trains the ``seed`` preset and
the model the other flags describe (the ``default`` preset unless told
otherwise) on seeds 0..4 and prints the comparison table; it writes no artifact.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from beatwatch import __version__
from beatwatch.artifact import check_artifact_target, save_artifact
from beatwatch.artifact_config import (
    ECG5000_REGION_SPANS,
    ArtifactConfig,
    DataRecord,
    Evaluation,
    Preprocessing,
    Threshold,
)
from beatwatch.data import (
    ECG5000_SHA256,
    Dataset,
    attach_ecg5000_classes,
    format_number,
    load_csv,
    load_ecg5000,
)
from beatwatch.errors import ConfigError
from beatwatch.scoring import LOSSES, SCOPES
from beatwatch.settings import (
    add_flag,
    add_option,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from trainer.calibrate import RULE_PARAMETER
from trainer.outputs import check_directory, write_text
from trainer.presets import PRESETS, TrainConfig

log = logging.getLogger(__name__)


def widths(text: str) -> tuple[int, ...]:
    """Parse comma-separated layer widths, e.g. ``128,64,32`` (argparse type)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 128,64,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be integers >= 1, got {text!r}")
    return values


def percentile(text: str) -> float:
    """Parse a percentile in [0, 100] (argparse type)."""
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100], got {text}")
    return value


def fraction(text: str) -> float:
    """Parse a number strictly between 0 and 1 (argparse type)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``train`` flags (each also settable as a BEATWATCH_* variable)."""
    data = parser.add_argument_group("data")
    add_option(data, "--data", default=None, help="CSV to train on; ECG5000 ecg.csv when unset")
    add_option(data, "--label-column", default="-1", help="label column: index or header name")
    add_option(data, "--normal-label", default=1.0, type=float, help="label value of normal rows")
    add_option(data, "--wfdb", default=None, help="directory of annotated WFDB records to train on")
    data.add_argument(
        "--records", nargs="+", default=None, metavar="NAME", help="records of --wfdb (default all)"
    )
    add_option(
        data,
        "--folds",
        default=0,
        type=non_negative_int,
        help="with --wfdb: measure on this many record-disjoint folds, write no artifact",
    )
    model = parser.add_argument_group("model")
    add_option(model, "--preset", default="default", choices=sorted(PRESETS), help="base recipe")
    add_option(model, "--encoder", default=None, type=widths, help="encoder widths, e.g. 128,64,32")
    add_option(model, "--decoder", default=None, type=widths, help="decoder hidden widths")
    add_option(model, "--code-size", default=None, type=positive_int, help="bottleneck width")
    add_option(model, "--loss", default=None, choices=LOSSES, help="loss and anomaly score")
    add_option(
        model, "--noise-std", default=None, type=non_negative_float, help="denoising input noise"
    )
    add_option(model, "--scaling", default=None, choices=SCOPES, help="MinMax scope")
    fitting = parser.add_argument_group("fitting")
    add_option(fitting, "--epochs", default=None, type=positive_int, help="maximum epochs")
    add_option(fitting, "--batch-size", default=None, type=positive_int, help="minibatch size")
    add_option(fitting, "--learning-rate", default=None, type=positive_float, help="Adam rate")
    add_option(
        fitting, "--patience", default=None, type=non_negative_int, help="early stopping; 0 off"
    )
    add_option(
        fitting, "--seed", default=0, type=non_negative_int, help="seed of split and weights"
    )
    threshold = parser.add_argument_group("threshold")
    add_option(
        threshold,
        "--threshold-rule",
        default=None,
        choices=sorted(RULE_PARAMETER),
        help="calibration rule (implied by --k/--percentile/--fpr)",
    )
    add_option(threshold, "--k", default=None, type=non_negative_float, help="k of mean+k*std")
    add_option(threshold, "--percentile", default=None, type=percentile, help="q of percentile")
    add_option(threshold, "--fpr", default=None, type=fraction, help="target false alarms")
    output = parser.add_argument_group("output")
    add_option(output, "--out", default=None, help="artifact directory; models/<name> when unset")
    add_option(output, "--name", default=None, help="model name, prefix of model_version")
    add_option(output, "--report", default=None, help="write metrics, summary and plots here")
    add_flag(output, "--compare", help="print the seed-vs-default table instead of one model")
    add_option(output, "--seeds", default=5, type=positive_int, help="seeds for --compare")


def config_from_args(args: argparse.Namespace, *, records: bool = False) -> TrainConfig:
    """The preset with the flags that were given applied on top.

    ``records``: for ``--wfdb``, whose preset is ``mitbih`` unless another is named.
    """
    preset = "mitbih" if records and args.preset == "default" else args.preset
    config = PRESETS[preset]
    changes: dict[str, Any] = {"seed": args.seed}
    keys = ("encoder", "decoder", "loss", "scaling", "epochs", "learning_rate", "patience")
    for key in (*keys, "noise_std"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.code_size is not None:
        encoder = changes.get("encoder", config.encoder)
        changes["encoder"] = (*encoder[:-1], args.code_size)
    given = {
        rule: value
        for rule, value in (
            ("mean+k*std", args.k),
            ("percentile", args.percentile),
            ("fpr", args.fpr),
        )
        if value is not None
    }
    rule = args.threshold_rule
    if len(given) > 1:
        raise ConfigError("give only one of --k, --percentile, --fpr")
    if rule is not None and given and rule not in given:
        raise ConfigError(
            f"--{_flag_of(next(iter(given)))} does not apply to --threshold-rule {rule} "
            f"(which takes --{_flag_of(rule)})"
        )
    if rule is None and given:
        rule = next(iter(given))
    if rule is not None:
        if rule in given:
            params = {RULE_PARAMETER[rule]: float(given[rule])}
        elif rule == config.threshold_rule:
            params = dict(config.threshold_params)
        else:
            raise ConfigError(f"--threshold-rule {rule} needs --{_flag_of(rule)}")
        changes["threshold_rule"], changes["threshold_params"] = rule, params
    if args.patience and config.calibrate_on == "train":
        raise ConfigError(
            f"--patience needs held-out beats to watch; preset {config.preset} has none "
            "(it calibrates on its training beats)"
        )
    if args.data is None and (args.label_column != "-1" or args.normal_label != 1.0):
        raise ConfigError("--label-column and --normal-label apply to --data")
    return config.with_(**changes)


def _flag_of(rule: str) -> str:
    return {"mean+k*std": "k", "percentile": "percentile", "fpr": "fpr"}[rule]


def load_dataset(args: argparse.Namespace) -> Dataset:
    """Load ``--data`` (or ECG5000 from its sources), with ECG5000 classes when known."""
    if args.data is None:
        return load_ecg5000()
    dataset = load_csv(args.data, label_column=args.label_column, normal_label=args.normal_label)
    return attach_ecg5000_classes(dataset)


def canonical_command(args: argparse.Namespace, config: TrainConfig, out: Path) -> str:
    """The full command that reproduces this model, every setting spelled out.

    Built from the effective settings rather than ``sys.argv`` so that values
    that came from BEATWATCH_* variables or preset defaults are recorded too.
    """
    parts = ["beatwatch", "train", "--preset", config.preset]
    if args.data is not None:
        parts += ["--data", str(args.data)]
        parts += [
            "--label-column",
            str(args.label_column),
            "--normal-label",
            format_number(args.normal_label),
        ]
    parts += [
        "--encoder",
        ",".join(map(str, config.encoder)),
        "--decoder",
        ",".join(map(str, config.decoder)),
        "--loss",
        config.loss,
        "--noise-std",
        format_number(config.noise_std),
        "--scaling",
        config.scaling,
        "--epochs",
        str(config.epochs),
        "--batch-size",
        str(config.batch_size),
        "--learning-rate",
        format_number(config.learning_rate),
        "--patience",
        str(config.patience),
        "--seed",
        str(config.seed),
        "--threshold-rule",
        config.threshold_rule,
    ]
    parts += [
        f"--{_flag_of(config.threshold_rule)}",
        format_number(next(iter(config.threshold_params.values()))),
    ]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def main(args: argparse.Namespace) -> int:
    """Run ``beatwatch train``."""
    if args.wfdb is not None:
        from trainer.records_cli import main_records

        return main_records(args, config_from_args(args, records=True))
    if args.records or args.folds:
        raise ConfigError("--records and --folds apply to --wfdb")
    config = config_from_args(args)
    if args.report:
        check_directory(args.report, "--report")
    if args.compare:
        return _compare(args, config)
    dataset = load_dataset(args)
    from trainer.pipeline import calibration_record, train

    name = args.name or ("ecg5000" if dataset.sha256 == ECG5000_SHA256 else Path(args.data).stem)
    out = Path(args.out) if args.out else Path("models") / name
    check_artifact_target(out)  # before training, not after
    outcome = train(dataset, config)
    record = ArtifactConfig(
        name=name,
        command=canonical_command(args, config, out),
        command_line=shlex.join(sys.argv),
        package_version=__version__,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        preprocessing=Preprocessing.of(outcome.scaling),
        loss=config.loss,
        alert_rule="score > threshold",
        threshold=Threshold(
            rule=config.threshold_rule,
            params=config.threshold_params,
            value=outcome.threshold,
        ),
        calibration=calibration_record(outcome),
        data=DataRecord(
            source=dataset.source,
            sha256=dataset.sha256,
            label_column=args.label_column if args.data is not None else -1,
            normal_label=args.normal_label if args.data is not None else 1.0,
            rows=outcome.split.rows(),
        ),
        training={
            **config.to_json(),
            "epochs_run": outcome.fitted.epochs_run,
            "best_epoch": outcome.fitted.best_epoch,
            "train_seconds": round(outcome.train_seconds, 2),
            "history": outcome.fitted.history,
        },
        evaluation=Evaluation.from_json(outcome.metrics, "the trainer's metrics"),
        regions=ECG5000_REGION_SPANS if dataset.sha256 == ECG5000_SHA256 else (),
    )
    artifact = save_artifact(out, outcome.fitted.model, record, name)
    print(f"wrote {out} ({artifact.model_version})")
    if args.report:
        from trainer.report import write_report

        try:
            write_report(Path(args.report), outcome, dataset, artifact.config)
        except OSError as exc:
            raise ConfigError(
                f"--report {args.report}: cannot write ({exc.strerror or exc})"
            ) from None
        print(f"report in {args.report}")
    _print_metrics(outcome.metrics)
    return 0


def _print_metrics(metrics: dict[str, Any]) -> None:
    keys = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "false_alarm_rate")
    print("  ".join(f"{key} {metrics[key]:.4f}" for key in keys))
    print("confusion " + json.dumps(metrics["confusion"]))
    for label, row in metrics.get("per_class", {}).items():
        print(f"class {label} {row['name']}: {row['n']} beats, alerted {row['detection_rate']:.3f}")


def _compare(args: argparse.Namespace, config: TrainConfig) -> int:
    """Train the seed preset and ``config`` (the preset and flags given) on each seed."""
    from trainer.compare import format_table, run_comparison, summary

    ignored = [flag for flag, value in (("--out", args.out), ("--name", args.name)) if value]
    if args.seed:
        ignored.append("--seed")
    if ignored:
        raise ConfigError(
            f"--compare writes no artifact and trains seeds 0..N-1 (--seeds N): "
            f"drop {', '.join(ignored)}"
        )
    seed_preset = PRESETS["seed"]
    if config == seed_preset:
        raise ConfigError("--compare --preset seed would compare the seed preset with itself")
    label = config.preset if config == PRESETS[config.preset] else f"{config.preset} + flags"
    dataset = load_dataset(args)
    seeds = list(range(args.seeds))
    results = run_comparison(dataset, {"seed preset": seed_preset, label: config}, seeds)
    table = format_table(results, seeds)
    print(table)
    if args.report:
        report = Path(args.report)
        write_text(report / "compare.md", table + "\n", "--report")
        write_text(
            report / "compare.json",
            json.dumps({"seeds": seeds, "mean": summary(results), "runs": results}, indent=1),
            "--report",
        )
    return 0
