"""``beatwatch train --wfdb DIR``: the patient-adaptive model of continuous annotated records.

Without ``--folds`` it trains on every record given and writes the artifact
(segmentation, patient rules, autoencoder). With ``--folds K`` it writes no
artifact: it measures the recipe on K record-disjoint folds and prints the
fold table (``--report DIR`` also writes ``folds.json`` and ``folds.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from pathlib import Path

from beatwatch import __version__
from beatwatch.artifact import check_artifact_target, save_artifact
from beatwatch.artifact_config import (
    ArtifactConfig,
    Calibration,
    DataRecord,
    Evaluation,
    Features,
    Preprocessing,
    Region,
    Threshold,
)
from beatwatch.data import format_number
from beatwatch.errors import ConfigError
from beatwatch.segmentation import Segmentation
from trainer.evaluate_records import record_names
from trainer.outputs import write_text
from trainer.presets import TrainConfig

log = logging.getLogger(__name__)

# Flags of the generic (CSV) path that mean nothing here.
CSV_ONLY = ("loss", "scaling", "noise_std", "threshold_rule", "k", "percentile", "fpr", "compare")


def _regions(seg: Segmentation) -> tuple[Region, ...]:
    """Named sample ranges of each lead, for the alerts' explanations."""
    n = seg.samples_per_lead
    r = seg.samples_before
    qrs_start = max(0, r + round(-80 * seg.fs_hz / 1000))
    qrs_end = min(n, r + round(100 * seg.fs_hz / 1000))
    out = []
    for j, lead in enumerate(seg.leads):
        name = "lead 2" if lead == "*" else lead
        base = j * n
        for part, start, end in (
            ("P/PR", 0, qrs_start),
            ("QRS", qrs_start, qrs_end),
            ("ST-T", qrs_end, n),
        ):
            if end > start:
                out.append(Region(f"{name} {part}", base + start, base + end))
    return tuple(out)


def canonical_command(
    args: argparse.Namespace, config: TrainConfig, names: list[str], out: Path
) -> str:
    """The command that reproduces this model, every setting spelled out."""
    parts = ["beatwatch", "train", "--preset", config.preset, "--wfdb", str(args.wfdb)]
    parts += ["--records", *names]
    parts += [
        "--encoder",
        ",".join(map(str, config.encoder)),
        "--decoder",
        ",".join(map(str, config.decoder)),
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
        "--out",
        str(out),
    ]
    return shlex.join(parts)


def main_records(args: argparse.Namespace, config: TrainConfig) -> int:
    """Run ``beatwatch train --wfdb``."""
    given = [
        f"--{k.replace('_', '-')}" for k in CSV_ONLY if getattr(args, k, None) not in (None, False)
    ]
    if args.data is not None:
        given.insert(0, "--data")
    if given:
        raise ConfigError(f"--wfdb trains the patient-adaptive model; drop {', '.join(given)}")
    names = record_names(args.wfdb, args.records)
    seg = Segmentation()
    if args.folds:
        return _folds(args, config, names, seg)
    from trainer.records_train import load_record_beats, train_records

    name = args.name or "mitbih"
    out = Path(args.out) if args.out else Path("models") / name
    check_artifact_target(out)
    records = [load_record_beats(args.wfdb, n, seg) for n in names]
    trained = train_records(records, seg, config, verbose=True)
    rules = trained.rules
    record = ArtifactConfig(
        name=name,
        command=canonical_command(args, config, names, out),
        command_line=shlex.join(sys.argv),
        package_version=__version__,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # The global part of the input scaling; each stream's own lead scales
        # come first (patient.scale_beats), see beatwatch.patient.
        preprocessing=Preprocessing(scope="global", min=(0.0,), max=(rules.input_scale,)),
        loss="mse",
        alert_rule="patient-adaptive (beatwatch.patient.StreamScorer): KIND_V when score > "
        "threshold and morphology > v_morph_min (v_morph_premature for a premature beat); "
        "KIND_S otherwise when premature in a regular rhythm",
        threshold=Threshold(rule="patient", params={}, value=rules.v_threshold),
        calibration=Calibration(),
        segmentation=seg,
        features=Features(beat="segmentation", rhythm=("rr_prev_ms",)),
        patient=rules,
        data=DataRecord(
            source="wfdb",
            directory_name=Path(args.wfdb).name,
            records=tuple(names),
            files_sha256={r.name: r.sha256 for r in records},
            beats={r.name: len(r.samples) for r in records},
        ),
        training={**config.to_json(), **trained.fit_info},
        evaluation=Evaluation(),
        regions=_regions(seg),
    )
    artifact = save_artifact(out, trained.model, record, name)
    print(f"wrote {out} ({artifact.model_version})")
    return 0


def _folds(
    args: argparse.Namespace, config: TrainConfig, names: list[str], seg: Segmentation
) -> int:
    from trainer.folds import format_fold_table, run_folds

    ignored = [flag for flag, value in (("--out", args.out), ("--name", args.name)) if value]
    if ignored:
        raise ConfigError(f"--folds writes no artifact: drop {', '.join(ignored)}")
    if args.report:
        from trainer.outputs import check_directory

        check_directory(args.report, "--report")
    report = run_folds(args.wfdb, names, args.folds, seg, config)
    report["command"] = shlex.join(sys.argv)
    text = format_fold_table(report)
    print(text)
    if args.report:
        write_text(Path(args.report) / "folds.md", text + "\n", "--report")
        write_text(
            Path(args.report) / "folds.json",
            json.dumps(report, indent=1, default=float),
            "--report",
        )
    return 0
