"""A polled batch decoded at once: the per-beat numpy work done once for all its beats."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    DEFAULT_MAX_MESSAGE_BYTES,
    JSON_CONTENT_TYPE,
    MAX_INT64,
    NO_LABEL,
    Beat,
)
from beatwatch.wire.binary_codec import binary_dtype, rr_ok
from beatwatch.wire.codec import decode
from beatwatch.wire.fields import Extras, check_stream_id, header_value
from beatwatch.wire.json_codec import (
    json_beat_fields,
    json_sample_matrix,
    rows_with_non_numbers,
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
    json_fields: list[tuple[str, int, int, int | None, Extras]] = []
    json_samples: list[list[object]] = []
    one_by_one: list[int] = []
    binary_size = BINARY_PREFIX.size + 4 * expected_length
    extended_size = binary_size + BINARY_EXTENSION.size
    for position, message in enumerate(messages):
        key, value = message.key, message.value
        try:
            content_type = header_value(message.headers, CONTENT_TYPE_HEADER)
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
                    group[1].append(check_stream_id(key.decode()))
                    group[2].append(value)
                    group[0].append(position)
                else:
                    one_by_one.append(position)
            elif content_type is None or content_type.split(";")[0].strip() == JSON_CONTENT_TYPE:
                stream, seq, ts_ms, label, samples, extras = json_beat_fields(key, value)
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
            b"".join(binary_values), dtype=binary_dtype(expected_length, version)
        )
        ok = (
            (records["version"] == version)
            & (records["seq"] <= MAX_INT64)
            & (records["ts_ms"] <= MAX_INT64)
            & np.isin(records["label"], (0, 1, NO_LABEL))
            & np.isfinite(records["samples"]).all(axis=1)
        )
        if version == BINARY_VERSION_EXTENDED:
            ok &= rr_ok(records["rr_prev_ms"]) & rr_ok(records["rr_local_ms"])
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
            matrix = json_sample_matrix(json_samples)
        except InvalidBeat:  # some row holds a non-number: find it one by one
            one_by_one += json_rows
        else:
            ok = np.isfinite(matrix).all(axis=1)
            ok[rows_with_non_numbers(json_samples, matrix)] = False
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
