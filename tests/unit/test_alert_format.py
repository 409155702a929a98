"""The typed alert: decoding agrees with alert.schema.json, and encoding round-trips."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from beatwatch.alert import Alert, AlertFormatError, build_alert, decode_alert, encode_alerts
from beatwatch.artifact import ECG5000_REGIONS
from beatwatch.explanation import explain, explain_numbers
from beatwatch.wire import Beat
from tests.support.paths import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "docs" / "schemas" / "alert.schema.json").read_text())


def valid() -> dict[str, Any]:
    return {
        "alert_id": "p-1/7/m-1",
        "stream": "p-1",
        "seq": 7,
        "ts_ms": 1000,
        "detected_ts_ms": 1200,
        "score": 0.5,
        "threshold": 0.25,
        "score_ratio": 2.0,
        "model_version": "m-1",
        "topic": "ecg-beats",
        "partition": 0,
        "offset": 3,
        "explanation": {
            "summary": "in the QRS region",
            "worst_ranges": [{"start": 40, "end": 52, "error_share": 0.4}],
            "regions": [{"name": "QRS", "start": 40, "end": 60, "error_share": 0.7}],
        },
        "p_value": 0.01,
        "label": 0,
    }


def _set(path: str, value: object) -> dict[str, Any]:
    body = valid()
    *parents, last = path.split(".")
    target: Any = body
    for name in parents:
        target = target[int(name)] if name.isdigit() else target[name]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


_DELETE = object()
CASES = [
    ("valid", valid()),
    ("no optional fields", {k: v for k, v in valid().items() if k not in ("p_value", "label")}),
    ("score_ratio null", _set("score_ratio", None)),
    ("no score_ratio", _set("score_ratio", _DELETE)),
    ("kind V", _set("kind", "V")),
    ("kind S with negative score", {**_set("kind", "S"), "score": -0.5, "learning": True}),
    ("negative score without kind", _set("score", -0.5)),
    ("kind N", _set("kind", "N")),
    ("learning not bool", _set("learning", 1)),
    ("missing seq", _set("seq", _DELETE)),
    ("missing explanation", _set("explanation", _DELETE)),
    ("unknown field", _set("extra", 1)),
    ("seq string", _set("seq", "7")),
    ("seq bool", _set("seq", True)),
    ("seq negative", _set("seq", -1)),
    ("partition null", _set("partition", None)),
    ("empty stream", _set("stream", "")),
    ("stream number", _set("stream", 7)),
    ("score string", _set("score", "high")),
    ("threshold negative", _set("threshold", -0.1)),
    ("p_value zero", _set("p_value", 0.0)),
    ("p_value one", _set("p_value", 1.0)),
    ("p_value above one", _set("p_value", 1.5)),
    ("label 2", _set("label", 2)),
    ("label bool", _set("label", True)),
    ("alert_id number", _set("alert_id", 1)),
    ("summary missing", _set("explanation.summary", _DELETE)),
    ("explanation extra", _set("explanation.more", [])),
    ("worst_ranges not array", _set("explanation.worst_ranges", {})),
    ("range end 0", _set("explanation.worst_ranges.0.end", 0)),
    ("range share above 1", _set("explanation.worst_ranges.0.error_share", 1.5)),
    ("range extra field", _set("explanation.worst_ranges.0.name", "x")),
    ("range not object", _set("explanation.worst_ranges.0", 3)),
    ("region without name", _set("explanation.regions.0.name", _DELETE)),
    ("region start negative", _set("explanation.regions.0.start", -1)),
    ("region share string", _set("explanation.regions.0.error_share", "0.7")),
]


@pytest.mark.parametrize(("case", "body"), CASES, ids=[c[0] for c in CASES])
def test_decoding_agrees_with_the_schema(case: str, body: dict[str, Any]) -> None:
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(body)
    try:
        alert = decode_alert(orjson.dumps(body))
    except AlertFormatError:
        assert not schema_ok, f"{case}: valid by the schema, refused by decode_alert"
    else:
        assert schema_ok, f"{case}: refused by the schema, accepted by decode_alert"
        assert isinstance(alert, Alert)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"{nope", "not JSON"),
        (b"[1]", "not a JSON object"),
        (orjson.dumps(_set("seq", "7")), "'seq'"),
        (orjson.dumps(_set("offset", _DELETE)), "'offset'"),
        (orjson.dumps(_set("explanation.regions.0.end", 0)), "'explanation.regions.0.end'"),
    ],
)
def test_a_refusal_names_what_is_wrong(value: bytes, reason: str) -> None:
    with pytest.raises(AlertFormatError, match=reason.replace(".0.", r"\[0\].")):
        decode_alert(value)


def test_a_decoded_alert_encodes_to_the_same_json() -> None:
    body = valid()
    alert = decode_alert(orjson.dumps(body))
    assert alert.explanation.regions[0].name == "QRS"
    assert alert.to_json() == body
    assert decode_alert(alert.encode()) == alert


def test_an_alert_built_for_a_beat_reads_back_equal() -> None:
    error = np.abs(np.sin(np.linspace(0.0, 9.0, 140)))
    beat = Beat("p-7", 3, 1_000, np.zeros(140, np.float32), label=1)
    alert = build_alert(
        beat,
        score=0.5,
        threshold=0.25,
        model_version="m-1",
        explanation=explain(error, ECG5000_REGIONS),
        topic="beats",
        partition=1,
        offset=9,
        detected_ts_ms=2_000,
        p_value=0.5,
    )
    assert alert.alert_id == "p-7/3/m-1" and alert.score_ratio == 2.0 and alert.label == 1
    jsonschema.validate(orjson.loads(alert.encode()), SCHEMA)
    assert decode_alert(alert.encode()) == alert


def test_the_batch_writer_keeps_its_bytes() -> None:
    """The detector's messages, byte for byte (subscribers may hash or diff them)."""
    errors = np.zeros((1, 140), np.float32)
    errors[0, 45:60] = 1.0
    errors[0, 100:102] = 0.25
    (written,) = encode_alerts(
        streams=["p-1"],
        seqs=[7],
        ts_ms=[1000],
        labels=[0],
        scores=[0.5],
        p_values=[0.01],
        explained=explain_numbers(errors, ECG5000_REGIONS),
        threshold=0.25,
        model_version="m-1",
        topics=["ecg-beats"],
        partitions=[0],
        offsets=[3],
        detected_ts_ms=1200,
        kinds=["V"],
        learning=[False],
    )
    assert written == GOLDEN
    assert decode_alert(written).kind == "V"


GOLDEN = (
    b'{"alert_id":"p-1/7/m-1","stream":"p-1","seq":7,"ts_ms":1000,"detected_ts_ms":1200,'
    b'"score":0.5,"threshold":0.25,"score_ratio":2.0,"model_version":"m-1","topic":"ecg-beats",'
    b'"partition":0,"offset":3,"explanation":{"summary":"reconstruction failed mostly in the T '
    b'region (64% of the error); worst at samples 45-59","worst_ranges":[{"start":45,"end":60,'
    b'"error_share":0.968}],"regions":[{"name":"T","start":50,"end":95,"error_share":0.645},'
    b'{"name":"ST","start":15,"end":50,"error_share":0.323},{"name":"P","start":95,"end":125,'
    b'"error_share":0.032},{"name":"QRS","start":0,"end":15,"error_share":0.0},'
    b'{"name":"next-QRS","start":125,"end":140,"error_share":0.0}]},"p_value":0.01,"kind":"V",'
    b'"learning":false,"label":0}'
)
