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

Modules: ``beat`` (the :class:`Beat` and the format's constants), ``fields``
(checks of single fields), ``json_codec`` and ``binary_codec`` (one format
each), ``codec`` (``encode`` and ``decode`` of one message) and ``batch``
(``decode_batch``). Import the names from ``beatwatch.wire``.
"""

from beatwatch.wire.batch import DecodedBatch, Message, decode_batch
from beatwatch.wire.beat import (
    BEAT_CLASSES,
    BINARY_CONTENT_TYPE,
    BINARY_EXTENSION,
    BINARY_PREFIX,
    BINARY_VERSION,
    BINARY_VERSION_EXTENDED,
    CONTENT_TYPE_HEADER,
    DEFAULT_MAX_MESSAGE_BYTES,
    FORMATS,
    JSON_CONTENT_TYPE,
    MAX_INT64,
    MAX_RR_MS,
    MAX_STREAM_ID_CHARS,
    NO_LABEL,
    Beat,
    Headers,
)
from beatwatch.wire.codec import decode, encode

__all__ = [
    "BEAT_CLASSES",
    "BINARY_CONTENT_TYPE",
    "BINARY_EXTENSION",
    "BINARY_PREFIX",
    "BINARY_VERSION",
    "BINARY_VERSION_EXTENDED",
    "CONTENT_TYPE_HEADER",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FORMATS",
    "JSON_CONTENT_TYPE",
    "MAX_INT64",
    "MAX_RR_MS",
    "MAX_STREAM_ID_CHARS",
    "NO_LABEL",
    "Beat",
    "DecodedBatch",
    "Headers",
    "Message",
    "decode",
    "decode_batch",
    "encode",
]
