"""The alert contract: one JSON message per beat over threshold, and its explanation.

An alert's identity is ``(stream, seq, model_version)``, also given as
``alert_id``: at-least-once delivery may publish the same alert twice, and a
subscriber drops the repeat by that id. The explanation says where in the beat
the reconstruction failed, in sample ranges and named regions (P, QRS, ST, T)
that a clinician can read. The schema is ``docs/schemas/alert.schema.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def explain_batch(
    per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
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
    worst: list[list[dict[str, Any]]] = [[] for _ in range(rows)]
    run_shares = (run_sums[keep] / totals[run_rows[keep]]).round(3)
    for row, start, end, share in zip(
        run_rows[keep].tolist(), run_starts[keep].tolist(), run_ends[keep].tolist(),
        run_shares.tolist(), strict=True,
    ):  # fmt: skip
        worst[row].append({"start": start, "end": end, "error_share": share})

    names = [str(r["name"]) for r in regions]
    starts = np.array([int(r["start"]) for r in regions], dtype=np.int64)
    ends = np.array([min(int(r["end"]), length) for r in regions], dtype=np.int64)
    shares = ((prefix[:, ends] - prefix[:, starts]) / totals[:, None]).round(3)
    region_order = np.argsort(-shares, axis=1, kind="stable").tolist()
    shares_list, starts_list, ends_list = shares.tolist(), starts.tolist(), ends.tolist()

    explanations = []
    for row in range(rows):
        where = ", ".join(f"samples {w['start']}-{w['end'] - 1}" for w in worst[row])
        ranked = [
            {"name": names[i], "start": starts_list[i], "end": ends_list[i],
             "error_share": shares_list[row][i]}
            for i in region_order[row]
        ]  # fmt: skip
        if ranked:
            summary = (
                f"reconstruction failed mostly in the {ranked[0]['name']} region "
                f"({round(100 * ranked[0]['error_share'])}% of the error); worst at {where}"
            )
        else:
            summary = f"reconstruction failed mostly at {where}"
        explanations.append({"summary": summary, "worst_ranges": worst[row], "regions": ranked})
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
) -> dict[str, Any]:
    """Build the alert for one beat over threshold (see ``docs/schemas/alert.schema.json``)."""
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
