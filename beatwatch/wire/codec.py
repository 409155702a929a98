"""One message: encode a beat in a format, decode and validate whatever arrives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from beatwatch.errors import InvalidBeat
from beatwatch.wire.beat import (
    BINARY_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DEFAULT_MAX_MESSAGE_BYTES,
    FORMATS,
    JSON_CONTENT_TYPE,
    Beat,
    Headers,
)
from beatwatch.wire.binary_codec import decode_binary, encode_binary
from beatwatch.wire.fields import header_value
from beatwatch.wire.json_codec import decode_json, encode_json


def encode(beat: Beat, fmt: str) -> tuple[bytes, bytes, Headers]:
    """Encode a beat as ``(key, value, headers)`` in ``fmt`` (``json`` or ``binary``)."""
    if fmt == "json":
        return encode_json(beat)
    if fmt == "binary":
        return encode_binary(beat)
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
    content_type = header_value(headers, CONTENT_TYPE_HEADER)
    if content_type is None or content_type.split(";")[0].strip() == JSON_CONTENT_TYPE:
        beat = decode_json(key, value)
    elif content_type == BINARY_CONTENT_TYPE:
        beat = decode_binary(key, value)
    else:
        raise InvalidBeat("content-type", f"unsupported content-type {content_type[:64]!r}")
    if beat.samples.shape[0] != expected_length:
        raise InvalidBeat(
            "length", f"{beat.samples.shape[0]} samples, model expects {expected_length}"
        )
    if not np.isfinite(beat.samples).all():
        raise InvalidBeat("non-finite", "samples contain NaN or infinity")
    return beat
