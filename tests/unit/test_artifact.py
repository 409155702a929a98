"""Artifact round trip, the Scorer's math, and every refusal of load_artifact."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from beatwatch.artifact import (
    ECG5000_REGIONS,
    check_artifact_target,
    content_sha256,
    load_artifact,
    save_artifact,
)
from beatwatch.artifact_config import (
    ArtifactConfig,
    Calibration,
    DataRecord,
    Evaluation,
    Preprocessing,
    Region,
    SplitRows,
    Threshold,
)
from beatwatch.data import sha256_bytes
from beatwatch.errors import ArtifactError
from beatwatch.scoring import MinMax, Scorer, per_sample_error_np

# Every test here reads or writes a Keras model (the module's fixtures build one).
pytestmark = pytest.mark.tensorflow
LENGTH = 8


def tiny_model(lambda_layer: bool = False) -> Any:
    import keras

    keras.utils.set_random_seed(1)
    layers = [keras.Input(shape=(LENGTH,)), keras.layers.Dense(3, "relu")]
    if lambda_layer:
        layers.append(keras.layers.Lambda(lambda t: t * 2))
    layers.append(keras.layers.Dense(LENGTH, "sigmoid"))
    return keras.Sequential(layers)


def record(scaling: MinMax, loss: str = "mse") -> ArtifactConfig:
    return ArtifactConfig(
        preprocessing=Preprocessing.of(scaling),
        loss=loss,
        threshold=Threshold(rule="percentile", params={"q": 90.0}, value=0.05),
        calibration=Calibration(errors=(0.01, 0.02, 0.03, 0.04)),
        data=DataRecord(sha256="x", rows=SplitRows(train=(0,), calibration=(1,), test=(2,))),
        regions=(Region("all", 0, LENGTH),),
    )


@pytest.fixture(scope="module")
def beats() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, LENGTH)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, beats: np.ndarray) -> Path:
    target = tmp_path_factory.mktemp("art") / "model"
    scaling = MinMax.fit(beats, "global")
    save_artifact(target, tiny_model(), record(scaling), "tiny")
    return target


def copy_of(saved: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(saved, tmp_path / "copy"))


def edit_json(path: Path, **changes: Any) -> None:
    config = json.loads((path / "artifact.json").read_text())
    config.update(changes)
    (path / "artifact.json").write_text(json.dumps(config))


def test_round_trip_scores_match_reference(saved: Path, beats: np.ndarray) -> None:
    artifact = load_artifact(saved)
    digest = content_sha256(saved / "model.keras", artifact.config)
    assert artifact.model_version == f"tiny-{digest[:12]}"
    assert artifact.config.content_sha256 == digest
    assert artifact.input_length == LENGTH and artifact.threshold == 0.05
    assert artifact.regions == [{"name": "all", "start": 0, "end": LENGTH}]
    scorer = artifact.scorer()
    scores, per_sample = scorer.score(beats)
    assert scores.dtype == np.float64 and per_sample.dtype == np.float32
    assert per_sample.shape == beats.shape
    np.testing.assert_allclose(scores, per_sample.astype(np.float64).mean(axis=1), rtol=1e-12)
    scaled = scorer.scaling.apply(beats)
    expected = per_sample_error_np(scaled, np.asarray(artifact.keras_model()(scaled)), "mse")
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-7)
    # One graph for any batch size: a single row scores as it does inside a batch.
    single, _ = scorer.score(beats[:1])
    assert single[0] == pytest.approx(scores[0], rel=1e-6)
    p = scorer.p_values(np.array([0.0, 0.025, 1.0]))
    assert p is not None and p.tolist() == pytest.approx([1.0, 3 / 5, 1 / 5])


def test_msle_matches_keras_loss(saved: Path, beats: np.ndarray) -> None:
    import keras

    model = load_artifact(saved).keras_model()
    scaling = MinMax.fit(beats, "per-feature")
    scorer = Scorer(model, scaling, "msle", 0.1)
    scores, _ = scorer.score(beats)
    scaled = scaling.apply(beats)
    keras_loss = keras.losses.MeanSquaredLogarithmicError(reduction=None)(scaled, model(scaled))
    np.testing.assert_allclose(scores, np.asarray(keras_loss), rtol=1e-5)
    assert scorer.p_values(scores) is None


def test_save_replaces_existing_artifact(saved: Path, tmp_path: Path, beats: np.ndarray) -> None:
    target = copy_of(saved, tmp_path)
    before = load_artifact(target).model_version
    save_artifact(target, tiny_model(), record(MinMax.fit(beats, "global")), "other")
    assert load_artifact(target).model_version.startswith("other-")
    assert before.startswith("tiny-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temp dirs left


@pytest.mark.tensorflow
def test_version_is_what_the_model_computes_not_when_it_was_saved(
    saved: Path, tmp_path: Path, beats: np.ndarray
) -> None:
    first = load_artifact(saved)
    time.sleep(1.1)  # metadata.json in the .keras zip records the save time to the second
    config = replace(record(MinMax.fit(beats, "global")), created_at="another day")
    again = save_artifact(tmp_path / "again", tiny_model(), config, "tiny")
    assert again.config.model_sha256 != first.config.model_sha256  # the file differs
    assert again.model_version == first.model_version  # what it computes does not
    # A scoring field, or a weight, is part of the version.
    config = replace(config, threshold=replace(config.threshold, value=0.06))
    other_threshold = save_artifact(tmp_path / "threshold", tiny_model(), config, "tiny")
    assert other_threshold.model_version != first.model_version
    model = tiny_model()
    model.set_weights([w + 1e-3 for w in model.get_weights()])
    other_weights = save_artifact(
        tmp_path / "weights", model, record(MinMax.fit(beats, "global")), "tiny"
    )
    assert other_weights.model_version != first.model_version


@pytest.mark.tensorflow
def test_refuses_scoring_field_edited_after_saving(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    config = json.loads((target / "artifact.json").read_text())
    edit_json(target, threshold={**config["threshold"], "value": 0.5})
    with pytest.raises(ArtifactError, match="content checksum mismatch"):
        load_artifact(target)
    edit_json(target, threshold=config["threshold"], model_version="tiny-000000000000")
    with pytest.raises(ArtifactError, match="does not end with its content checksum"):
        load_artifact(target)
    # Descriptive fields are free to change.
    edit_json(target, model_version=config["model_version"], created_at="x", evaluation={})
    assert load_artifact(target).model_version == config["model_version"]


@pytest.mark.tensorflow
def test_loads_an_artifact_from_before_content_checksums(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    config = json.loads((target / "artifact.json").read_text())
    del config["content_sha256"]
    config["model_version"] = "tiny-" + config["model_sha256"][:12]
    (target / "artifact.json").write_text(json.dumps(config))
    assert load_artifact(target).model_version == config["model_version"]


@pytest.mark.subprocess
def test_load_does_not_import_tensorflow(saved: Path) -> None:
    code = (
        "import sys; from beatwatch.artifact import load_artifact; "
        f"load_artifact({str(saved)!r}); print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_refuses_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no artifact directory at"):
        load_artifact(tmp_path / "absent")


@pytest.mark.parametrize("name", ["artifact.json", "model.keras"])
def test_refuses_missing_file(saved: Path, tmp_path: Path, name: str) -> None:
    target = copy_of(saved, tmp_path)
    (target / name).unlink()
    with pytest.raises(ArtifactError, match=f"missing {name}"):
        load_artifact(target)


def test_refuses_corrupt_json(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    (target / "artifact.json").write_text('{"format_version": 1,')
    with pytest.raises(ArtifactError, match="corrupt json"):
        load_artifact(target)


def test_refuses_unknown_format_version(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    edit_json(target, format_version=99)
    with pytest.raises(ArtifactError, match="unknown format version 99"):
        load_artifact(target)


def test_refuses_checksum_mismatch(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    with (target / "model.keras").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(target)


def test_refuses_wrong_input_length(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    edit_json(target, input_length=140)
    with pytest.raises(ArtifactError, match=r"input length 140 in artifact.json but \[8\]"):
        load_artifact(target)


def test_refuses_inconsistent_preprocessing(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    edit_json(
        target,
        preprocessing={"kind": "minmax", "scope": "per-feature", "min": [0, 0], "max": [1, 1]},
    )
    with pytest.raises(ArtifactError, match="preprocessing has 2 values, expected 1 or 8"):
        load_artifact(target)


NAN, INF = float("nan"), float("inf")


def minmax(low: list[float], high: list[float]) -> dict[str, Any]:
    scope = "global" if len(low) == 1 else "per-feature"
    return {"kind": "minmax", "scope": scope, "min": low, "max": high}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"regions": [1]}, "region 1 is not {name: string"),
        ({"regions": None}, "regions must be a list"),
        ({"regions": "abc"}, "regions must be a list"),
        ({"regions": [{"name": "a", "start": "0", "end": 5}]}, "is not {name: string"),
        ({"regions": [{"name": "a", "start": 0, "end": True}]}, "is not {name: string"),
        ({"regions": [{"start": 0, "end": 5}]}, "is not {name: string"),
        ({"regions": [{"name": "a", "start": 5, "end": 5}]}, "is outside 0..8"),
        ({"calibration": [1]}, "calibration must be an object"),
        ({"calibration": {"errors": "abc"}}, "calibration.errors must be a list of finite"),
        ({"calibration": {"errors": [[0.1, 0.2], [0.3]]}}, "calibration.errors must be a list"),
        ({"calibration": {"errors": [0.1, NAN]}}, "calibration.errors must be a list of finite"),
        ({"calibration": {"errors": [0.1, True]}}, "calibration.errors must be a list of finite"),
        ({"threshold": {"value": NAN}}, "threshold.value must be finite, got nan"),
        ({"threshold": {"value": INF}}, "threshold.value must be finite, got inf"),
        ({"threshold": {"value": 10**400}}, "threshold.value must be finite"),
        ({"threshold": {"value": True}}, "threshold.value missing or not a number"),
        ({"threshold": [0.1]}, "threshold.value missing or not a number"),
        ({"preprocessing": minmax([NAN], [1.0])}, "preprocessing.min has non-finite values"),
        ({"preprocessing": minmax([0.0], [INF])}, "preprocessing.max has non-finite values"),
        ({"preprocessing": minmax([2.0], [1.0])}, "preprocessing min > max at feature 0"),
        (
            {"preprocessing": minmax([0.0] * 8, [1.0, 1, 1, -1, 1, 1, 1, 1])},
            "preprocessing min > max at feature 3",
        ),
        (
            {"preprocessing": {"kind": "minmax", "scope": "global", "min": 0, "max": 1}},
            "preprocessing min and max must be lists of numbers",
        ),
    ],
)
def test_refuses_malformed_fields(
    saved: Path, tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    # A tampered artifact.json must stop the detector with one line, never a traceback.
    target = copy_of(saved, tmp_path)
    edit_json(target, **changes)
    with pytest.raises(ArtifactError) as caught:
        load_artifact(target)
    message = str(caught.value)
    assert message.startswith(f"{target / 'artifact.json'}: ") and "\n" not in message
    assert expected in message


def test_accepts_constant_feature_and_no_calibration(saved: Path, tmp_path: Path) -> None:
    # MinMax guards max == min (a constant feature) with MIN_RANGE: not an error.
    target = copy_of(saved, tmp_path)
    edit_json(target, preprocessing=minmax([0.0] * 8, [1.0] * 7 + [0.0]), calibration={})
    config = json.loads((target / "artifact.json").read_text())
    del config["regions"]
    del config["content_sha256"]  # edited by hand: only the old checks apply
    (target / "artifact.json").write_text(json.dumps(config))
    artifact = load_artifact(target)
    assert artifact.regions == [] and artifact.threshold == 0.05


def test_save_writes_strict_json_with_null_for_non_finite(
    tmp_path: Path, beats: np.ndarray
) -> None:
    config = replace(
        record(MinMax.fit(beats, "global")),
        evaluation=Evaluation(auroc=NAN, f1=0.5),
        training={"history": {"loss": [INF, -INF, 1.0]}},
    )

    def refuse(constant: str) -> None:
        raise AssertionError(f"artifact.json holds bare {constant}")

    artifact = save_artifact(tmp_path / "model", tiny_model(), config, "tiny")
    written = json.loads((tmp_path / "model" / "artifact.json").read_text(), parse_constant=refuse)
    assert written["evaluation"] == {"auroc": None, "f1": 0.5}
    assert written["training"] == {"history": {"loss": [None, None, 1.0]}}
    assert artifact.config.to_json()["evaluation"]["auroc"] is None
    assert artifact.config.evaluation is not None
    assert math.isnan(artifact.config.evaluation.auroc or 0.0)
    assert config.training == {"history": {"loss": [INF, -INF, 1.0]}}  # caller's record untouched


def test_check_target_accepts_absent_empty_or_artifact(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    copy_of(saved, tmp_path)
    assert check_artifact_target("new/deeper/model") == tmp_path.resolve() / "new/deeper/model"
    assert check_artifact_target("empty") == tmp_path.resolve() / "empty"
    assert check_artifact_target(tmp_path / "copy") == tmp_path.resolve() / "copy"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("mine", "is a non-empty directory without artifact.json (not an artifact); refusing"),
        ("notes.txt", "exists and is not a directory; refusing to replace it"),
        ("notes.txt/model", "notes.txt is not a directory"),
        (".", "is the working directory or one of its parents; refusing to replace it"),
        ("..", "is the working directory or one of its parents; refusing to replace it"),
        ("/proc/beatwatch-model", "is under /proc; refusing to write an artifact there"),
        ("/dev/beatwatch-model", "is under /dev; refusing to write an artifact there"),
    ],
)
def test_check_target_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("notes")
    with pytest.raises(ArtifactError, match=re.escape(expected)):
        check_artifact_target(target)


def test_check_target_refuses_unwritable_ancestor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod cannot take write access from root (tests may run as root): fake os.access.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path.resolve())
    with pytest.raises(ArtifactError, match=f"{re.escape(str(tmp_path))} is not writable"):
        check_artifact_target(tmp_path / "a" / "model")


def test_save_refuses_a_directory_of_user_files(tmp_path: Path, beats: np.ndarray) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "thesis.tex").write_text("years of work")
    with pytest.raises(ArtifactError, match="refusing to replace it"):
        save_artifact(tmp_path / "model", tiny_model(), record(MinMax.fit(beats, "global")), "x")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("failing", ["move-aside", "move-in", "mkdtemp"])
def test_save_turns_os_errors_into_one_line_and_cleans_up(
    saved: Path, tmp_path: Path, beats: np.ndarray, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = copy_of(saved, tmp_path)
    busy = OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    real_replace, real_mkdtemp = Path.replace, tempfile.mkdtemp

    def replace(self: Path, destination: Any) -> Path:
        # The staging directory moves in; the old artifact moves aside (and back).
        if ("move-in" if self.name.startswith(".copy.tmp-") else "move-aside") == failing:
            raise busy
        return real_replace(self, destination)

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        if failing == "mkdtemp":
            raise busy
        return str(real_mkdtemp(*args, **kwargs))

    monkeypatch.setattr(Path, "replace", replace)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(ArtifactError) as caught:
        save_artifact(target, tiny_model(), record(MinMax.fit(beats, "global")), "other")
    assert str(caught.value) == f"cannot write artifact {target}: Device or resource busy"
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no .tmp- or .old- left
    assert load_artifact(target).model_version.startswith("tiny-")  # the old one, whole


def test_refuses_lambda_layer(tmp_path: Path, beats: np.ndarray) -> None:
    target = tmp_path / "lambda"
    # Write the artifact by hand: save_artifact itself loads back and would refuse.
    target.mkdir()
    tiny_model(lambda_layer=True).save(target / "model.keras")
    config = {
        **record(MinMax.fit(beats, "global")).to_json(),
        "format_version": 1,
        "model_version": "x",
        "input_length": LENGTH,
        "model_sha256": sha256_bytes((target / "model.keras").read_bytes()),
    }
    (target / "artifact.json").write_text(json.dumps(config))
    with zipfile.ZipFile(target / "model.keras") as archive:
        assert b'"Lambda"' in archive.read("config.json")
    with pytest.raises(ArtifactError, match="refusing a model with a Lambda layer"):
        load_artifact(target)


def test_ecg5000_regions_cover_the_beat() -> None:
    ends = [(r["start"], r["end"]) for r in ECG5000_REGIONS]
    assert ends[0][0] == 0 and ends[-1][1] == 140
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ends))
