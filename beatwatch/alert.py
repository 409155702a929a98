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


def worst_ranges(per_sample_error: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous sample ranges ``[start, end)`` where the error concentrates, worst first."""
    kernel = np.ones(SMOOTHING_SAMPLES) / SMOOTHING_SAMPLES
    smoothed = np.convolve(per_sample_error, kernel, mode="same")
    hot = smoothed >= np.quantile(smoothed, WORST_SAMPLE_QUANTILE)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], hot.astype(np.int8), [0]))))
    ranges = [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]
    ranges.sort(key=lambda r: -float(per_sample_error[r[0] : r[1]].sum()))
    return ranges[:MAX_RANGES]


def explain(per_sample_error: np.ndarray, regions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Say where the reconstruction failed.

    Args:
        per_sample_error: reconstruction error of each sample of one beat.
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive)
            from the artifact; may be empty for non-ECG data.

    Returns:
        ``{"summary": str, "worst_ranges": [...], "regions": [...]}``, regions
        sorted by their share of the total error.
    """
    total = float(per_sample_error.sum()) or 1.0
    ranges: list[dict[str, Any]] = [
        {"start": s, "end": e, "error_share": round(float(per_sample_error[s:e].sum()) / total, 3)}
        for s, e in worst_ranges(per_sample_error)
    ]
    shares: list[dict[str, Any]] = [
        {
            "name": str(r["name"]),
            "start": int(r["start"]),
            "end": int(r["end"]),
            "error_share": round(float(per_sample_error[r["start"] : r["end"]].sum()) / total, 3),
        }
        for r in regions
    ]
    shares.sort(key=lambda r: -float(r["error_share"]))
    where = ", ".join(f"samples {r['start']}-{r['end'] - 1}" for r in ranges)
    if shares:
        top = shares[0]
        summary = (
            f"reconstruction failed mostly in the {top['name']} region "
            f"({round(100 * top['error_share'])}% of the error); worst at {where}"
        )
    else:
        summary = f"reconstruction failed mostly at {where}"
    return {"summary": summary, "worst_ranges": ranges, "regions": shares}


def build_alert(
    beat: Beat,
    *,
    score: float,
    threshold: float,
    model_version: str,
    per_sample_error: np.ndarray,
    regions: Sequence[dict[str, Any]],
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
        "explanation": explain(per_sample_error, regions),
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
