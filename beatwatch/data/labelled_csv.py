"""Any labelled CSV: :func:`load_csv` and the :class:`Dataset` every loader returns.

Its one job is reading a CSV of fixed-length numeric vectors with one label
column, refusing bad data with one :class:`~beatwatch.errors.DataError` line
naming the file, the row, the column and the problem.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beatwatch.data.cache import sha256_bytes
from beatwatch.errors import DataError

MIN_ROWS = 10


@dataclass(frozen=True)
class Dataset:
    """Labelled fixed-length vectors.

    Attributes:
        x: the vectors, shape (n, L), float32.
        normal: True where the row's label equals the normal label, shape (n,).
        classes: ECG5000 five-class label (1..5) per row when known, else None.
        source: where the data came from (a path, or a description).
        sha256: hex digest of the CSV file's bytes.
        labels: the raw label values, shape (n,).
    """

    x: np.ndarray
    normal: np.ndarray
    classes: np.ndarray | None
    source: str
    sha256: str
    labels: np.ndarray


def format_number(value: float) -> str:
    """Show a number exactly and briefly: ``1``, ``0.5``, ``1234567``, ``1e-10``."""
    if value == 0 or 1e-4 <= abs(value) < 1e16:
        return str(np.format_float_positional(value, trim="-"))
    return repr(float(value))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_header(path: Path, fields: list[str]) -> bool:
    """Whether a file's first line names its columns.

    A header has a field that is not a number (``x1,...,label``) or is
    exactly ``0,1,...,n-1``: what pandas' ``to_csv`` writes for unnamed
    columns. A line mixing text with decimals is neither, but a data row with
    a bad value: skipping it as a header would lose it silently.
    """
    numeric = [_is_number(field) for field in fields]
    if all(numeric):
        return fields == [str(i) for i in range(len(fields))]
    decimals = [
        i for i, field in enumerate(fields) if numeric[i] and not field.lstrip("+-").isdigit()
    ]
    if decimals:
        text = next(i for i, is_number in enumerate(numeric) if not is_number)
        raise DataError(
            f"{path}: line 1: column {text}: non-numeric value {fields[text]!r} among "
            "decimal numbers: a data row with a bad value, not a header"
        )
    return True


def _resolve_label_column(
    path: Path, label_column: str | int, names: list[str] | None, n_columns: int
) -> int:
    if isinstance(label_column, str) and names is not None and label_column in names:
        return names.index(label_column)
    if isinstance(label_column, str):
        stripped = label_column.strip()
        if stripped.lstrip("-").isdigit():
            label_column = int(stripped)
        else:
            if names is not None:
                more = ", ..." if len(names) > 8 else ""
                hint = f"columns are {', '.join(names[:8])}{more}"
            else:
                hint = "the file has no header; give a column index"
            raise DataError(f"{path}: unknown label column {label_column!r} ({hint})")
    if not -n_columns <= label_column < n_columns:
        raise DataError(
            f"{path}: unknown label column {label_column} (rows have {n_columns} columns)"
        )
    return label_column % n_columns


def load_csv(
    path: str | Path,
    *,
    label_column: str | int = -1,
    normal_label: float = 1.0,
    header: bool | None = None,
) -> Dataset:
    """Read a CSV of fixed-length numeric vectors with one label column.

    Args:
        path: the CSV file (comma-separated).
        label_column: the label's column: an index (negative counts from the
            end) or, for a file with a header, its name.
        normal_label: the label value of normal rows; all others are anomalies.
        header: whether the first line is a header; None detects it (see
            :func:`_looks_like_header`).

    Returns:
        The dataset; ``classes`` is None.

    Raises:
        DataError: missing file, ragged rows, non-numeric or non-finite values,
            values beyond float32, too few rows, no normal rows, an unknown
            label column, or a gzip file — naming the file, the 1-based line,
            the 0-based column (as ``label_column`` counts) and the problem.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw.startswith(b"\x1f\x8b"):
        raise DataError(f"{path}: gzip-compressed; decompress it first (gunzip)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    # Keep each data line's 1-based number so every error can point at it.
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: empty file")
    first_fields = [field.strip().strip('"') for field in numbered[0][1].split(",")]
    has_header = header if header is not None else _looks_like_header(path, first_fields)
    names = first_fields if has_header else None
    data_lines = numbered[1:] if has_header else numbered
    if len(data_lines) < MIN_ROWS:
        raise DataError(f"{path}: too few rows: {len(data_lines)} (need at least {MIN_ROWS})")
    n_columns = len(names) if names is not None else data_lines[0][1].count(",") + 1
    for line_no, line in data_lines:
        count = line.count(",") + 1
        if count != n_columns:
            raise DataError(
                f"{path}: line {line_no}: ragged row: {count} fields, expected {n_columns}"
            )
    if n_columns < 2:
        raise DataError(f"{path}: rows need a label and at least one value, found 1 column")
    label_index = _resolve_label_column(path, label_column, names, n_columns)

    # Imported here: pandas takes most of a second to import, and the services
    # (which import this package for the data cache) never read a CSV.
    import pandas as pd

    body = "\n".join(line for _, line in data_lines)
    read = {"header": None, "keep_default_na": False, "skipinitialspace": True}
    try:
        # Fast path: every field parses as a float (NaN/inf are caught below).
        frame = pd.read_csv(io.StringIO(body), dtype=np.float64, na_filter=False, **read)
    except ValueError:
        frame = pd.read_csv(io.StringIO(body), dtype=str, **read)
    values = frame.apply(lambda col: pd.to_numeric(col, errors="coerce")).to_numpy(np.float64)
    bad_rows, bad_cols = np.nonzero(np.isnan(values))
    for row, col in zip(bad_rows.tolist(), bad_cols.tolist(), strict=True):
        cell = str(frame.iat[row, col]).strip()
        if cell.lower() not in {"nan", "+nan", "-nan"}:
            shown = repr(cell) if cell else "an empty field"
            what = " in the label column (labels must be numbers)" if col == label_index else ""
            raise DataError(
                f"{path}: line {data_lines[row][0]}: column {col}: non-numeric value {shown}{what}"
            )
    non_finite = ~np.isfinite(values)
    if non_finite.any():
        row, col = (int(v) for v in np.argwhere(non_finite)[0])
        raise DataError(
            f"{path}: line {data_lines[row][0]}: column {col}: non-finite value "
            f"{str(frame.iat[row, col]).strip()!r}"
        )
    labels = values[:, label_index]
    with np.errstate(over="ignore"):  # reported below, with the line
        x = np.delete(values, label_index, axis=1).astype(np.float32)
    overflow = ~np.isfinite(x)
    if overflow.any():
        row, col = (int(v) for v in np.argwhere(overflow)[0])
        col += col >= label_index  # back to the file's numbering
        raise DataError(
            f"{path}: line {data_lines[row][0]}: column {col}: value "
            f"{str(frame.iat[row, col]).strip()!r} is beyond float32's range (about 3.4e38)"
        )
    normal = labels == normal_label
    if not normal.any():
        seen = ", ".join(format_number(v) for v in np.unique(labels)[:10])
        raise DataError(
            f"{path}: no normal rows (label == {format_number(normal_label)}); labels seen: {seen}"
        )
    return Dataset(
        x=x, normal=normal, classes=None, source=str(path), sha256=sha256_bytes(raw), labels=labels
    )
