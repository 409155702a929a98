"""The alert contract: one JSON message per beat over threshold, and its explanation.

An alert's identity is ``(stream, seq, model_version)``, also given as
``alert_id``: at-least-once delivery may publish the same alert twice, and a
subscriber drops the repeat by that id. The explanation says where in the beat
the reconstruction failed, in sample ranges and named regions (P, QRS, ST, T)
that a clinician can read. The schema is ``docs/schemas/alert.schema.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from beatwatch.wire import Beat

# Samples whose smoothed error is in the top share form the "worst ranges".
WORST_SAMPLE_QUANTILE = 0.9
SMOOTHING_SAMPLES = 5
MAX_RANGES = 3


def alert_id(stream: str, seq: int, model_version: str) -> str:
    """The deterministic identity of an alert, for dropping duplicates."""
    return f"{stream}/{seq}/{model_version}"


@dataclass(frozen=True)
class Explained:
    """The numbers of a batch's explanations, before any per-beat object is built.

    Shares are integer thousandths (``error_share`` is ``k / 1000``): rounding
    them once for the batch gives the same value as rounding each to 3 places.
    """

    worst: list[list[tuple[int, int, int]]]  # per beat: (start, end, share‰), worst first
    region_order: list[list[int]]  # per beat: region indices, largest share first
    region_shares: list[list[int]]  # per beat, per region: share‰
    names: list[str]
    starts: list[int]
    ends: list[int]

    def top_region(self, row: int) -> str | None:
        """The name of the region with the largest share of beat ``row``'s error."""
        order = self.region_order[row]
        return self.names[order[0]] if order else None


def explain_numbers(per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]) -> Explained:
    """All numeric work of the explanations, once for the whole batch (see ``explain_batch``)."""
    """Say where the reconstruction failed, for each beat of a batch.

    All numeric work (smoothing, quantiles, run finding, region sums, sorting)
    is done once for the whole batch with numpy; only the small result dicts
    are built per beat, since a batch of abnormal beats may alert by thousands.

    Args:
        per_sample_error: ``(m, length)`` reconstruction error of each sample.
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive)
            from the artifact; may be empty for non-ECG data.

    Returns:
        Per beat ``{"summary": str, "worst_ranges": [...], "regions": [...]}``:
        up to three sample ranges where the error concentrates, worst first, and
        the regions sorted by their share of the beat's total error.
    """
    errors = np.asarray(per_sample_error, dtype=np.float64)
    rows, length = errors.shape
    totals = errors.sum(axis=1)
    totals[totals <= 0] = 1.0
    prefix = np.concatenate([np.zeros((rows, 1)), np.cumsum(errors, axis=1)], axis=1)
    # Centred moving average over SMOOTHING_SAMPLES, zero-padded like np.convolve "same".
    left = SMOOTHING_SAMPLES // 2
    padded = np.pad(prefix, ((0, 0), (left, SMOOTHING_SAMPLES - left)), mode="edge")
    smoothed = (padded[:, SMOOTHING_SAMPLES:] - padded[:, :-SMOOTHING_SAMPLES])[:, :length]
    hot = smoothed >= np.quantile(smoothed, WORST_SAMPLE_QUANTILE, axis=1, keepdims=True)
    # Runs of hot samples: +1 where a run starts, -1 where it ends (row-major order).
    steps = np.diff(np.pad(hot.view(np.int8), ((0, 0), (1, 1))), axis=1)
    run_rows, run_starts = np.nonzero(steps == 1)
    run_ends = np.nonzero(steps == -1)[1]
    run_sums = prefix[run_rows, run_ends] - prefix[run_rows, run_starts]
    order = np.lexsort((-run_sums, run_rows))
    rank = np.arange(order.size) - np.searchsorted(run_rows[order], run_rows[order])
    keep = order[rank < MAX_RANGES]
    worst: list[list[tuple[int, int, int]]] = [[] for _ in range(rows)]
    run_shares = _thousandths(run_sums[keep] / totals[run_rows[keep]])
    for row, start, end, share in zip(
        run_rows[keep].tolist(),
        run_starts[keep].tolist(),
        run_ends[keep].tolist(),
        run_shares.tolist(),
        strict=True,
    ):
        worst[row].append((start, end, share))

    starts = np.array([int(r["start"]) for r in regions], dtype=np.int64)
    ends = np.array([min(int(r["end"]), length) for r in regions], dtype=np.int64)
    shares = _thousandths((prefix[:, ends] - prefix[:, starts]) / totals[:, None])
    return Explained(
        worst=worst,
        region_order=np.argsort(-shares, axis=1, kind="stable").tolist(),
        region_shares=shares.tolist(),
        names=[str(r["name"]) for r in regions],
        starts=starts.tolist(),
        ends=ends.tolist(),
    )


def _thousandths(shares: np.ndarray) -> np.ndarray:
    """Shares as integer thousandths (``np.round(x, 3)`` is ``rint(x * 1000) / 1000``)."""
    thousandths: np.ndarray = np.rint(shares * 1000).astype(np.int64)
    return thousandths


def _share(thousandths: int) -> float:
    return thousandths / 1000


def _summary(name: str | None, percent: int, where: str) -> str:
    if name is None:
        return f"reconstruction failed mostly at {where}"
    return (
        f"reconstruction failed mostly in the {name} region ({percent}% of the error); "
        f"worst at {where}"
    )


def _where(worst: list[tuple[int, int, int]]) -> str:
    return ", ".join(f"samples {start}-{end - 1}" for start, end, _ in worst)


def explain_batch(
    per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Say where the reconstruction failed, for each beat of a batch.

    All numeric work (smoothing, quantiles, run finding, region sums, sorting)
    is done once for the whole batch with numpy; only the small result dicts
    are built per beat. The detector does not build them at all: it writes
    each alert's JSON directly with :func:`encode_alerts`.

    Args:
        per_sample_error: ``(m, length)`` reconstruction error of each sample.
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive)
            from the artifact; may be empty for non-ECG data.

    Returns:
        Per beat ``{"summary": str, "worst_ranges": [...], "regions": [...]}``:
        up to three sample ranges where the error concentrates, worst first, and
        the regions sorted by their share of the beat's total error.
    """
    ex = explain_numbers(per_sample_error, regions)
    explanations = []
    for row, worst in enumerate(ex.worst):
        shares = ex.region_shares[row]
        ranked = [
            {
                "name": ex.names[i],
                "start": ex.starts[i],
                "end": ex.ends[i],
                "error_share": _share(shares[i]),
            }
            for i in ex.region_order[row]
        ]
        top = ex.region_order[row][0] if ranked else None
        summary = _summary(
            None if top is None else ex.names[top],
            0 if top is None else round(100 * _share(shares[top])),
            _where(worst),
        )
        explanations.append(
            {
                "summary": summary,
                "worst_ranges": [
                    {"start": start, "end": end, "error_share": _share(share)}
                    for start, end, share in worst
                ],
                "regions": ranked,
            }
        )
    return explanations


def explain(per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Explain one beat (see :func:`explain_batch`)."""
    return explain_batch(np.asarray(per_sample_error)[None, :], regions)[0]


def build_alert(
    beat: Beat,
    *,
    score: float,
    threshold: float,
    model_version: str,
    explanation: dict[str, Any],
    topic: str,
    partition: int,
    offset: int,
    detected_ts_ms: int,
    p_value: float | None = None,
    kind: str | None = None,
    learning: bool | None = None,
) -> dict[str, Any]:
    """Build the alert for one beat over threshold (see ``docs/schemas/alert.schema.json``).

    ``kind`` (``"V"`` or ``"S"``) and ``learning`` are given by a patient-adaptive
    model only (``beatwatch.patient``); other alerts do not carry them.
    """
    alert: dict[str, Any] = {
        "alert_id": alert_id(beat.stream, beat.seq, model_version),
        "stream": beat.stream,
        "seq": beat.seq,
        "ts_ms": beat.ts_ms,
        "detected_ts_ms": detected_ts_ms,
        "score": score,
        "threshold": threshold,
        "score_ratio": score / threshold if threshold > 0 else None,
        "model_version": model_version,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "explanation": explanation,
    }
    if p_value is not None:
        alert["p_value"] = p_value
    if kind is not None:
        alert["kind"] = kind
    if learning is not None:
        alert["learning"] = learning
    if beat.label is not None:
        alert["label"] = beat.label
    return alert


def encode_alert(alert: dict[str, Any]) -> bytes:
    """Serialise an alert as UTF-8 JSON."""
    return orjson.dumps(alert, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_alert(value: bytes) -> dict[str, Any]:
    """Parse an alert message value."""
    parsed: dict[str, Any] = orjson.loads(value)
    return parsed


def _json_string(text: str) -> str:
    """``text`` as a JSON string literal, quotes included."""
    return orjson.dumps(text).decode()


def _number(value: float) -> str:
    """A finite float as JSON: Python's shortest round-trip digits (``1e-05`` is valid JSON)."""
    return repr(value)


# Every share in thousandths (0..1000): its JSON text, and its rounded percentage.
_SHARE_TEXT = [_number(_share(k)) for k in range(1001)]
_PERCENT = [round(100 * _share(k)) for k in range(1001)]


def encode_alerts(
    *,
    streams: Sequence[str],
    seqs: Sequence[int],
    ts_ms: Sequence[int],
    labels: Sequence[int | None],
    scores: Sequence[float],
    p_values: Sequence[float] | None,
    explained: Explained,
    threshold: float,
    model_version: str,
    topics: Sequence[str],
    partitions: Sequence[int],
    offsets: Sequence[int],
    detected_ts_ms: int,
    kinds: Sequence[str] | None = None,
    learning: Sequence[bool] | None = None,
) -> list[bytes]:
    """The alert messages of a batch, written as JSON directly from the batch's columns.

    The same alerts as ``encode_alert(build_alert(..., explanation=explain(...)))``
    beat by beat (equal once parsed), without building a dict per alert, its
    explanation's dicts, or serialising them: the numeric work is done once
    for the batch, what is constant for the batch is written once, and each
    alert is one string template (measured: about a fifth of the per-alert
    cost of building and serialising dicts).

    Args:
        streams: stream id of each beat over threshold.
        seqs: seq of each.
        ts_ms: beat time of each.
        labels: label of each (None: not in the alert).
        scores: finite score of each.
        p_values: p-value of each, or None when the model has no calibration.
        explained: :func:`explain_numbers` of their reconstruction errors.
        threshold: the model's threshold.
        model_version: the model's version.
        topics: source topic of each.
        partitions: source partition of each.
        offsets: source offset of each.
        detected_ts_ms: the detection time.
        kinds: alert kind of each (``"V"``, ``"S"``), from a patient-adaptive model only.
        learning: whether each was scored while its stream was still learning
            (patient-adaptive model only).
    """
    ex = explained
    version = _json_string(model_version)[1:-1]
    head = f'"threshold":{_number(threshold)},'
    tail = f'"model_version":"{version}","topic":'
    names = [_json_string(name)[1:-1] for name in ex.names]
    region_heads = [
        f'{{"name":"{names[i]}","start":{ex.starts[i]},"end":{ex.ends[i]},"error_share":'
        for i in range(len(names))
    ]
    share_text, percent = _SHARE_TEXT, _PERCENT
    escaped: dict[str, str] = {}
    out = []
    for row, stream in enumerate(streams):
        name = escaped.get(stream)
        if name is None:
            name = escaped[stream] = _json_string(stream)[1:-1]
        topic = escaped.get(topics[row])
        if topic is None:
            topic = escaped[topics[row]] = _json_string(topics[row])[1:-1]
        score = float(scores[row])
        ratio = _number(score / threshold) if threshold > 0 else "null"
        shares = ex.region_shares[row]
        order = ex.region_order[row]
        worst = ex.worst[row]
        summary = _summary(
            names[order[0]] if order else None,
            percent[shares[order[0]]] if order else 0,
            _where(worst),
        )
        worst_json = ",".join(
            f'{{"start":{start},"end":{end},"error_share":{share_text[share]}}}'
            for start, end, share in worst
        )
        regions_json = ",".join(f"{region_heads[i]}{share_text[shares[i]]}}}" for i in order)
        seq = seqs[row]
        extra = ""
        if p_values is not None:
            extra += f',"p_value":{_number(float(p_values[row]))}'
        if kinds is not None:
            extra += f',"kind":{_json_string(kinds[row])}'
        if learning is not None:
            extra += ',"learning":true' if learning[row] else ',"learning":false'
        label = labels[row]
        if label is not None:
            extra += f',"label":{int(label)}'
        out.append(
            f'{{"alert_id":"{name}/{seq}/{version}","stream":"{name}","seq":{seq},'
            f'"ts_ms":{ts_ms[row]},"detected_ts_ms":{detected_ts_ms},"score":{_number(score)},'
            f'{head}"score_ratio":{ratio},{tail}"{topic}","partition":{partitions[row]},'
            f'"offset":{offsets[row]},'
            f'"explanation":{{"summary":"{summary}","worst_ranges":[{worst_json}],'
            f'"regions":[{regions_json}]}}{extra}}}'.encode()
        )
    return out
