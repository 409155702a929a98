"""The binary beat: a little-endian prefix, then float32 samples (versions 1 and 2)."""

from __future__ import annotations

import math

import numpy as np

from beatwatch.errors import InvalidBeat
from beatwatch.wire.beat import (
    BEAT_CLASSES,
    BINARY_CONTENT_TYPE,
    BINARY_EXTENSION,
    BINARY_PREFIX,
    BINARY_VERSION,
    BINARY_VERSION_EXTENDED,
    CONTENT_TYPE_HEADER,
    MAX_INT64,
    MAX_RR_MS,
    NO_LABEL,
    Beat,
    Headers,
)
from beatwatch.wire.fields import NO_EXTRAS, Extras, check_label, check_rr_ms, check_stream_id


def encode_binary(beat: Beat) -> tuple[bytes, bytes, Headers]:
    """A beat as a binary message ``(key, value, headers)``: version 1, or 2 with extras."""
    key = beat.stream.encode()
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


def decode_binary(key: bytes | None, value: bytes) -> Beat:
    """Decode a binary beat (version 1 or 2); the caller checks length and finiteness."""
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
    extras = NO_EXTRAS
    if version == BINARY_VERSION_EXTENDED:
        offset += BINARY_EXTENSION.size
        if len(value) < offset:
            raise InvalidBeat("length", f"{len(value)} bytes is shorter than the version-2 prefix")
        extras = binary_extras(*BINARY_EXTENSION.unpack_from(value, BINARY_PREFIX.size))
    # seq and ts_ms travel on as 64-bit JSON integers in alerts.
    if seq > MAX_INT64 or ts_ms > MAX_INT64:
        raise InvalidBeat("schema", "seq and ts_ms must be in 0..2**63-1")
    return Beat(
        stream=check_stream_id(stream),
        seq=seq,
        ts_ms=ts_ms,
        samples=np.frombuffer(value, dtype="<f4", offset=offset),
        label=None if label == NO_LABEL else check_label(label),
        rr_prev_ms=extras[0],
        rr_local_ms=extras[1],
        beat_class=extras[2],
    )


def binary_extras(rr_prev: float, rr_local: float, code: int) -> Extras:
    """The version-2 fields: NaN is an absent RR interval, class code 0 an absent class."""
    if code > len(BEAT_CLASSES):
        raise InvalidBeat("schema", f"beat_class code {code} is not 0-{len(BEAT_CLASSES)}")
    return (
        None if math.isnan(rr_prev) else check_rr_ms(rr_prev, "rr_prev_ms"),
        None if math.isnan(rr_local) else check_rr_ms(rr_local, "rr_local_ms"),
        None if code == 0 else BEAT_CLASSES[code - 1],
    )


def binary_dtype(length: int, version: int = BINARY_VERSION) -> np.dtype:
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


def rr_ok(values: np.ndarray) -> np.ndarray:
    """Binary RR fields a batch may take without a closer look: NaN (absent) or in range."""
    ok: np.ndarray = np.isnan(values) | ((values >= 0) & (values <= MAX_RR_MS))
    return ok
