"""The descriptive sections of ``artifact.json``: what a model was trained on and how it did.

The data record (with the rows of each split) and the evaluation metrics, each
a frozen dataclass with ``from_json`` (checks, one-line
:class:`~beatwatch.errors.ArtifactError`) and ``to_json`` (the on-disk layout).
Optional fields are None when the key is absent; an undefined metric (no
abnormal test rows) is NaN in memory and ``null`` on disk. These sections stay
out of the model version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from beatwatch.artifact_checks import (
    fail,
    is_count,
    is_number,
    json_object,
    metric_in,
    metric_out,
    optional_string,
    put,
    refuse_unknown,
)

# The headline metrics of an evaluation, in the order they are printed.
HEADLINE_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "false_alarm_rate",
)


_SPLITS = ("train", "calibration", "test")


@dataclass(frozen=True)
class SplitRows:
    """Row numbers of the training data in each split (``data.rows``)."""

    train: tuple[int, ...] | None = None
    calibration: tuple[int, ...] | None = None
    test: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``rows`` object."""
        out: dict[str, Any] = {}
        for split in _SPLITS:
            rows = getattr(self, split)
            put(out, split, None if rows is None else list(rows))
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> SplitRows:
        """Refuse a split that is not a list of row numbers."""
        data = json_object(data, where, "data.rows")
        splits: dict[str, tuple[int, ...]] = {}
        for split in _SPLITS:
            if split in data:
                rows = data[split]
                if not isinstance(rows, list) or not all(is_count(row) for row in rows):
                    fail(where, f"data.rows.{split} must be a list of row numbers")
                splits[split] = tuple(rows)
        refuse_unknown(data, _SPLITS, where, "data.rows")
        return cls(**splits)


@dataclass(frozen=True)
class DataRecord:
    """What the model was trained on (``data``).

    A model of pre-cut beats (ECG5000 or a CSV) records ``source``, ``sha256``,
    the label settings and ``rows``; a model of continuous records (``source``
    ``wfdb``) records ``directory_name``, ``records``, ``files_sha256`` and ``beats``.

    Attributes:
        source: the CSV path, or ``wfdb``.
        sha256: of the CSV.
        label_column: the label column, an index or a name.
        normal_label: the label of normal beats.
        rows: the rows of each split.
        directory_name: the records' directory (its name only).
        records: the record names.
        files_sha256: per record, each file's sha256.
        beats: per record, the beats cut.
    """

    source: str | None = None
    sha256: str | None = None
    label_column: int | str | None = None
    normal_label: float | None = None
    rows: SplitRows | None = None
    directory_name: str | None = None
    records: tuple[str, ...] | None = None
    files_sha256: Mapping[str, Mapping[str, str]] | None = None
    beats: Mapping[str, int] | None = None

    def test_rows(self) -> tuple[int, ...] | None:
        """The held-out test rows (``data.rows.test``), None when not recorded."""
        return None if self.rows is None else self.rows.test

    def to_json(self) -> dict[str, Any]:
        """The ``data`` object."""
        out: dict[str, Any] = {}
        put(out, "source", self.source)
        put(out, "sha256", self.sha256)
        put(out, "label_column", self.label_column)
        put(out, "normal_label", self.normal_label)
        put(out, "rows", None if self.rows is None else self.rows.to_json())
        put(out, "directory_name", self.directory_name)
        put(out, "records", None if self.records is None else list(self.records))
        if self.files_sha256 is not None:
            out["files_sha256"] = {name: dict(files) for name, files in self.files_sha256.items()}
        put(out, "beats", None if self.beats is None else dict(self.beats))
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> DataRecord:
        """Refuse label settings, rows or record lists of the wrong type."""
        data = json_object(data, where, "data")
        label_column = data.get("label_column")
        if label_column is not None and (
            isinstance(label_column, bool) or not isinstance(label_column, int | str)
        ):
            fail(where, "data.label_column must be an index or a name")
        normal_label = data.get("normal_label")
        if normal_label is not None and not is_number(normal_label):
            fail(where, "data.normal_label must be a number")
        records = data.get("records")
        if records is not None and not (
            isinstance(records, list) and all(isinstance(name, str) for name in records)
        ):
            fail(where, "data.records must be a list of names")
        files = data.get("files_sha256")
        if files is not None and not (
            isinstance(files, dict)
            and all(
                isinstance(named, dict) and all(isinstance(v, str) for v in named.values())
                for named in files.values()
            )
        ):
            fail(where, "data.files_sha256 must map records to {file: sha256}")
        beats = data.get("beats")
        if beats is not None and not (
            isinstance(beats, dict) and all(is_count(n) for n in beats.values())
        ):
            fail(where, "data.beats must map records to counts")
        refuse_unknown(data, [f.name for f in fields(cls)], where, "data")
        return cls(
            source=optional_string(data, "source", where, "data."),
            sha256=optional_string(data, "sha256", where, "data."),
            label_column=label_column,
            normal_label=normal_label,
            rows=SplitRows.from_json(data["rows"], where) if "rows" in data else None,
            directory_name=optional_string(data, "directory_name", where, "data."),
            records=None if records is None else tuple(records),
            files_sha256=None if files is None else {k: dict(v) for k, v in files.items()},
            beats=None if beats is None else dict(beats),
        )


@dataclass(frozen=True)
class Confusion:
    """Alert counts on the test rows: anomaly is the positive class."""

    tp: int
    fp: int
    tn: int
    fn: int

    def to_json(self) -> dict[str, Any]:
        """The ``confusion`` object."""
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Confusion:
        """Refuse anything but four counts."""
        keys = ("tp", "fp", "tn", "fn")
        if not (isinstance(data, dict) and set(data) == set(keys)) or not all(
            is_count(data[key]) for key in keys
        ):
            fail(where, "evaluation.confusion must be {tp, fp, tn, fn} counts")
        return cls(data["tp"], data["fp"], data["tn"], data["fn"])


@dataclass(frozen=True)
class Course:
    """The course's figures: normal is the positive class, ``normal iff score < threshold``."""

    accuracy: float
    precision_normal: float
    recall_normal: float

    def to_json(self) -> dict[str, Any]:
        """The ``course`` object (undefined figures as null)."""
        return {key: metric_out(getattr(self, key)) for key in _COURSE_KEYS}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Course:
        """Refuse anything but the three figures."""
        if not (isinstance(data, dict) and set(data) == set(_COURSE_KEYS)):
            fail(where, f"evaluation.course must be {{{', '.join(_COURSE_KEYS)}}}")
        return cls(*(metric_in(data[key], where, f"course.{key}") for key in _COURSE_KEYS))


_COURSE_KEYS = ("accuracy", "precision_normal", "recall_normal")


@dataclass(frozen=True)
class ClassRate:
    """How often the beats of one ECG5000 class raised an alert."""

    name: str
    n: int
    detection_rate: float

    def to_json(self) -> dict[str, Any]:
        """The ``per_class`` entry."""
        return {"name": self.name, "n": self.n, "detection_rate": metric_out(self.detection_rate)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> ClassRate:
        """Refuse anything but ``{name, n, detection_rate}``."""
        if not (
            isinstance(data, dict)
            and set(data) == {"name", "n", "detection_rate"}
            and isinstance(data["name"], str)
            and is_count(data["n"])
        ):
            fail(where, "evaluation.per_class entries must be {name, n, detection_rate}")
        rate = metric_in(data["detection_rate"], where, "per_class detection_rate")
        return cls(data["name"], data["n"], rate)


@dataclass(frozen=True)
class Evaluation:
    """The trainer's metrics on the held-out test rows (``evaluation``).

    Each field is None when not recorded (a model of continuous records keeps
    its evaluation in ``beatwatch evaluate --wfdb`` reports); an undefined
    metric (no abnormal test rows) is NaN.
    """

    n: int | None = None
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    auroc: float | None = None
    auprc: float | None = None
    false_alarm_rate: float | None = None
    confusion: Confusion | None = None
    course: Course | None = None
    per_class: Mapping[str, ClassRate] | None = None

    def metric(self, key: str) -> float | None:
        """The headline metric ``key`` (:data:`HEADLINE_METRICS`); None when not recorded."""
        if key not in HEADLINE_METRICS:
            raise KeyError(key)
        value: float | None = getattr(self, key)
        return value

    def to_json(self) -> dict[str, Any]:
        """The ``evaluation`` object (undefined metrics as null)."""
        out: dict[str, Any] = {}
        put(out, "n", self.n)
        for key in HEADLINE_METRICS:
            if getattr(self, key) is not None:
                out[key] = metric_out(getattr(self, key))
        put(out, "confusion", None if self.confusion is None else self.confusion.to_json())
        put(out, "course", None if self.course is None else self.course.to_json())
        if self.per_class is not None:
            out["per_class"] = {label: rate.to_json() for label, rate in self.per_class.items()}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Evaluation:
        """Refuse metrics that are not numbers (or null) and malformed tables."""
        data = json_object(data, where, "evaluation")
        n = data.get("n")
        if n is not None and not is_count(n):
            fail(where, "evaluation.n must be a count")
        metrics = {key: metric_in(data[key], where, key) for key in HEADLINE_METRICS if key in data}
        per_class = data.get("per_class")
        if per_class is not None and not isinstance(per_class, dict):
            fail(where, "evaluation.per_class must be an object")
        refuse_unknown(data, [f.name for f in fields(cls)], where, "evaluation")
        return cls(
            n=n,
            confusion=Confusion.from_json(data["confusion"], where)
            if "confusion" in data
            else None,
            course=Course.from_json(data["course"], where) if "course" in data else None,
            per_class=None
            if per_class is None
            else {label: ClassRate.from_json(rate, where) for label, rate in per_class.items()},
            **metrics,
        )
