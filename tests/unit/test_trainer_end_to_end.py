"""A short real training on ECG5000: artifact, report, and evaluate all agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beatwatch import cli
from beatwatch.artifact import load_artifact
from beatwatch.data import load_ecg5000
from tests.support.paths import SHARED_DATA
from trainer.evaluate_cli import evaluate_artifact

ECG_CSV = SHARED_DATA / "ecg5000" / "ecg.csv"
pytestmark = [
    pytest.mark.skipif(not ECG_CSV.is_file(), reason="needs ../shared/data/ecg5000/ecg.csv"),
    pytest.mark.tensorflow,
    pytest.mark.slow,
]


def test_train_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = ECG_CSV
    out, report = tmp_path / "model", tmp_path / "report"
    argv = ["train", "--data", str(csv), "--epochs", "3", "--patience", "0", "--seed", "3"]
    code = cli.main([*argv, "--fpr", "0.05", "--out", str(out), "--report", str(report)])
    assert code == 0
    artifact = load_artifact(out)
    config = artifact.config.to_json()
    rows = config["data"]["rows"]
    train, calibration, test = (set(rows[k]) for k in ("train", "calibration", "test"))
    assert not (train & calibration) and not (train & test) and not (calibration & test)
    assert len(test) == round(2919 * 0.2) + round(2079 * 0.2)
    dataset = load_ecg5000(csv)
    assert dataset.normal[sorted(train | calibration)].all()
    assert config["threshold"]["rule"] == "fpr" and config["threshold"]["params"] == {"fpr": 0.05}
    assert config["command"].startswith("beatwatch train --preset default --data ")
    assert "--fpr 0.05" in config["command"] and config["training"]["epochs_run"] == 3
    assert config["regions"][0] == {"name": "QRS", "start": 0, "end": 15}
    # The saved artifact's Scorer reproduces the training-time evaluation exactly.
    recomputed = evaluate_artifact(out, dataset)
    for key in ("accuracy", "precision", "recall", "f1", "auroc", "auprc"):
        assert recomputed[key] == config["evaluation"][key], key
    assert recomputed["confusion"] == config["evaluation"]["confusion"]
    # The calibration errors recorded are the scores of the calibration rows.
    scores, _ = artifact.scorer().score(dataset.x[rows["calibration"]])
    np.testing.assert_array_equal(np.sort(scores), np.asarray(config["calibration"]["errors"]))
    p = artifact.scorer().p_values(np.array([artifact.threshold + 1e-9]))
    assert p is not None and p[0] <= 0.05
    assert {p.name for p in report.iterdir()} >= {
        "metrics.json",
        "summary.md",
        "loss.png",
        "errors.png",
        "roc_pr.png",
        "examples.png",
    }
    assert json.loads((report / "metrics.json").read_text())["n"] == len(test)
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(out), "--data", str(csv)]) == 0
    assert "metrics match the artifact" in capsys.readouterr().out


def test_training_is_deterministic(tmp_path: Path) -> None:
    from trainer.pipeline import train
    from trainer.presets import PRESETS

    dataset = load_ecg5000(ECG_CSV)
    config = PRESETS["seed"].with_(epochs=2, seed=7)
    first = train(dataset, config, verbose=False)
    second = train(dataset, config, verbose=False)
    np.testing.assert_array_equal(first.test_scores, second.test_scores)
    assert first.threshold == second.threshold


def test_evaluate_refuses_other_data(tmp_path: Path) -> None:
    from beatwatch.errors import DataError

    out = tmp_path / "model"
    csv = ECG_CSV
    args = ["train", "--data", str(csv), "--epochs", "1", "--patience", "0", "--out", str(out)]
    assert cli.main(args) == 0
    other = tmp_path / "other.csv"
    other.write_bytes(csv.read_bytes().replace(b"-0.11252183", b"-0.11252184", 1))
    with pytest.raises(DataError, match="is not the training data's"):
        evaluate_artifact(out, load_ecg5000(other))
