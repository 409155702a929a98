"""The typed artifact.json: exact round trip of the shipped artifacts, and its refusals."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from beatwatch.artifact import SHIPPED_MODELS_DIR, content_sha256, load_artifact
from beatwatch.artifact_config import (
    ArtifactConfig,
    Calibration,
    DataRecord,
    Evaluation,
    Features,
    Preprocessing,
    Region,
    SplitRows,
    Threshold,
)
from beatwatch.errors import ArtifactError
from beatwatch.segmentation import Segmentation

SHIPPED = sorted(p for p in SHIPPED_MODELS_DIR.iterdir() if (p / "artifact.json").is_file())
WHERE = "m/artifact.json"


def raw_of(directory: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((directory / "artifact.json").read_text())
    return parsed


@pytest.mark.parametrize("directory", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_artifacts_round_trip_exactly_and_keep_their_version(directory: Path) -> None:
    raw = raw_of(directory)
    config = ArtifactConfig.from_json(raw, WHERE)
    written = config.to_json()
    assert written == raw
    assert list(written) == list(raw)  # the same key order on disk
    # The version digest of the typed form is the recorded one: saving it again
    # gives the shipped model_version.
    digest = content_sha256(directory / "model.keras", config)
    assert digest == raw["content_sha256"]
    assert load_artifact(directory).model_version == raw["model_version"]
    assert raw["model_version"].endswith("-" + digest[:12])


def full_config() -> ArtifactConfig:
    return ArtifactConfig(
        model_version="m-000000000000",
        input_length=4,
        name="m",
        preprocessing=Preprocessing(scope="per-feature", min=(0.0,) * 4, max=(1.0,) * 4),
        loss="mae",
        alert_rule="score > threshold",
        threshold=Threshold(value=0.5, rule="fpr", params={"fpr": 0.02}),
        calibration=Calibration(errors=(0.1, 0.2), source="held-out", n=2, mean=0.15),
        segmentation=Segmentation(),
        features=Features(beat="segmentation", rhythm=("rr_prev_ms",)),
        data=DataRecord(
            source="x.csv",
            sha256="ab",
            label_column="label",
            normal_label=1.0,
            rows=SplitRows(train=(0, 1), calibration=(2,), test=(3, 4)),
        ),
        training={"epochs": 3, "history": {"loss": [0.5, 0.25]}},
        evaluation=Evaluation(n=2, auroc=math.nan, f1=0.5),
        regions=(Region("a", 0, 2), Region("b", 2, 4)),
        model_sha256="cd",
    )


def test_typed_config_round_trips_and_undefined_metrics_are_null() -> None:
    config = full_config()
    written = config.to_json()
    assert written["evaluation"] == {"n": 2, "f1": 0.5, "auroc": None}
    again = ArtifactConfig.from_json(json.loads(json.dumps(written)), WHERE)
    assert again.to_json() == written
    assert again.evaluation is not None and math.isnan(again.evaluation.auroc or 0.0)
    assert again.data is not None and again.data.test_rows() == (3, 4)
    assert again.calibration_errors() is not None
    assert again.region_dicts() == [
        {"name": "a", "start": 0, "end": 2},
        {"name": "b", "start": 2, "end": 4},
    ]


def test_absent_sections_stay_absent() -> None:
    config = ArtifactConfig(
        preprocessing=Preprocessing(scope="global", min=(0.0,), max=(1.0,)),
        loss="mse",
        threshold=Threshold(value=1.0),
        model_version="m-0",
        input_length=3,
        model_sha256="x",
    )
    assert list(config.to_json()) == [
        "format_version",
        "model_version",
        "input_length",
        "preprocessing",
        "loss",
        "threshold",
        "model_sha256",
    ]
    assert config.calibration_errors() is None and config.region_dicts() == []


def edited(path: list[str], value: Any) -> dict[str, Any]:
    """The full config's JSON with the field at ``path`` set to ``value``."""
    out = copy.deepcopy(full_config().to_json())
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["surprise"], 1, "artifact.json has unknown keys surprise"),
        (["model_version"], 3, "model_version must be a string"),
        (["name"], 3, "name must be a string"),
        (["threshold", "params"], {"fpr": "high"}, "threshold.params must be an object of"),
        (["threshold", "rule"], 1, "threshold.rule must be a string"),
        (["calibration", "n"], -1, "calibration.n must be a count"),
        (["calibration", "mean"], "x", "calibration.mean must be a finite number"),
        (["calibration", "extra"], 1, "calibration has unknown keys extra"),
        (["preprocessing", "kind"], "zscore", "unknown kind 'zscore'"),
        (["preprocessing", "scope"], "sideways", "unknown scaling scope 'sideways'"),
        (["preprocessing", "min"], [True] * 4, "min and max must be lists of numbers"),
        (["data"], [], "data must be an object"),
        (["data", "rows", "test"], [1, -2], "data.rows.test must be a list of row numbers"),
        (["data", "rows", "test"], "1-3", "data.rows.test must be a list of row numbers"),
        (["data", "rows", "holdout"], [1], "data.rows has unknown keys holdout"),
        (["data", "label_column"], True, "data.label_column must be an index or a name"),
        (["data", "normal_label"], "1", "data.normal_label must be a number"),
        (["evaluation"], [], "evaluation must be an object"),
        (["evaluation", "f1"], "0.5", "evaluation.f1 must be a number or null"),
        (["evaluation", "confusion"], {"tp": 1}, "evaluation.confusion must be"),
        (["evaluation", "curve"], [1], "evaluation has unknown keys curve"),
        (["training"], 3, "training must be an object"),
        (["features"], {"beat": 1, "rhythm": []}, "features must be {beat: string"),
        (["segmentation", "fs_hz"], -1.0, "invalid segmentation: segmentation fs_hz must be"),
        (["segmentation", "colour"], 1, "invalid segmentation: segmentation has unknown keys"),
        (["patient"], {"region_start": 0}, "invalid patient rules"),
    ],
)
def test_refusals_name_the_file_and_the_field(path: list[str], value: Any, expected: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        ArtifactConfig.from_json(edited(path, value), WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ") and "\n" not in message
    assert expected in message


def test_valid_patient_rules_are_typed() -> None:
    rules = ArtifactConfig.from_json(raw_of(SHIPPED_MODELS_DIR / "mitbih"), WHERE).patient
    assert rules is not None and rules.v_threshold == 4.0
