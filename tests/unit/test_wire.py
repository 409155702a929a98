from dataclasses import dataclass

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatwatch.errors import InvalidBeat
from beatwatch.wire import BINARY_CONTENT_TYPE, BINARY_PREFIX, Beat, decode, decode_batch, encode

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
        "p-0007",
        1234,
        1763822400123,
        label,
    )
    np.testing.assert_array_equal(decoded.samples, beat.samples)
    assert decoded.samples.dtype == np.float32


@given(
    st.lists(
        st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=LENGTH, max_size=LENGTH
    )
)
def test_json_samples_decode_to_the_very_float32_values_encoded(values):
    """Samples go out as shortest float32 decimals: reading them back must lose no bit."""
    beat = Beat(stream="p-1", seq=1, ts_ms=1, samples=np.array(values, dtype=np.float32))
    key, value, headers = encode(beat, "json")
    decoded = decode(key, value, headers, expected_length=LENGTH)
    assert decoded.samples.tobytes() == beat.samples.tobytes()


def test_json_samples_are_shortest_float32_decimals():
    samples = np.array([-0.11252183, 1e-45, 3.4028235e38] + [0.1] * (LENGTH - 3), np.float32)
    _, value, _ = encode(Beat(stream="p-1", seq=1, ts_ms=1, samples=samples), "json")
    assert orjson.loads(value)["samples"][:4] == [-0.11252183, 1e-45, 3.4028235e38, 0.1]


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
        ((1, 1, 1, 3, 0), "schema"),  # unknown version
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
        "stream": "p-1",
        "seq": 1,
        "ts_ms": 5,
        "samples": [0.5] * LENGTH,
        "label": 1,
    }
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
        (b"p-1", json_value(samples=[0.5] * 139 + [True]), [], "schema"),
        (b"p-1", json_value(samples=[0.5] * 139 + [False]), [], "schema"),
        (b"p-1", json_value(samples=[0.5] * 139 + [None]), [], "schema"),
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


# --- decode_batch: the batched fast path gives decode()'s verdict on every message ---

BINARY_HEADERS = [("content-type", BINARY_CONTENT_TYPE.encode())]


@dataclass
class Msg:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def hostile_json(samples: object, **overrides: object) -> bytes:
    return json_value(samples=samples, **overrides)


def binary_value(
    seq: int = 1,
    ts_ms: int = 5,
    label: int = 1,
    version: int = 1,
    samples: np.ndarray | None = None,
) -> bytes:
    body = np.linspace(-1, 1, LENGTH, dtype="<f4") if samples is None else samples
    return BINARY_PREFIX.pack(seq, ts_ms, label, version, 0) + body.astype("<f4").tobytes()


# Messages the fast paths must accept and messages they must hand to decode().
MESSAGE_KINDS = [
    Msg(b"p-1", json_value(), []),
    Msg(None, json_value(label=...), [("content-type", b"application/json; charset=utf-8")]),
    Msg(b"p-1", hostile_json([0.0] * LENGTH), []),  # zeros: the exact bool/null check runs
    Msg(b"p-1", hostile_json([0.5] * 139 + [True]), []),
    Msg(b"p-1", hostile_json([0.5] * 139 + [None]), []),
    Msg(b"p-1", hostile_json([0.5] * 139 + ["x"]), []),
    Msg(b"p-1", hostile_json([[0.5]] * LENGTH), []),
    Msg(b"p-1", hostile_json([1e39] * LENGTH), []),
    Msg(b"p-1", hostile_json([0.5] * 10), []),
    Msg(b"p-1", json_value(seq=-1), []),
    Msg(b"p-2", json_value(), []),
    Msg(b"p-1", b"{not json", []),
    Msg(b"p-1", b"", []),
    Msg(b"p-1", None, []),
    Msg(b"p-1", b"x" * 70_000, []),
    Msg(b"p-1", binary_value(), BINARY_HEADERS),
    Msg(b"p-1", binary_value(label=255), BINARY_HEADERS),
    Msg(b"p-1", binary_value(label=7), BINARY_HEADERS),
    Msg(b"p-1", binary_value(version=2), BINARY_HEADERS),
    Msg(b"p-1", binary_value(seq=2**63), BINARY_HEADERS),
    Msg(b"p-1", binary_value(samples=np.full(LENGTH, np.inf)), BINARY_HEADERS),
    Msg(b"p-1", binary_value()[:-4], BINARY_HEADERS),
    Msg(None, binary_value(), BINARY_HEADERS),
    Msg(b"\xff", binary_value(), BINARY_HEADERS),
    Msg(b"x" * 200, binary_value(), BINARY_HEADERS),
    Msg(b"p-1", binary_value(), [("content-type", b"application/zip")]),
    Msg(b"p-1", binary_value(), [("content-type", b"\xff")]),
]


def verdict(message: Msg) -> tuple[str, object]:
    try:
        beat = decode(message.key, message.value, message.headers, expected_length=LENGTH)
    except InvalidBeat as exc:
        return "refused", exc.reason
    return "accepted", (beat.stream, beat.seq, beat.ts_ms, beat.label, beat.samples.tobytes())


def batch_verdicts(messages: list[Msg]) -> list[tuple[str, object]]:
    decoded = decode_batch(messages, expected_length=LENGTH)
    out: list[tuple[str, object]] = [("missing", None)] * len(messages)
    for row, index in enumerate(decoded.index):
        beat = decoded.beat(row)
        out[index] = (
            "accepted",
            (beat.stream, beat.seq, beat.ts_ms, beat.label, beat.samples.tobytes()),
        )
    for index, exc in decoded.rejected:
        assert isinstance(exc, InvalidBeat)
        out[index] = ("refused", exc.reason)
    return out


def test_every_kind_of_message_gets_the_same_verdict_alone_and_in_a_batch():
    verdicts = [verdict(m) for m in MESSAGE_KINDS]
    assert batch_verdicts(MESSAGE_KINDS) == verdicts
    # The list covers both outcomes of both fast paths.
    assert {v[0] for v in verdicts} == {"accepted", "refused"}


@given(st.lists(st.sampled_from(range(len(MESSAGE_KINDS))), max_size=40))
def test_any_mix_of_messages_gets_the_same_verdicts_in_input_order(picks):
    messages = [MESSAGE_KINDS[i] for i in picks]
    assert batch_verdicts(messages) == [verdict(m) for m in messages]


@given(st.lists(st.tuples(st.binary(max_size=600), st.booleans()), max_size=20))
def test_arbitrary_bytes_get_the_same_verdicts_in_a_batch(values):
    messages = [Msg(b"p-1", v, BINARY_HEADERS if binary else []) for v, binary in values]
    assert batch_verdicts(messages) == [verdict(m) for m in messages]
