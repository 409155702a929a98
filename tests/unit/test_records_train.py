"""``beatwatch train --wfdb``: record-disjoint folds, refusals, and a short real training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beatwatch import cli
from trainer.folds import make_folds

MITBIH = Path(__file__).resolve().parents[3] / "shared" / "data" / "mitbih"
needs_mitbih = pytest.mark.skipif(
    not (MITBIH / "101.hea").is_file(), reason="no ../shared/data/mitbih beside the repository"
)


def test_folds_are_disjoint_cover_every_record_and_do_not_depend_on_order() -> None:
    names = [str(n) for n in (230, 101, 208, 114, 119, 203, 112)]
    folds = make_folds(names, 3)
    flat = [n for fold in folds for n in fold]
    assert sorted(flat) == sorted(names) and len(set(flat)) == len(flat)
    assert make_folds(list(reversed(names)), 3) == folds
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    with pytest.raises(ValueError, match="between 2 and 7"):
        make_folds(names, 8)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--records", "101"], "--records and --folds apply to --wfdb"),
        (["--folds", "3"], "--records and --folds apply to --wfdb"),
        (["--wfdb", "{d}", "--loss", "mae"], "drop --loss"),
        (["--wfdb", "{d}", "--data", "x.csv"], "drop --data"),
        (["--wfdb", "{d}", "--folds", "2", "--out", "{d}/m"], "--folds writes no artifact"),
    ],
)
def test_refused_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "101.hea").write_text("")  # a record directory
    code = cli.main(["train", *[a.format(d=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err


@needs_mitbih
@pytest.mark.tensorflow
@pytest.mark.slow
def test_a_short_training_writes_an_artifact_the_stream_scorer_loads(tmp_path: Path) -> None:
    from beatwatch.artifact import load_artifact
    from beatwatch.patient import StreamScorer, stream_beats
    from beatwatch.segmentation import Segmentation
    from trainer.records_train import load_record_beats

    out = tmp_path / "model"
    argv = ["train", "--wfdb", str(MITBIH), "--records", "101", "119", "--epochs", "1"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    artifact = load_artifact(out)
    config = json.loads((out / "artifact.json").read_text())
    seg = Segmentation.from_dict(config["segmentation"])
    assert config["data"]["records"] == ["101", "119"]
    assert "--records 101 119" in config["command"]
    scorer = StreamScorer.from_artifact(artifact)
    beats = load_record_beats(MITBIH, "106", seg)  # a patient it never saw
    out_scores = scorer.score_beats(
        stream_beats(np.arange(len(beats.samples)), beats.ts_ms, beats.samples, beats.rr_prev_ms),
        None,
    )
    assert np.isfinite(out_scores.scores).all()
    assert out_scores.learning[0] and not out_scores.learning[-1]
    json.dumps(out_scores.state)  # JSON-able
