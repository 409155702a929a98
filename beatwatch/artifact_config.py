"""The typed definition of ``artifact.json``: :class:`ArtifactConfig`, one dataclass a section.

:meth:`ArtifactConfig.from_json` checks a parsed ``artifact.json`` (types,
ranges, finiteness, sizes against ``input_length``, no unknown keys) and raises
:class:`~beatwatch.errors.ArtifactError` with one line naming the file and the
field; :meth:`ArtifactConfig.to_json` writes the same layout back. For every
artifact :func:`beatwatch.artifact_save.save_artifact` writes,
``from_json(raw).to_json() == raw``: the on-disk layout, and so the content
checksum (:mod:`beatwatch.artifact_version`), is this definition's.

The sections are in :mod:`beatwatch.artifact_scoring` (what changes the
scores) and :mod:`beatwatch.artifact_record` (what the model was trained on
and how it did), re-exported here; the segmentation and the patient rules are
:class:`~beatwatch.segmentation.Segmentation` and
:class:`~beatwatch.patient.PatientRules`. The trainer's own record
(``training``) is free-form: each trainer records its settings and fit, and
nothing reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from beatwatch.artifact_checks import fail, json_object, optional_string, refuse_unknown
from beatwatch.artifact_record import (
    HEADLINE_METRICS,
    ClassRate,
    Confusion,
    Course,
    DataRecord,
    Evaluation,
    SplitRows,
)
from beatwatch.artifact_scoring import (
    ECG5000_REGION_SPANS,
    Calibration,
    Features,
    Preprocessing,
    Region,
    Threshold,
)
from beatwatch.patient import PatientRules
from beatwatch.scoring import LOSSES
from beatwatch.segmentation import Segmentation

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
CONFIG_FILE = "artifact.json"
# Keys every artifact.json has (save_artifact fills in the sealed ones).
REQUIRED_KEYS = (
    "format_version",
    "model_version",
    "input_length",
    "preprocessing",
    "loss",
    "threshold",
    "model_sha256",
)

__all__ = [
    "CONFIG_FILE",
    "ECG5000_REGION_SPANS",
    "FORMAT_VERSION",
    "HEADLINE_METRICS",
    "MODEL_FILE",
    "REQUIRED_KEYS",
    "ArtifactConfig",
    "Calibration",
    "ClassRate",
    "Confusion",
    "Course",
    "DataRecord",
    "Evaluation",
    "Features",
    "Preprocessing",
    "Region",
    "SplitRows",
    "Threshold",
]


@dataclass(frozen=True, kw_only=True)
class ArtifactConfig:
    """``artifact.json``: what a model computes, how it was made, and its checksums.

    The trainer builds one without the sealed fields (``format_version``,
    ``model_version``, ``input_length``, ``model_sha256``, ``content_sha256``);
    :func:`beatwatch.artifact_save.save_artifact` fills them in.

    Attributes:
        format_version: :data:`FORMAT_VERSION`.
        model_version: ``<name>-<first 12 hex of content_sha256>``.
        input_length: samples per beat.
        name: the model name (the prefix of ``model_version``).
        command: the canonical ``beatwatch train`` command that rebuilds the model.
        command_line: the command line as typed.
        package_version: beatwatch's version at training.
        created_at: ISO 8601 time of training.
        preprocessing: the input scaling.
        loss: the reconstruction error (:data:`beatwatch.scoring.LOSSES`).
        alert_rule: when an alert is raised, in words.
        threshold: the alert threshold.
        calibration: normal beats' errors, for p-values.
        segmentation: how beats are cut from continuous records.
        features: what the model of continuous records is fed.
        patient: the patient-adaptive scoring rules.
        data: what the model was trained on.
        training: the trainer's settings and fit record (free-form).
        evaluation: metrics on the held-out test rows.
        regions: named sample ranges that explain alerts.
        model_sha256: the ``.keras`` file's sha256 (integrity).
        content_sha256: what the model computes (:mod:`beatwatch.artifact_version`).
    """

    format_version: int = FORMAT_VERSION
    model_version: str = ""
    input_length: int = 0
    name: str | None = None
    command: str | None = None
    command_line: str | None = None
    package_version: str | None = None
    created_at: str | None = None
    preprocessing: Preprocessing
    loss: str
    alert_rule: str | None = None
    threshold: Threshold
    calibration: Calibration | None = None
    segmentation: Segmentation | None = None
    features: Features | None = None
    patient: PatientRules | None = None
    data: DataRecord | None = None
    training: Mapping[str, Any] | None = None
    evaluation: Evaluation | None = None
    regions: tuple[Region, ...] | None = None
    model_sha256: str = ""
    content_sha256: str | None = field(default=None)

    def calibration_errors(self) -> np.ndarray | None:
        """The calibration errors as float64, None when there are none."""
        errors = None if self.calibration is None else self.calibration.errors
        return None if not errors else np.asarray(errors, np.float64)

    def region_dicts(self) -> list[dict[str, Any]]:
        """The regions as ``{"name", "start", "end"}`` dicts (empty when none are recorded)."""
        return [region.to_json() for region in self.regions or ()]

    def to_json(self) -> dict[str, Any]:
        """``artifact.json`` as a JSON object, keys in the order they are written."""
        sections: dict[str, Any] = {
            "format_version": self.format_version,
            "model_version": self.model_version,
            "input_length": self.input_length,
            "name": self.name,
            "command": self.command,
            "command_line": self.command_line,
            "package_version": self.package_version,
            "created_at": self.created_at,
            "preprocessing": self.preprocessing.to_json(),
            "loss": self.loss,
            "alert_rule": self.alert_rule,
            "threshold": self.threshold.to_json(),
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "segmentation": None if self.segmentation is None else self.segmentation.to_dict(),
            "features": None if self.features is None else self.features.to_json(),
            "patient": None if self.patient is None else self.patient.to_dict(),
            "data": None if self.data is None else self.data.to_json(),
            "training": None if self.training is None else dict(self.training),
            "evaluation": None if self.evaluation is None else self.evaluation.to_json(),
            "regions": self.region_dicts() if self.regions is not None else None,
            "model_sha256": self.model_sha256,
            "content_sha256": self.content_sha256,
        }
        return {key: value for key, value in sections.items() if value is not None}

    @classmethod
    def from_json(cls, config: Mapping[str, Any], where: str) -> ArtifactConfig:
        """Check a parsed ``artifact.json`` and return it typed.

        Args:
            config: the parsed JSON object.
            where: the file, the prefix of every error message.

        Raises:
            ArtifactError: one line for an unknown format version, missing or
                unknown keys, or a malformed, non-finite or inverted field.
        """
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            fail(
                where,
                f"unknown format version {version!r} (this beatwatch reads {FORMAT_VERSION})",
            )
        missing = [key for key in REQUIRED_KEYS if key not in config]
        if missing:
            fail(where, f"missing keys {', '.join(missing)}")
        refuse_unknown(config, [f.name for f in fields(cls)], where, "artifact.json")
        length = config["input_length"]
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            fail(where, f"input_length must be a positive integer, got {length!r}")
        preprocessing = Preprocessing.from_json(config["preprocessing"], length, where)
        if config["loss"] not in LOSSES:
            fail(where, f"unknown loss {config['loss']!r}")
        threshold = Threshold.from_json(config["threshold"], where)
        calibration = Calibration.from_json(config.get("calibration", {}), where)
        regions = config.get("regions", [])
        if not isinstance(regions, list):
            fail(where, "regions must be a list")
        spans = tuple(Region.from_json(region, length, where) for region in regions)
        for key in ("model_version", "model_sha256"):
            if not isinstance(config[key], str):
                fail(where, f"{key} must be a string")
        return cls(
            format_version=version,
            model_version=config["model_version"],
            input_length=length,
            name=optional_string(config, "name", where, ""),
            command=optional_string(config, "command", where, ""),
            command_line=optional_string(config, "command_line", where, ""),
            package_version=optional_string(config, "package_version", where, ""),
            created_at=optional_string(config, "created_at", where, ""),
            preprocessing=preprocessing,
            loss=config["loss"],
            alert_rule=optional_string(config, "alert_rule", where, ""),
            threshold=threshold,
            calibration=calibration if "calibration" in config else None,
            segmentation=_section(config, "segmentation", _segmentation, where),
            features=_section(config, "features", Features.from_json, where),
            patient=_section(config, "patient", _patient_rules, where),
            data=_section(config, "data", DataRecord.from_json, where),
            training=_section(config, "training", _training, where),
            evaluation=_section(config, "evaluation", Evaluation.from_json, where),
            regions=spans if "regions" in config else None,
            model_sha256=config["model_sha256"],
            content_sha256=optional_string(config, "content_sha256", where, ""),
        )


T = TypeVar("T")


def _section(
    config: Mapping[str, Any], key: str, parse: Callable[[Any, str], T], where: str
) -> T | None:
    """``parse(config[key], where)``, or None when the key is absent."""
    return parse(config[key], where) if key in config else None


def _segmentation(data: Any, where: str) -> Segmentation:
    data = json_object(data, where, "segmentation")
    try:
        return Segmentation.from_dict(data)
    except (TypeError, ValueError) as exc:
        fail(where, f"invalid segmentation: {exc}")


def _patient_rules(data: Any, where: str) -> PatientRules:
    data = json_object(data, where, "patient")
    try:
        return PatientRules.from_dict(data)
    except (TypeError, ValueError) as exc:
        fail(where, f"invalid patient rules: {exc}")


def _training(data: Any, where: str) -> Mapping[str, Any]:
    return dict(json_object(data, where, "training"))
