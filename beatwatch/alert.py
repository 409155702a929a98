"""The alert contract: one JSON message per beat over threshold, as a typed value.

An alert's identity is ``(stream, seq, model_version)``, also given as
``alert_id``: at-least-once delivery may publish the same alert twice, and a
subscriber drops the repeat by that id. Its explanation
(:mod:`beatwatch.explanation`) says where in the beat the reconstruction
failed. The schema is ``docs/schemas/alert.schema.json``; :func:`decode_alert`
checks a message against it and gives an :class:`Alert`.

The detector does not build :class:`Alert` objects: it writes a batch's
messages from its columns (:func:`beatwatch.alert_batch.encode_alerts`),
which :func:`decode_alert` reads back to the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from beatwatch.alert_batch import encode_alerts
from beatwatch.explanation import (
    Explained,
    Explanation,
    RegionShare,
    WorstRange,
    explain,
    explain_batch,
    explain_numbers,
)
from beatwatch.wire import Beat

__all__ = [
    "Alert",
    "AlertFormatError",
    "Explained",
    "Explanation",
    "RegionShare",
    "WorstRange",
    "alert_id",
    "build_alert",
    "decode_alert",
    "encode_alert",
    "encode_alerts",
    "explain",
    "explain_batch",
    "explain_numbers",
]

KINDS = ("V", "S")


def alert_id(stream: str, seq: int, model_version: str) -> str:
    """The deterministic identity of an alert, for dropping duplicates."""
    return f"{stream}/{seq}/{model_version}"


class AlertFormatError(ValueError):
    """A message that is not an alert (not JSON, or off ``alert.schema.json``); says where."""


@dataclass(frozen=True)
class Alert:
    """One beat whose score exceeded the model's threshold (``alert.schema.json``).

    Attributes:
        alert_id: ``stream/seq/model_version``, the identity for dropping repeats.
        stream: the beat's stream id.
        seq: the beat's number in its stream.
        ts_ms: the beat's time, epoch ms.
        detected_ts_ms: when the detector took up the beat's batch, epoch ms.
        score: the beat's score (reconstruction error; with ``kind``, the
            patient-adaptive score, which may be negative).
        threshold: alert when ``score > threshold``.
        score_ratio: ``score / threshold``, None when the threshold is 0.
        model_version: the model that scored the beat.
        topic: source topic of the beat.
        partition: source partition.
        offset: source offset.
        explanation: where the reconstruction failed.
        p_value: share of held-out normal beats at least this anomalous (models
            with calibration errors only).
        kind: ``"V"`` or ``"S"`` (patient-adaptive models only).
        learning: scored while the stream still learnt its normal
            (patient-adaptive models only).
        label: the replayed beat's ground truth, when it had one.
    """

    alert_id: str
    stream: str
    seq: int
    ts_ms: int
    detected_ts_ms: int
    score: float
    threshold: float
    score_ratio: float | None
    model_version: str
    topic: str
    partition: int
    offset: int
    explanation: Explanation
    p_value: float | None = None
    kind: str | None = None
    learning: bool | None = None
    label: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The alert as its JSON object, fields in the order the detector writes them."""
        body: dict[str, Any] = {
            "alert_id": self.alert_id,
            "stream": self.stream,
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "detected_ts_ms": self.detected_ts_ms,
            "score": self.score,
            "threshold": self.threshold,
            "score_ratio": self.score_ratio,
            "model_version": self.model_version,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "explanation": self.explanation.to_json(),
        }
        if self.p_value is not None:
            body["p_value"] = self.p_value
        if self.kind is not None:
            body["kind"] = self.kind
        if self.learning is not None:
            body["learning"] = self.learning
        if self.label is not None:
            body["label"] = self.label
        return body

    def encode(self) -> bytes:
        """The alert message value: UTF-8 JSON."""
        return orjson.dumps(self.to_json())


def build_alert(
    beat: Beat,
    *,
    score: float,
    threshold: float,
    model_version: str,
    explanation: Explanation,
    topic: str,
    partition: int,
    offset: int,
    detected_ts_ms: int,
    p_value: float | None = None,
    kind: str | None = None,
    learning: bool | None = None,
) -> Alert:
    """The alert for one beat over threshold.

    ``kind`` (``"V"`` or ``"S"``) and ``learning`` are given by a patient-adaptive
    model only (``beatwatch.patient``); other alerts do not carry them.
    """
    score, threshold = float(score), float(threshold)
    return Alert(
        alert_id=alert_id(beat.stream, beat.seq, model_version),
        stream=beat.stream,
        seq=int(beat.seq),
        ts_ms=int(beat.ts_ms),
        detected_ts_ms=int(detected_ts_ms),
        score=score,
        threshold=threshold,
        score_ratio=score / threshold if threshold > 0 else None,
        model_version=model_version,
        topic=topic,
        partition=int(partition),
        offset=int(offset),
        explanation=explanation,
        p_value=None if p_value is None else float(p_value),
        kind=kind,
        learning=learning,
        label=beat.label,
    )


def encode_alert(alert: Alert) -> bytes:
    """Serialise an alert as UTF-8 JSON (:meth:`Alert.encode`)."""
    return alert.encode()


_ALERT_FIELDS = frozenset(Alert.__dataclass_fields__)
_REQUIRED = (
    "alert_id",
    "stream",
    "seq",
    "ts_ms",
    "detected_ts_ms",
    "score",
    "threshold",
    "model_version",
    "topic",
    "partition",
    "offset",
    "explanation",
)


def decode_alert(value: bytes) -> Alert:
    """Parse and check an alert message value against ``alert.schema.json``.

    Raises:
        AlertFormatError: empty, not JSON, not an object, a required field
            missing, an unknown field, or a field of the wrong type or range;
            the message names the field.
    """
    if not value:
        raise AlertFormatError("empty message")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise AlertFormatError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(body, dict):
        raise AlertFormatError("not a JSON object")
    _known_fields(body, _ALERT_FIELDS, "alert")
    kind = body.get("kind")
    if kind is not None and kind not in KINDS:
        raise AlertFormatError(f"field 'kind' must be one of {', '.join(KINDS)}")
    stream = _string(body, "stream")
    if not stream:
        raise AlertFormatError("field 'stream' is an empty stream id")
    score = _number(body, "score")
    if kind is None and score < 0:
        raise AlertFormatError("field 'score' must be >= 0 (negative only with 'kind')")
    threshold = _number(body, "threshold")
    if threshold < 0:
        raise AlertFormatError("field 'threshold' must be >= 0")
    learning = body.get("learning")
    if learning is not None and not isinstance(learning, bool):
        raise AlertFormatError("field 'learning' must be true or false")
    label = body.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
        raise AlertFormatError("field 'label' must be 0 or 1")
    return Alert(
        alert_id=_string(body, "alert_id"),
        stream=stream,
        seq=_count(body, "seq"),
        ts_ms=_count(body, "ts_ms"),
        detected_ts_ms=_count(body, "detected_ts_ms"),
        score=score,
        threshold=threshold,
        score_ratio=_optional_number(body, "score_ratio"),
        model_version=_string(body, "model_version"),
        topic=_string(body, "topic"),
        partition=_count(body, "partition"),
        offset=_count(body, "offset"),
        explanation=_explanation(body.get("explanation")),
        p_value=_p_value(body),
        kind=kind,
        learning=learning,
        label=None if label is None else int(label),
    )


def _known_fields(body: dict[str, Any], known: frozenset[str], what: str) -> None:
    required = _REQUIRED if what == "alert" else tuple(sorted(known))
    missing = [name for name in required if name not in body]
    if missing:
        raise AlertFormatError(f"{what}: missing field {', '.join(repr(n) for n in missing)}")
    unknown = sorted(set(body) - known)
    if unknown:
        raise AlertFormatError(f"{what}: unknown field {', '.join(repr(n) for n in unknown)}")


def _string(body: dict[str, Any], name: str, where: str = "") -> str:
    value = body[name]
    if not isinstance(value, str):
        raise AlertFormatError(f"field '{where}{name}' must be a string")
    return value


def _number(body: dict[str, Any], name: str, where: str = "") -> float:
    value = body[name]
    # bool is an int in Python, not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AlertFormatError(f"field '{where}{name}' must be a number")
    return float(value)


def _optional_number(body: dict[str, Any], name: str) -> float | None:
    return None if body.get(name) is None else _number(body, name)


def _count(body: dict[str, Any], name: str, where: str = "", minimum: int = 0) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise AlertFormatError(f"field '{where}{name}' must be an integer")
    if value < minimum:
        raise AlertFormatError(f"field '{where}{name}' must be >= {minimum}")
    return value


def _share(body: dict[str, Any], where: str) -> float:
    share = _number(body, "error_share", where)
    if not 0.0 <= share <= 1.0:
        raise AlertFormatError(f"field '{where}error_share' must be in 0..1")
    return share


def _p_value(body: dict[str, Any]) -> float | None:
    if "p_value" not in body:
        return None
    p_value = _number(body, "p_value")
    if not 0.0 < p_value <= 1.0:
        raise AlertFormatError("field 'p_value' must be in (0, 1]")
    return p_value


_EXPLANATION_FIELDS = frozenset({"summary", "worst_ranges", "regions"})
_RANGE_FIELDS = frozenset({"start", "end", "error_share"})
_REGION_FIELDS = frozenset({"name", "start", "end", "error_share"})


def _objects(body: dict[str, Any], name: str, fields: frozenset[str]) -> list[dict[str, Any]]:
    items = body[name]
    if not isinstance(items, list):
        raise AlertFormatError(f"field 'explanation.{name}' must be an array")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise AlertFormatError(f"field 'explanation.{name}[{i}]' must be an object")
        _known_fields(item, fields, f"explanation.{name}[{i}]")
    return items


def _explanation(body: object) -> Explanation:
    if not isinstance(body, dict):
        raise AlertFormatError("field 'explanation' must be an object")
    _known_fields(body, _EXPLANATION_FIELDS, "explanation")
    summary = _string(body, "summary", "explanation.")
    worst = tuple(
        WorstRange(
            _count(item, "start", f"explanation.worst_ranges[{i}]."),
            _count(item, "end", f"explanation.worst_ranges[{i}].", minimum=1),
            _share(item, f"explanation.worst_ranges[{i}]."),
        )
        for i, item in enumerate(_objects(body, "worst_ranges", _RANGE_FIELDS))
    )
    regions = tuple(
        RegionShare(
            _string(item, "name", f"explanation.regions[{i}]."),
            _count(item, "start", f"explanation.regions[{i}]."),
            _count(item, "end", f"explanation.regions[{i}].", minimum=1),
            _share(item, f"explanation.regions[{i}]."),
        )
        for i, item in enumerate(_objects(body, "regions", _REGION_FIELDS))
    )
    return Explanation(summary, worst, regions)
