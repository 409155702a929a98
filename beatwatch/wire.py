"""The beat wire format: JSON (interoperable default) and compact binary float32.

JSON value (UTF-8)::

    {"stream": "p-0007", "seq": 1234, "ts_ms": 1763822400123,
     "samples": [...], "label": 1}

Beats cut from a continuous recording may also carry ``rr_prev_ms`` and
``rr_local_ms`` (rhythm context) and ``beat_class`` (the reference AAMI class,
N S V F Q, of a replayed annotated record; never used for scoring).

Binary value (header ``content-type: application/x-beatwatch-f32``; the key
is the stream id): a 20-byte little-endian prefix ``seq u64, ts_ms u64,
label u8 (0, 1, 255 = none), version u8 (1), reserved u16 (0)``, then the
samples as little-endian float32. A beat with rhythm context or a class is
written as version 2: the same prefix (version 2), then 24 more bytes
``rr_prev_ms f64, rr_local_ms f64 (NaN = none), beat_class u8 (0 none, 1-5 =
N S V F Q), reserved 7 bytes (0)``, then the samples; beats without them stay
version 1, byte for byte. The metadata sits in the value, not in
headers, because kafka-python parses headers in pure Python: four headers per
message measured 31 us/message to consume against 14 us with one header and
the prefix. A message without a ``content-type`` header, or with
``application/json``, is JSON. The full specification is ``docs/wire-format.md``
and the JSON Schema files beside it.

Decoding validates everything the detector relies on and raises
:class:`~beatwatch.errors.InvalidBeat` with a reason otherwise. ``decode`` is
that rule for one message; ``decode_batch`` applies it to a polled batch with
the per-beat numpy work done once for the whole batch, and hands anything it
cannot vouch for to ``decode``, so both always agree on every message.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson

from beatwatch.errors import InvalidBeat

CONTENT_TYPE_HEADER = "content-type"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/x-beatwatch-f32"
BINARY_PREFIX = struct.Struct("<QQBBH")  # seq, ts_ms, label, version, reserved
BINARY_VERSION = 1
# Version 2 adds rhythm context and the reference class after the version-1 prefix.
BINARY_VERSION_EXTENDED = 2
# float64: the RR intervals arrive exactly as they were computed, in JSON and
# binary alike, so a live scorer sees the very values an offline evaluation does.
BINARY_EXTENSION = struct.Struct("<ddB7x")  # rr_prev_ms, rr_local_ms, beat_class
BEAT_CLASSES = ("N", "S", "V", "F", "Q")  # AAMI classes; binary code = position + 1
MAX_RR_MS = 60_000.0  # an RR interval beyond a minute is not a heart rhythm
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
        rr_prev_ms: interval from the previous R peak of the stream (recordings only).
        rr_local_ms: the stream's local RR interval before this beat (recordings only).
        beat_class: reference AAMI class (N, S, V, F, Q) of an annotated replay, never scored.
    """

    stream: str
    seq: int
    ts_ms: int
    samples: np.ndarray
    label: int | None = None
    rr_prev_ms: float | None = None
    rr_local_ms: float | None = None
    beat_class: str | None = None

    @property
    def extended(self) -> bool:
        """Whether the beat carries any field beyond the version-1 ones."""
        return (
            self.rr_prev_ms is not None
            or self.rr_local_ms is not None
            or self.beat_class is not None
        )


def encode(beat: Beat, fmt: str) -> tuple[bytes, bytes, Headers]:
    """Encode a beat as ``(key, value, headers)`` in ``fmt`` (``json`` or ``binary``)."""
    key = beat.stream.encode()
    if fmt == "json":
        body: dict[str, object] = {
            "stream": beat.stream,
            "seq": beat.seq,
            "ts_ms": beat.ts_ms,
            # Each float32 as the shortest decimal that reads back as the same
            # float32 (orjson's numpy path), not as its float64 expansion: 1.6
            # instead of 2.8 kB per ECG5000 beat, with the same values decoded.
            "samples": np.ascontiguousarray(beat.samples, dtype=np.float32),
        }
        if beat.label is not None:
            body["label"] = beat.label
        if beat.rr_prev_ms is not None:
            body["rr_prev_ms"] = float(beat.rr_prev_ms)
        if beat.rr_local_ms is not None:
            body["rr_local_ms"] = float(beat.rr_local_ms)
        if beat.beat_class is not None:
            body["beat_class"] = beat.beat_class
        return key, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), []
    if fmt == "binary":
        label = NO_LABEL if beat.label is None else beat.label
        if beat.extended:
            prefix = BINARY_PREFIX.pack(beat.seq, beat.ts_ms, label, BINARY_VERSION_EXTENDED, 0)
            prefix += BINARY_EXTENSION.pack(
                math.nan if beat.rr_prev_ms is None else beat.rr_prev_ms,
                math.nan if beat.rr_local_ms is None else beat.rr_local_ms,
                0 if beat.beat_class is None else BEAT_CLASSES.index(beat.beat_class) + 1,
            )
        else:
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


def _rr_ms(raw: object, name: str) -> float | None:
    """An optional RR interval: a finite number of milliseconds in [0, MAX_RR_MS]."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidBeat("schema", f"'{name}' must be a number")
    value = float(raw)
    if not 0.0 <= value <= MAX_RR_MS:  # also refuses NaN
        raise InvalidBeat("schema", f"'{name}' must be in 0..{MAX_RR_MS:.0f} ms")
    return value


def _beat_class(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in BEAT_CLASSES:
        return raw
    raise InvalidBeat("schema", f"'beat_class' must be one of {', '.join(BEAT_CLASSES)}")


def _extras(body: dict[str, object]) -> tuple[float | None, float | None, str | None]:
    """The optional recording fields of a JSON beat, validated."""
    return (
        _rr_ms(body.get("rr_prev_ms"), "rr_prev_ms"),
        _rr_ms(body.get("rr_local_ms"), "rr_local_ms"),
        _beat_class(body.get("beat_class")),
    )


def _stream_id(text: str) -> str:
    if not text or len(text) > MAX_STREAM_ID_CHARS:
        raise InvalidBeat("schema", f"stream id must be 1-{MAX_STREAM_ID_CHARS} characters")
    return text


_Extras = tuple[float | None, float | None, str | None]
_NO_EXTRAS: _Extras = (None, None, None)


def _json_fields(
    key: bytes | None, value: bytes
) -> tuple[str, int, int, int | None, list[object], _Extras]:
    """Parse a JSON beat and validate everything except the sample values.

    Returns:
        ``(stream, seq, ts_ms, label, samples, (rr_prev_ms, rr_local_ms, beat_class))``
        with ``samples`` still a list.
    """
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
    samples = body.get("samples")
    if not isinstance(samples, list):
        raise InvalidBeat("schema", "'samples' must be an array of numbers")
    return (
        _stream_id(stream),
        _int_field(body, "seq"),
        _int_field(body, "ts_ms"),
        _label(body.get("label")),
        samples,
        _extras(body),
    )


def _json_sample_matrix(rows: list[list[object]]) -> np.ndarray:
    """Convert JSON sample lists of one length to float32 ``(n, length)``.

    Raises:
        InvalidBeat: ``schema`` when any row holds something other than numbers.
    """
    try:
        # Values beyond float32 become inf and are refused later as non-finite.
        with np.errstate(over="ignore"):
            matrix = np.array(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidBeat("schema", "'samples' must be an array of numbers") from None
    if matrix.ndim != 2:
        raise InvalidBeat("schema", "'samples' must be a flat array of numbers")
    return matrix


def _rows_with_non_numbers(rows: list[list[object]], matrix: np.ndarray) -> list[int]:
    """Rows holding ``true``, ``false`` or ``null``, which numpy reads as 1, 0 and NaN.

    Only rows with a sample exactly 0, 1 or NaN can hide one, so the exact
    (slow, per-element) check runs on those rows alone.
    """
    suspect = ((matrix == 0) | (matrix == 1) | np.isnan(matrix)).any(axis=1)
    return [
        int(row)
        for row in np.flatnonzero(suspect)
        if any(isinstance(x, bool) or x is None for x in rows[row])
    ]


def _decode_json(key: bytes | None, value: bytes) -> Beat:
    stream, seq, ts_ms, label, samples, (rr_prev, rr_local, beat_class) = _json_fields(key, value)
    matrix = _json_sample_matrix([samples])
    if _rows_with_non_numbers([samples], matrix):
        raise InvalidBeat("schema", "'samples' must be a flat array of numbers")
    return Beat(
        stream=stream,
        seq=seq,
        ts_ms=ts_ms,
        samples=matrix[0],
        label=label,
        rr_prev_ms=rr_prev,
        rr_local_ms=rr_local,
        beat_class=beat_class,
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
    # The version-2 extension is 24 bytes, so this holds for both layouts.
    if (len(value) - BINARY_PREFIX.size) % 4:
        raise InvalidBeat("length", "samples are not a whole number of float32")
    seq, ts_ms, label, version, _ = BINARY_PREFIX.unpack_from(value)
    if version not in (BINARY_VERSION, BINARY_VERSION_EXTENDED):
        raise InvalidBeat(
            "schema",
            f"binary format version {version}, expected {BINARY_VERSION} "
            f"or {BINARY_VERSION_EXTENDED}",
        )
    offset = BINARY_PREFIX.size
    extras = _NO_EXTRAS
    if version == BINARY_VERSION_EXTENDED:
        offset += BINARY_EXTENSION.size
        if len(value) < offset:
            raise InvalidBeat("length", f"{len(value)} bytes is shorter than the version-2 prefix")
        extras = _binary_extras(*BINARY_EXTENSION.unpack_from(value, BINARY_PREFIX.size))
    # seq and ts_ms travel on as 64-bit JSON integers in alerts.
    if seq > MAX_INT64 or ts_ms > MAX_INT64:
        raise InvalidBeat("schema", "seq and ts_ms must be in 0..2**63-1")
    return Beat(
        stream=_stream_id(stream),
        seq=seq,
        ts_ms=ts_ms,
        samples=np.frombuffer(value, dtype="<f4", offset=offset),
        label=None if label == NO_LABEL else _label(label),
        rr_prev_ms=extras[0],
        rr_local_ms=extras[1],
        beat_class=extras[2],
    )


def _binary_extras(rr_prev: float, rr_local: float, code: int) -> _Extras:
    """The version-2 fields: NaN is an absent RR interval, class code 0 an absent class."""
    if code > len(BEAT_CLASSES):
        raise InvalidBeat("schema", f"beat_class code {code} is not 0-{len(BEAT_CLASSES)}")
    return (
        None if math.isnan(rr_prev) else _rr_ms(rr_prev, "rr_prev_ms"),
        None if math.isnan(rr_local) else _rr_ms(rr_local, "rr_local_ms"),
        None if code == 0 else BEAT_CLASSES[code - 1],
    )


class Message(Protocol):
    """What decoding needs of a consumed message (kafka-python's ConsumerRecord has it)."""

    @property
    def key(self) -> bytes | None: ...  # noqa: D102
    @property
    def value(self) -> bytes | None: ...  # noqa: D102
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...  # noqa: D102


@dataclass(frozen=True)
class DecodedBatch:
    """The outcome of decoding a batch: valid beats as columns, refusals with their error.

    Attributes:
        index: position in the input of each valid beat, ascending.
        streams: stream id of each valid beat.
        seqs: seq of each valid beat.
        ts_ms: ``ts_ms`` of each valid beat, int64.
        labels: label of each valid beat (None when absent).
        samples: ``(n, length)`` float32, one row per valid beat.
        rejected: ``(position, error)`` of each refused message; the error is an
            :class:`~beatwatch.errors.InvalidBeat`, or whatever else ``decode``
            raised on input nobody foresaw.
        rr_prev_ms: ``rr_prev_ms`` of each valid beat, float64, NaN when absent.
        rr_local_ms: ``rr_local_ms`` of each valid beat, float64, NaN when absent.
        beat_classes: ``beat_class`` of each valid beat (None when absent).
    """

    index: list[int]
    streams: list[str]
    seqs: list[int]
    ts_ms: np.ndarray
    labels: list[int | None]
    samples: np.ndarray
    rejected: list[tuple[int, Exception]]
    rr_prev_ms: np.ndarray | None = None
    rr_local_ms: np.ndarray | None = None
    beat_classes: list[str | None] | None = None

    def beat(self, row: int) -> Beat:
        """The valid beat in ``row`` as a :class:`Beat`."""
        return Beat(
            stream=self.streams[row],
            seq=self.seqs[row],
            ts_ms=int(self.ts_ms[row]),
            samples=self.samples[row],
            label=self.labels[row],
            rr_prev_ms=_optional_float(self.rr_prev_ms, row),
            rr_local_ms=_optional_float(self.rr_local_ms, row),
            beat_class=None if self.beat_classes is None else self.beat_classes[row],
        )


def _optional_float(values: np.ndarray | None, row: int) -> float | None:
    if values is None or math.isnan(values[row]):
        return None
    return float(values[row])


def _binary_dtype(length: int, version: int = BINARY_VERSION) -> np.dtype:
    """One binary beat as a numpy record: the prefix fields, then the samples."""
    extension = (
        [("rr_prev_ms", "<f8"), ("rr_local_ms", "<f8"), ("beat_class", "u1"), ("pad", "V7")]
        if version == BINARY_VERSION_EXTENDED
        else []
    )
    return np.dtype(
        [
            ("seq", "<u8"),
            ("ts_ms", "<u8"),
            ("label", "u1"),
            ("version", "u1"),
            ("reserved", "<u2"),
            *extension,
            ("samples", "<f4", (length,)),
        ]
    )


def _rr_ok(values: np.ndarray) -> np.ndarray:
    """Binary RR fields a batch may take without a closer look: NaN (absent) or in range."""
    ok: np.ndarray = np.isnan(values) | ((values >= 0) & (values <= MAX_RR_MS))
    return ok


def decode_batch(
    messages: Sequence[Message],
    *,
    expected_length: int,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> DecodedBatch:
    """Decode and validate a batch of messages, with the same verdicts as :func:`decode`.

    Per message only the cheap checks run in Python (content type, key, size,
    the JSON fields); parsing the samples, the prefix fields and the finiteness
    checks run once per batch in numpy: 1.9 us per binary beat instead of 8.9,
    and 14 us per JSON beat instead of 37 (1000 ECG5000 beats).
    Every message these fast paths do not accept outright goes through
    :func:`decode`, which names the reason.
    """
    # Binary beats by layout version: rows, stream ids, values.
    binary: dict[int, tuple[list[int], list[str], list[bytes]]] = {
        BINARY_VERSION: ([], [], []),
        BINARY_VERSION_EXTENDED: ([], [], []),
    }
    json_rows: list[int] = []
    json_fields: list[tuple[str, int, int, int | None, _Extras]] = []
    json_samples: list[list[object]] = []
    one_by_one: list[int] = []
    binary_size = BINARY_PREFIX.size + 4 * expected_length
    extended_size = binary_size + BINARY_EXTENSION.size
    for position, message in enumerate(messages):
        key, value = message.key, message.value
        try:
            content_type = _header(message.headers, CONTENT_TYPE_HEADER)
            if not value or len(value) > max_message_bytes:
                one_by_one.append(position)
            elif content_type == BINARY_CONTENT_TYPE:
                version = (
                    BINARY_VERSION
                    if len(value) == binary_size
                    else (BINARY_VERSION_EXTENDED if len(value) == extended_size else 0)
                )
                if key and version:
                    group = binary[version]
                    group[1].append(_stream_id(key.decode()))
                    group[2].append(value)
                    group[0].append(position)
                else:
                    one_by_one.append(position)
            elif content_type is None or content_type.split(";")[0].strip() == JSON_CONTENT_TYPE:
                stream, seq, ts_ms, label, samples, extras = _json_fields(key, value)
                if len(samples) == expected_length:
                    json_fields.append((stream, seq, ts_ms, label, extras))
                    json_samples.append(samples)
                    json_rows.append(position)
                else:
                    one_by_one.append(position)
            else:
                one_by_one.append(position)
        except Exception:  # whatever is wrong, decode() says it precisely
            one_by_one.append(position)

    rows: list[int] = []
    streams: list[str] = []
    seqs: list[int] = []
    times: list[int] = []
    labels: list[int | None] = []
    rr_prev: list[float] = []
    rr_local: list[float] = []
    classes: list[str | None] = []
    blocks: list[np.ndarray] = []

    for version, (binary_rows, binary_streams, binary_values) in binary.items():
        if not binary_rows:
            continue
        records = np.frombuffer(
            b"".join(binary_values), dtype=_binary_dtype(expected_length, version)
        )
        ok = (
            (records["version"] == version)
            & (records["seq"] <= MAX_INT64)
            & (records["ts_ms"] <= MAX_INT64)
            & np.isin(records["label"], (0, 1, NO_LABEL))
            & np.isfinite(records["samples"]).all(axis=1)
        )
        if version == BINARY_VERSION_EXTENDED:
            ok &= _rr_ok(records["rr_prev_ms"]) & _rr_ok(records["rr_local_ms"])
            ok &= records["beat_class"] <= len(BEAT_CLASSES)
        keep = np.flatnonzero(ok)
        one_by_one += [binary_rows[i] for i in np.flatnonzero(~ok)]
        rows += [binary_rows[i] for i in keep]
        streams += [binary_streams[i] for i in keep]
        seqs += records["seq"][keep].tolist()
        times += records["ts_ms"][keep].tolist()
        labels += [None if x == NO_LABEL else x for x in records["label"][keep].tolist()]
        if version == BINARY_VERSION_EXTENDED:
            rr_prev += records["rr_prev_ms"][keep].astype(np.float64).tolist()
            rr_local += records["rr_local_ms"][keep].astype(np.float64).tolist()
            classes += [
                None if code == 0 else BEAT_CLASSES[code - 1]
                for code in records["beat_class"][keep].tolist()
            ]
        else:
            rr_prev += [math.nan] * keep.size
            rr_local += [math.nan] * keep.size
            classes += [None] * keep.size
        blocks.append(records["samples"][keep])

    if json_rows:
        try:
            matrix = _json_sample_matrix(json_samples)
        except InvalidBeat:  # some row holds a non-number: find it one by one
            one_by_one += json_rows
        else:
            ok = np.isfinite(matrix).all(axis=1)
            ok[_rows_with_non_numbers(json_samples, matrix)] = False
            keep = np.flatnonzero(ok)
            one_by_one += [json_rows[i] for i in np.flatnonzero(~ok)]
            for i in keep.tolist():
                stream, seq, ts_ms, label, extras = json_fields[i]
                rows.append(json_rows[i])
                streams.append(stream)
                seqs.append(seq)
                times.append(ts_ms)
                labels.append(label)
                rr_prev.append(math.nan if extras[0] is None else extras[0])
                rr_local.append(math.nan if extras[1] is None else extras[1])
                classes.append(extras[2])
            blocks.append(matrix[keep])

    rejected: list[tuple[int, Exception]] = []
    for position in one_by_one:
        message = messages[position]
        try:
            beat = decode(
                message.key,
                message.value,
                message.headers,
                expected_length=expected_length,
                max_message_bytes=max_message_bytes,
            )
        except Exception as exc:
            rejected.append((position, exc))
            continue
        rows.append(position)
        streams.append(beat.stream)
        seqs.append(beat.seq)
        times.append(beat.ts_ms)
        labels.append(beat.label)
        rr_prev.append(math.nan if beat.rr_prev_ms is None else beat.rr_prev_ms)
        rr_local.append(math.nan if beat.rr_local_ms is None else beat.rr_local_ms)
        classes.append(beat.beat_class)
        blocks.append(beat.samples[None, :])

    # Back to input order: a stream's alerts must leave in its beats' order.
    order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")
    sample_matrix = (
        np.concatenate(blocks)[order]
        if blocks
        else np.zeros((0, expected_length), dtype=np.float32)
    )
    return DecodedBatch(
        index=[rows[i] for i in order],
        streams=[streams[i] for i in order],
        seqs=[seqs[i] for i in order],
        ts_ms=np.asarray(times, dtype=np.int64)[order],
        labels=[labels[i] for i in order],
        samples=sample_matrix,
        rejected=sorted(rejected, key=lambda item: item[0]),
        rr_prev_ms=np.asarray(rr_prev, dtype=np.float64)[order],
        rr_local_ms=np.asarray(rr_local, dtype=np.float64)[order],
        beat_classes=[classes[i] for i in order],
    )
