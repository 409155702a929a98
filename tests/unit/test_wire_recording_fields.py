"""The optional fields of beats cut from recordings: rr_prev_ms, rr_local_ms, beat_class."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from beatwatch.errors import InvalidBeat
from beatwatch.wire import (
    BINARY_CONTENT_TYPE,
    BINARY_EXTENSION,
    BINARY_PREFIX,
    Beat,
    decode,
    decode_batch,
    encode,
)

LENGTH = 288
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "beat.schema.json").read_text()
)


@dataclass
class Msg:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def beat(**extra: object) -> Beat:
    samples = np.linspace(-1, 2, LENGTH, dtype=np.float32)
    return Beat(stream="rec-208", seq=7, ts_ms=1_000, samples=samples, label=0, **extra)  # type: ignore[arg-type]


FULL = {"rr_prev_ms": 612.5, "rr_local_ms": 833.3333333333334, "beat_class": "V"}


@pytest.mark.parametrize("fmt", ["json", "binary"])
@pytest.mark.parametrize(
    "extra", [FULL, {"rr_prev_ms": 0.0}, {"beat_class": "Q"}, {"rr_local_ms": 60_000.0}, {}]
)
def test_recording_fields_survive_a_round_trip(fmt, extra):
    original = beat(**extra)
    key, value, headers = encode(original, fmt)
    decoded = decode(key, value, headers, expected_length=LENGTH)
    for name in ("rr_prev_ms", "rr_local_ms", "beat_class"):
        assert getattr(decoded, name) == extra.get(name)
    np.testing.assert_array_equal(decoded.samples, original.samples)
    got = decode_batch([Msg(key, value, headers)], expected_length=LENGTH).beat(0)
    assert (got.rr_prev_ms, got.rr_local_ms, got.beat_class) == (
        decoded.rr_prev_ms,
        decoded.rr_local_ms,
        decoded.beat_class,
    )


def test_a_beat_without_them_stays_binary_version_1_byte_for_byte():
    _, value, _ = encode(beat(), "binary")
    assert len(value) == BINARY_PREFIX.size + 4 * LENGTH
    assert BINARY_PREFIX.unpack_from(value) == (7, 1_000, 0, 1, 0)


def test_a_beat_with_them_is_binary_version_2():
    _, value, _ = encode(beat(**FULL), "binary")
    assert len(value) == BINARY_PREFIX.size + BINARY_EXTENSION.size + 4 * LENGTH
    assert BINARY_PREFIX.unpack_from(value)[3] == 2
    rr_prev, rr_local, code = BINARY_EXTENSION.unpack_from(value, BINARY_PREFIX.size)
    assert (rr_prev, rr_local, code) == (612.5, 833.3333333333334, 3)  # float64: exact


def test_json_beats_with_them_follow_the_schema():
    _, value, _ = encode(beat(**FULL), "json")
    body = orjson.loads(value)
    jsonschema.validate(body, SCHEMA)
    assert body["beat_class"] == "V"


@pytest.mark.parametrize(
    "field",
    [
        {"rr_prev_ms": -1},
        {"rr_prev_ms": "600"},
        {"rr_local_ms": True},
        {"rr_local_ms": 1e9},
        {"beat_class": "X"},
        {"beat_class": 3},
    ],
)
def test_bad_json_fields_are_refused_by_decoder_and_schema(field):
    body = {"stream": "rec-1", "seq": 1, "ts_ms": 1, "samples": [0.0] * LENGTH, **field}
    with pytest.raises(InvalidBeat) as caught:
        decode(b"rec-1", orjson.dumps(body), [], expected_length=LENGTH)
    assert caught.value.reason == "schema"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, SCHEMA)
    batch = decode_batch([Msg(b"rec-1", orjson.dumps(body), [])], expected_length=LENGTH)
    assert [error.reason for _, error in batch.rejected] == ["schema"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "extension", [(-5.0, math.nan, 0), (math.inf, math.nan, 0), (math.nan, math.nan, 6)]
)
def test_bad_binary_version_2_fields_are_refused(extension):
    value = (
        BINARY_PREFIX.pack(1, 1, 1, 2, 0)
        + BINARY_EXTENSION.pack(*extension)
        + np.zeros(LENGTH, "<f4").tobytes()
    )
    headers = [("content-type", BINARY_CONTENT_TYPE.encode())]
    with pytest.raises(InvalidBeat) as caught:
        decode(b"rec-1", value, headers, expected_length=LENGTH)
    assert caught.value.reason == "schema"
    batch = decode_batch([Msg(b"rec-1", value, headers)], expected_length=LENGTH)
    assert batch.index == [] and len(batch.rejected) == 1


def test_a_mixed_batch_decodes_like_one_message_at_a_time():
    variants = [beat(), beat(**FULL), beat(rr_prev_ms=400.0), beat(beat_class="S")]
    messages = [Msg(*encode(b, fmt)) for b in variants for fmt in ("json", "binary")]
    batch = decode_batch(messages, expected_length=LENGTH)
    assert batch.index == list(range(len(messages)))
    for row, message in enumerate(messages):
        one = decode(message.key, message.value, message.headers, expected_length=LENGTH)
        got = batch.beat(row)
        assert (got.rr_prev_ms, got.rr_local_ms, got.beat_class, got.label) == (
            one.rr_prev_ms,
            one.rr_local_ms,
            one.beat_class,
            one.label,
        )
        np.testing.assert_array_equal(got.samples, one.samples)
