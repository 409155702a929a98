"""Where replayed beats come from: a data set, a selection of its rows, stream ids.

Rows may be chosen by ranges (``0-99,200``) or taken from a model artifact's
recorded split (``models/ecg5000:test``), so the demo replays exactly the beats
the trainer held out and evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beatwatch.artifact_config import SplitRows
from beatwatch.errors import ArtifactError, ConfigError


@dataclass(frozen=True)
class ReplaySource:
    """Beats to replay, in order.

    Attributes:
        samples: ``(n, length)`` float32.
        labels: ``(n,)`` 1 normal / 0 abnormal, or None when the source has no labels.
        rows: the data set row of each beat.
    """

    samples: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray


def parse_row_ranges(spec: str, n_rows: int) -> np.ndarray:
    """Parse ``"0-99,200,300-310"`` (inclusive ranges) into row indices.

    Raises:
        ConfigError: malformed, or a row outside ``[0, n_rows)``.
    """
    rows: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
            else:
                first = last = int(part)
        except ValueError:
            raise ConfigError(f"--rows: cannot read {part!r}; use e.g. 0-99,200") from None
        # Checked before the range is built: 0-9999999999 must not fill memory first.
        for row in (first, last):
            if not 0 <= row < n_rows:
                raise ConfigError(f"--rows: row {row} is outside the data set (0-{n_rows - 1})")
        rows.extend(range(first, last + 1))
    if not rows:
        raise ConfigError("--rows selects no rows")
    return np.array(rows, dtype=np.int64)


def artifact_rows(spec: str) -> np.ndarray:
    """Rows recorded in an artifact: ``DIR`` or ``DIR:split`` (split: train, calibration, test).

    Raises:
        ConfigError: no artifact there, or it records no such split.
    """
    directory, _, split = spec.partition(":")
    split = split or "test"
    path = Path(directory) / "artifact.json"
    try:
        config = json.loads(path.read_text())
        recorded = SplitRows.from_json(config["data"]["rows"], str(path)).to_json()
    except FileNotFoundError:
        raise ConfigError(f"--rows-from: no artifact at {path}") from None
    except (KeyError, TypeError, json.JSONDecodeError, ArtifactError):
        recorded = {}
    if split not in recorded:
        raise ConfigError(f"--rows-from: {path} records no '{split}' rows")
    return np.array(recorded[split], dtype=np.int64)


def load_source(
    data: str | None,
    *,
    label_column: str,
    normal_label: float,
    rows: str | None = None,
    rows_from: str | None = None,
    only_normal: bool = False,
) -> ReplaySource:
    """Load the data set and select the rows to replay.

    Args:
        data: a CSV path, or None for ECG5000 (found or fetched by the loader).
        label_column: label column name or index (CSV only).
        normal_label: the label value of normal rows (CSV only).
        rows: row ranges to replay, or None for all.
        rows_from: ``DIR[:split]`` of an artifact whose recorded rows to replay.
        only_normal: keep only the selected rows labelled normal (a false-alarm soak).
    """
    from beatwatch.data import load_csv, load_ecg5000

    if rows_from and rows:
        raise ConfigError("give --rows or --rows-from, not both")
    if data is None:
        dataset = load_ecg5000()
    else:
        column: str | int = (
            int(label_column) if label_column.lstrip("-").isdigit() else label_column
        )
        dataset = load_csv(data, label_column=column, normal_label=normal_label)
    n_rows = int(dataset.x.shape[0])
    if rows_from:
        selected = artifact_rows(rows_from)
        if selected.size and int(selected.max()) >= n_rows:
            raise ConfigError(
                f"--rows-from: the artifact's rows do not fit this data ({n_rows} rows)"
            )
    elif rows:
        selected = parse_row_ranges(rows, n_rows)
    else:
        selected = np.arange(n_rows)
    if only_normal:
        selected = selected[dataset.normal[selected]]
        if selected.size == 0:
            raise ConfigError("--only-normal: the selected rows hold no normal beat")
    labels = dataset.normal[selected].astype(np.int64)
    return ReplaySource(samples=dataset.x[selected], labels=labels, rows=selected)


def stream_id(index: int) -> str:
    """The id of stream ``index``: ``p-0007``. Synthetic, never a patient identifier."""
    return f"p-{index:04d}"
