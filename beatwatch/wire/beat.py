"""The beat: one heartbeat of one stream, and the constants of its wire format."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

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
