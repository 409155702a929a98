import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatwatch.errors import InvalidBeat
from beatwatch.wire import BINARY_CONTENT_TYPE, BINARY_PREFIX, Beat, decode, encode

LENGTH = 140


def make_beat(label: int | None = 1) -> Beat:
    samples = np.linspace(-3, 3, LENGTH, dtype=np.float32)
    return Beat(stream="p-0007", seq=1234, ts_ms=1763822400123, samples=samples, label=label)


@pytest.mark.parametrize("fmt", ["json", "binary"])
@pytest.mark.parametrize("label", [0, 1, None])
def test_round_trip_keeps_every_field(fmt, label):
    beat = make_beat(label)
    key, value, headers = encode(beat, fmt)
    decoded = decode(key, value, headers, expected_length=LENGTH)
    assert key == b"p-0007"
    assert (decoded.stream, decoded.seq, decoded.ts_ms, decoded.label) == (
        "p-0007", 1234, 1763822400123, label,
    )  # fmt: skip
    np.testing.assert_array_equal(decoded.samples, beat.samples)
    assert decoded.samples.dtype == np.float32


def test_binary_is_a_20_byte_prefix_then_float32_and_one_header():
    _, value, headers = encode(make_beat(), "binary")
    assert len(value) == 20 + LENGTH * 4
    assert BINARY_PREFIX.unpack_from(value) == (1234, 1763822400123, 1, 1, 0)
    assert headers == [("content-type", BINARY_CONTENT_TYPE.encode())]


def test_binary_without_label_marks_it_255():
    key, value, headers = encode(make_beat(label=None), "binary")
    assert value[16] == 255
    assert decode(key, value, headers, expected_length=LENGTH).label is None


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ((1, 1, 1, 2, 0), "schema"),  # unknown version
        ((1, 1, 7, 1, 0), "schema"),  # label not 0, 1 or 255
        ((2**63, 1, 1, 1, 0), "schema"),  # seq beyond int64
    ],
)
def test_bad_binary_prefix_is_refused(prefix, reason):
    value = BINARY_PREFIX.pack(*prefix) + np.zeros(LENGTH, "<f4").tobytes()
    headers = [("content-type", BINARY_CONTENT_TYPE.encode())]
    with pytest.raises(InvalidBeat) as caught:
        decode(b"p-1", value, headers, expected_length=LENGTH)
    assert caught.value.reason == reason


def test_json_matches_the_documented_shape():
    _, value, headers = encode(make_beat(), "json")
    body = orjson.loads(value)
    assert set(body) == {"stream", "seq", "ts_ms", "samples", "label"}
    assert headers == []


def json_value(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "stream": "p-1", "seq": 1, "ts_ms": 5, "samples": [0.5] * LENGTH, "label": 1,
    }  # fmt: skip
    body.update(overrides)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("key", "value", "headers", "reason"),
    [
        (b"p-1", b"", [], "empty"),
        (b"p-1", None, [], "empty"),
        (b"p-1", b"{not json", [], "decode"),
        (b"p-1", b"[1, 2]", [], "schema"),
        (b"p-1", json_value(samples=[0.5] * 10), [], "length"),
        (b"p-1", json_value(samples="abc"), [], "schema"),
        (b"p-1", json_value(samples=[0.5] * 139 + ["x"]), [], "schema"),
        (b"p-1", json_value(samples=[[0.5]] * LENGTH), [], "schema"),
        (b"p-1", json_value(seq="1"), [], "schema"),
        (b"p-1", json_value(seq=-1), [], "schema"),
        (b"p-1", json_value(ts_ms=1.5), [], "schema"),
        (b"p-1", json_value(label=7), [], "schema"),
        (b"p-1", json_value(stream=5), [], "schema"),
        (b"p-1", json_value(stream=...), [], "schema"),
        (b"p-2", json_value(), [], "schema"),
        (b"p-1", json_value(samples=[1e39] * LENGTH), [], "non-finite"),
        (b"p-1", b"x" * 70_000, [], "too-large"),
        (b"p-1", b"\x00" * 560, [("content-type", b"application/zip")], "content-type"),
        (None, b"\x00" * 560, [("content-type", BINARY_CONTENT_TYPE.encode())], "missing-key"),
        (b"p-1", b"\x00" * 561, [("content-type", BINARY_CONTENT_TYPE.encode())], "length"),
        (b"p-1", b"\x00" * 560, [("content-type", BINARY_CONTENT_TYPE.encode())], "schema"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(key, value, headers, reason):
    with pytest.raises(InvalidBeat) as caught:
        decode(key, value, headers, expected_length=LENGTH)
    assert caught.value.reason == reason


def test_nan_in_binary_is_non_finite():
    beat = make_beat()
    key, value, headers = encode(beat, "binary")
    samples = np.frombuffer(value, dtype="<f4", offset=20).copy()
    samples[3] = np.nan
    with pytest.raises(InvalidBeat) as caught:
        decode(key, value[:20] + samples.tobytes(), headers, expected_length=LENGTH)
    assert caught.value.reason == "non-finite"


def test_json_nan_literal_is_not_json():
    value = json_value().replace(b"0.5", b"NaN", 1)
    with pytest.raises(InvalidBeat) as caught:
        decode(b"p-1", value, [], expected_length=LENGTH)
    assert caught.value.reason == "decode"


@given(st.binary(max_size=2000), st.sampled_from([None, BINARY_CONTENT_TYPE.encode(), b"\xff"]))
def test_arbitrary_bytes_never_raise_anything_but_invalid_beat(value, content_type):
    headers = [] if content_type is None else [("content-type", content_type)]
    try:
        decode(b"k", value, headers, expected_length=LENGTH)
    except InvalidBeat as exc:
        assert exc.reason
