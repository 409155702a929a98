"""The beat wire format: JSON (interoperable default) and compact binary float32.

JSON value (UTF-8)::

    {"stream": "p-0007", "seq": 1234, "ts_ms": 1763822400123,
     "samples": [...], "label": 1}

Binary value (header ``content-type: application/x-beatwatch-f32``; the key
is the stream id): a 20-byte little-endian prefix ``seq u64, ts_ms u64,
label u8 (0, 1, 255 = none), version u8 (1), reserved u16 (0)``, then the
samples as little-endian float32. The metadata sits in the value, not in
headers, because kafka-python parses headers in pure Python: four headers per
message measured 31 us/message to consume against 14 us with one header and
the prefix. A message without a ``content-type`` header, or with
``application/json``, is JSON. The full specification is ``docs/wire-format.md``
and the JSON Schema files beside it.

Decoding validates everything the detector relies on and raises
:class:`~beatwatch.errors.InvalidBeat` with a reason otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from beatwatch.errors import InvalidBeat

CONTENT_TYPE_HEADER = "content-type"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/x-beatwatch-f32"
BINARY_PREFIX = struct.Struct("<QQBBH")  # seq, ts_ms, label, version, reserved
BINARY_VERSION = 1
NO_LABEL = 255
FORMATS = ("json", "binary")
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
MAX_INT64 = 2**63 - 1  # seq and ts_ms: the range of a signed 64-bit integer
MAX_STREAM_ID_CHARS = 128

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Beat:
    """One heartbeat from one stream.

    Attributes:
        stream: the stream id (a patient or a lead), also the message key.
        seq: per-stream beat number.
        ts_ms: beat time, epoch milliseconds.
        samples: the beat, float32, shape ``(length,)``.
        label: ground truth carried by replays (1 normal, 0 abnormal), never scored.
    """

    stream: str
    seq: int
    ts_ms: int
    samples: np.ndarray
    label: int | None = None


def encode(beat: Beat, fmt: str) -> tuple[bytes, bytes, Headers]:
    """Encode a beat as ``(key, value, headers)`` in ``fmt`` (``json`` or ``binary``)."""
    key = beat.stream.encode()
    if fmt == "json":
        body: dict[str, object] = {
            "stream": beat.stream,
            "seq": beat.seq,
            "ts_ms": beat.ts_ms,
            "samples": beat.samples.astype(np.float64).tolist(),
        }
        if beat.label is not None:
            body["label"] = beat.label
        return key, orjson.dumps(body), []
    if fmt == "binary":
        label = NO_LABEL if beat.label is None else beat.label
        prefix = BINARY_PREFIX.pack(beat.seq, beat.ts_ms, label, BINARY_VERSION, 0)
        value = prefix + beat.samples.astype("<f4").tobytes()
        return key, value, [(CONTENT_TYPE_HEADER, BINARY_CONTENT_TYPE.encode())]
    raise ValueError(f"unknown wire format {fmt!r}; choose from {', '.join(FORMATS)}")


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    *,
    expected_length: int,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Beat:
    """Decode and validate one message from the beats topic.

    Args:
        key: message key (the stream id), may be ``None`` for JSON.
        value: message value.
        headers: message headers.
        expected_length: samples the model takes.
        max_message_bytes: larger values are refused before parsing.

    Returns:
        The beat, with ``samples`` as float32.

    Raises:
        InvalidBeat: with reason ``empty``, ``too-large``, ``content-type``,
            ``decode``, ``schema``, ``missing-key``, ``length`` or ``non-finite``.
    """
    if not value:
        raise InvalidBeat("empty", "message has no value")
    if len(value) > max_message_bytes:
        raise InvalidBeat("too-large", f"{len(value)} bytes > limit {max_message_bytes}")
    content_type = _header(headers, CONTENT_TYPE_HEADER)
    if content_type is None or content_type.split(";")[0].strip() == JSON_CONTENT_TYPE:
        beat = _decode_json(key, value)
    elif content_type == BINARY_CONTENT_TYPE:
        beat = _decode_binary(key, value)
    else:
        raise InvalidBeat("content-type", f"unsupported content-type {content_type[:64]!r}")
    if beat.samples.shape[0] != expected_length:
        raise InvalidBeat(
            "length", f"{beat.samples.shape[0]} samples, model expects {expected_length}"
        )
    if not np.isfinite(beat.samples).all():
        raise InvalidBeat("non-finite", "samples contain NaN or infinity")
    return beat


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, raw in headers or ():
        if key.lower() == name:
            try:
                return raw.decode("ascii") if raw is not None else ""
            except UnicodeDecodeError:
                raise InvalidBeat("decode", f"header {name} is not ASCII") from None
    return None


def _int_field(body: dict[str, object], name: str) -> int:
    raw = body.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidBeat("schema", f"'{name}' must be an integer")
    if raw < 0:
        raise InvalidBeat("schema", f"'{name}' must be >= 0")
    if raw > MAX_INT64:
        # Alerts carry seq and ts_ms as JSON integers, which subscribers read as 64-bit.
        raise InvalidBeat("schema", f"'{name}' must be < 2**63")
    return raw


def _label(raw: object) -> int | None:
    if raw is None:
        return None
    if raw in (0, 1) and not isinstance(raw, bool):
        return int(raw)  # type: ignore[call-overload]
    raise InvalidBeat("schema", "'label' must be 0 or 1")


def _stream_id(text: str) -> str:
    if not text or len(text) > MAX_STREAM_ID_CHARS:
        raise InvalidBeat("schema", f"stream id must be 1-{MAX_STREAM_ID_CHARS} characters")
    return text


def _decode_json(key: bytes | None, value: bytes) -> Beat:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidBeat("decode", f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(body, dict):
        raise InvalidBeat("schema", "JSON value must be an object")
    stream = body.get("stream")
    if not isinstance(stream, str):
        raise InvalidBeat("schema", "'stream' must be a string")
    if key is not None and key != stream.encode():
        raise InvalidBeat("schema", "message key differs from 'stream'")
    samples_raw = body.get("samples")
    if not isinstance(samples_raw, list):
        raise InvalidBeat("schema", "'samples' must be an array of numbers")
    try:
        # Values beyond float32 become inf and are refused below as non-finite.
        with np.errstate(over="ignore"):
            samples = np.array(samples_raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidBeat("schema", "'samples' must be an array of numbers") from None
    # numpy reads null as NaN; a null is a wrong type (schema), not a non-finite sample.
    if samples.ndim != 1 or any(isinstance(x, bool) or x is None for x in samples_raw):
        raise InvalidBeat("schema", "'samples' must be a flat array of numbers")
    return Beat(
        stream=_stream_id(stream),
        seq=_int_field(body, "seq"),
        ts_ms=_int_field(body, "ts_ms"),
        samples=samples,
        label=_label(body.get("label")),
    )


def _decode_binary(key: bytes | None, value: bytes) -> Beat:
    if not key:
        raise InvalidBeat("missing-key", "binary beats carry the stream id in the key")
    try:
        stream = key.decode()
    except UnicodeDecodeError:
        raise InvalidBeat("decode", "key is not UTF-8") from None
    if len(value) < BINARY_PREFIX.size:
        raise InvalidBeat("length", f"{len(value)} bytes is shorter than the binary prefix")
    if (len(value) - BINARY_PREFIX.size) % 4:
        raise InvalidBeat("length", "samples are not a whole number of float32")
    seq, ts_ms, label, version, _ = BINARY_PREFIX.unpack_from(value)
    if version != BINARY_VERSION:
        raise InvalidBeat("schema", f"binary format version {version}, expected {BINARY_VERSION}")
    # seq and ts_ms travel on as 64-bit JSON integers in alerts.
    if seq > MAX_INT64 or ts_ms > MAX_INT64:
        raise InvalidBeat("schema", "seq and ts_ms must be in 0..2**63-1")
    return Beat(
        stream=_stream_id(stream),
        seq=seq,
        ts_ms=ts_ms,
        samples=np.frombuffer(value, dtype="<f4", offset=BINARY_PREFIX.size),
        label=None if label == NO_LABEL else _label(label),
    )
