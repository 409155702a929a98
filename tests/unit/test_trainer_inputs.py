"""``train`` and ``evaluate`` on unusual data and settings: refused early, or right.

Real short trainings on a small synthetic CSV (8 values per row), through the
command line as a user runs it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from beatwatch import cli


def synthetic_csv(
    path: Path, *, rows: int = 400, abnormal_every: int = 4, normal: str = "1"
) -> Path:
    """Sine-like normal rows and flattened abnormal ones, label last."""
    rng = np.random.default_rng(0)
    phase = np.linspace(0, np.pi, 8)
    lines = []
    for i in range(rows):
        is_abnormal = abnormal_every and i % abnormal_every == 0
        values = np.sin(phase) * (0.2 if is_abnormal else 1.0) + rng.normal(0, 0.02, 8)
        label = "0" if is_abnormal else normal
        lines.append(",".join([*(f"{v:.5f}" for v in values), label]))
    path.write_text("\n".join(lines) + "\n")
    return path


def train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["train", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold-rule", "fpr", "--percentile", "50"], "--percentile does not apply to"),
        (["--preset", "seed", "--patience", "3"], "--patience needs held-out beats"),
        (["--label-column", "0"], "--label-column and --normal-label apply to --data"),
        (["--compare", "--out", "x"], "--compare writes no artifact"),
        (["--compare", "--preset", "seed"], "compare the seed preset with itself"),
    ],
)
def test_settings_that_would_be_ignored_are_refused_at_once(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = train(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--percentile", "150"], "must be in [0, 100]"), (["--fpr", "1"], "must be in (0, 1)")],
)
def test_out_of_range_rule_parameters_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_output_locations_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    csv = synthetic_csv(tmp_path / "v.csv")
    user_dir = tmp_path / "notes"
    user_dir.mkdir()
    (user_dir / "keep.txt").write_text("mine")
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    base = ["--data", str(csv), "--preset", "seed", "--epochs", "1"]
    with caplog.at_level(logging.INFO):
        for extra, message in (
            (["--out", str(user_dir)], "refus"),
            (["--out", str(a_file)], "refus"),
            (["--out", str(a_file / "model")], "a-file"),
            (["--out", str(tmp_path / "m"), "--report", str(a_file)], "is a file"),
        ):
            code, err = train([*base, *extra], capsys)
            assert code == 2, extra
            assert message in err and "Traceback" not in err, err
    assert not [r for r in caplog.records if "epoch" in r.getMessage()]  # nothing trained
    assert (user_dir / "keep.txt").read_text() == "mine"
    assert a_file.read_text() == "mine"


def test_a_rule_the_data_cannot_support_fails_before_fitting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # 300 normal rows: 240 in the training share, 48 of them held out; fpr 0.02 needs 49.
    csv = synthetic_csv(tmp_path / "v.csv", rows=400)
    with caplog.at_level(logging.INFO):
        code, err = train(["--data", str(csv), "--out", str(tmp_path / "m")], capsys)
    assert code == 2
    assert "--fpr 0.02 needs at least 49 calibration beats, have 48" in err
    assert not [r for r in caplog.records if "epoch" in r.getMessage()]


@pytest.mark.tensorflow
def test_a_diverging_fit_is_refused_not_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = synthetic_csv(tmp_path / "v.csv")
    out = tmp_path / "m"
    argv = ["--data", str(csv), "--preset", "seed", "--loss", "mse", "--epochs", "3"]
    code, err = train([*argv, "--learning-rate", "1e10", "--out", str(out)], capsys)
    assert code == 2
    assert "training diverged" in err and "lower --learning-rate" in err
    assert not out.exists()


@pytest.mark.tensorflow
def test_unusual_labels_are_recorded_exactly_and_evaluate_agrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = synthetic_csv(tmp_path / "v.csv", normal="1234567")
    out = tmp_path / "m"
    argv = ["--data", str(csv), "--normal-label", "1234567", "--preset", "seed", "--epochs", "2"]
    code, _ = train([*argv, "--learning-rate", "0.00123456789", "--out", str(out)], capsys)
    assert code == 0
    command = json.loads((out / "artifact.json").read_text())["command"]
    assert "--normal-label 1234567 " in command and "--learning-rate 0.00123456789 " in command
    assert cli.main(["evaluate", "--model", str(out), "--data", str(csv)]) == 0
    assert "metrics match the artifact" in capsys.readouterr().out


@pytest.mark.tensorflow
def test_without_abnormal_test_rows_metrics_are_undefined_and_evaluate_still_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = synthetic_csv(tmp_path / "v.csv", abnormal_every=0)
    out = tmp_path / "m"
    argv = ["--data", str(csv), "--preset", "seed", "--epochs", "1", "--out", str(out)]
    assert train(argv, capsys)[0] == 0
    text = (out / "artifact.json").read_text()
    evaluation = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in artifact.json"))[
        "evaluation"
    ]
    assert evaluation["auroc"] is None
    assert cli.main(["evaluate", "--model", str(out), "--data", str(csv)]) == 0
    assert "auroc nan (recorded undefined)" in " ".join(capsys.readouterr().out.split())
