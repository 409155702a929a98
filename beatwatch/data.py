"""Load labelled beat data: ECG5000 from the data directory, or any numeric CSV.

Shared by the trainer (fit, calibrate, evaluate) and the producer (replay).
:func:`load_ecg5000` reads ``ecg.csv`` from an explicit path or from the data
directory (:func:`cache_dir`), where ``beatwatch data fetch ecg5000`` puts it;
nothing here downloads: a missing file is one line naming that command.
:func:`load_csv` reads any CSV of fixed-length numeric vectors with a label
column and refuses bad data with one line naming the file, the row and the
problem.

No TensorFlow here: the producer imports this module.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from beatwatch.errors import DataError

log = logging.getLogger(__name__)

ECG5000_URL = "http://storage.googleapis.com/download.tensorflow.org/data/ecg.csv"
ECG5000_SHA256 = "72ce7b040ca0c6ed36c3368e570c6ac4ddf20100476e47373c63b2395e012df1"
ECG5000_LENGTH = 140
UCR_FILES = {"train": "ECG5000_TRAIN.tsv", "test": "ECG5000_TEST.tsv"}
UCR_SHA256 = {
    "train": "df86ac15d7e283e731db6be7865f5004b65bc639014cb8b9753c26e24a9092a1",
    "test": "0192997dd1793880633bfb34ae3ad5129c09a8e0f210c469225451b92cdd8548",
}
# ecg.csv holds UCR TRAIN (500 rows) then TEST rows 0..4497 (the data set's PROVENANCE.md).
UCR_TEST_ROWS_IN_CSV = 4498
ECG5000_CLASS_NAMES = {
    1: "normal",
    2: "R-on-T PVC",
    3: "PVC",
    4: "SP or EB",
    5: "unclassified",
}
MIN_ROWS = 10
FETCH_ECG5000 = "beatwatch data fetch ecg5000"


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


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    """Return the data directory: ``$BEATWATCH_CACHE_DIR`` or ``~/.cache/beatwatch``.

    ``beatwatch data fetch`` writes there and the loaders read there, one
    directory a data set: ``ecg5000/ecg.csv`` (+ ``ecg5000/ucr/*.tsv``, the
    five-class labels) and ``mitbih/NNN.{hea,dat,atr}``.
    """
    configured = os.environ.get("BEATWATCH_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "beatwatch"


def ecg5000_dir() -> Path:
    """Return where ECG5000 lives: ``<data directory>/ecg5000``."""
    return cache_dir() / "ecg5000"


def mitbih_dir() -> Path:
    """Return where MIT-BIH Arrhythmia records live: ``<data directory>/mitbih``."""
    return cache_dir() / "mitbih"


# --------------------------------------------------------------------------- CSV


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


# ----------------------------------------------------------------- UCR rebuild


def _split_tsv(text: bytes) -> list[list[bytes]]:
    lines = text.split(b"\n")
    return [line.rstrip(b"\r").split(b"\t") for line in lines if line.strip()]


def rebuild_ecg_csv(train_tsv: bytes, test_tsv: bytes) -> bytes:
    """Rebuild ``ecg.csv`` from the UCR ECG5000 TSV files, byte for byte.

    The UCR files store each sample as the same decimal text as ``ecg.csv``, so
    moving the class column to the end (as 1.0 for class 1, else 0.0) and
    keeping TRAIN then TEST rows 0..4497 reproduces the original bytes (its
    sha256 is checked by the caller).

    Args:
        train_tsv: bytes of ``ECG5000_TRAIN.tsv``.
        test_tsv: bytes of ``ECG5000_TEST.tsv``.

    Returns:
        The bytes of ``ecg.csv``.
    """
    rows = _split_tsv(train_tsv) + _split_tsv(test_tsv)[:UCR_TEST_ROWS_IN_CSV]
    out = io.BytesIO()
    for fields in rows:
        label = b"1.0" if fields[0].strip() in {b"1", b"1.0"} else b"0.0"
        out.write(b",".join([*(f.strip() for f in fields[1:]), label]) + b"\n")
    return out.getvalue()


def ucr_classes(train_tsv: bytes, test_tsv: bytes) -> np.ndarray:
    """Return the ECG5000 class (1..5) of each ``ecg.csv`` row, from the UCR files."""
    rows = _split_tsv(train_tsv) + _split_tsv(test_tsv)[:UCR_TEST_ROWS_IN_CSV]
    return np.array([round(float(fields[0])) for fields in rows], dtype=np.int64)


def read_ucr_tsvs(directory: Path) -> tuple[bytes, bytes] | None:
    """Return the UCR ECG5000 TRAIN and TEST files of ``directory``; None if absent.

    Raises:
        DataError: a file is there but is not the expected one (sha256).
    """
    paths = {part: directory / name for part, name in UCR_FILES.items()}
    if not all(path.is_file() for path in paths.values()):
        return None
    blobs = {part: path.read_bytes() for part, path in paths.items()}
    for part, blob in blobs.items():
        if sha256_bytes(blob) != UCR_SHA256[part]:
            raise DataError(
                f"{paths[part]}: not the expected UCR file (sha256 differs); "
                f"run `{FETCH_ECG5000}` to fetch it again"
            )
    return blobs["train"], blobs["test"]


def attach_ecg5000_classes(dataset: Dataset) -> Dataset:
    """Return ``dataset`` with ECG5000 classes when it is ``ecg.csv`` and UCR files exist."""
    if dataset.sha256 != ECG5000_SHA256:
        return dataset
    try:
        tsvs = read_ucr_tsvs(ecg5000_dir() / "ucr")
    except (OSError, DataError) as exc:
        log.warning("ECG5000 classes unavailable (%s); per-class metrics are skipped", exc)
        return dataset
    if tsvs is None:
        log.info("ECG5000 classes unavailable (no UCR files); per-class metrics are skipped")
        return dataset
    classes = ucr_classes(*tsvs)
    # The UCR class must agree with the binary label, or the files are not the ones we know.
    if len(classes) != len(dataset.labels) or not np.array_equal(classes == 1, dataset.normal):
        log.warning("UCR classes do not match %s; per-class metrics are skipped", dataset.source)
        return dataset
    return Dataset(
        x=dataset.x,
        normal=dataset.normal,
        classes=classes,
        source=dataset.source,
        sha256=dataset.sha256,
        labels=dataset.labels,
    )


def load_ecg5000(path: str | Path | None = None) -> Dataset:
    """Load ECG5000 ``ecg.csv`` (140 samples + label; 1.0 normal, 0.0 abnormal).

    Reads ``path``, or else ``ecg5000/ecg.csv`` in the data directory
    (:func:`cache_dir`), which ``beatwatch data fetch ecg5000`` fills. Nothing
    is downloaded here. Five-class labels come from the UCR files beside it
    when they are there.

    Args:
        path: an explicit ``ecg.csv``; when given, the data directory is not read.

    Returns:
        The dataset with ``classes`` filled when the UCR files are available.

    Raises:
        DataError: the file is missing, is not the expected ECG5000 file (both
            name the fetch command) or the explicit file is malformed.
    """
    if path is not None:
        return attach_ecg5000_classes(load_csv(path))
    csv = ecg5000_dir() / "ecg.csv"
    if not csv.is_file():
        raise DataError(f"no ECG5000 data at {csv}: run `{FETCH_ECG5000}` to fetch it")
    if sha256_bytes(csv.read_bytes()) != ECG5000_SHA256:
        raise DataError(
            f"{csv} is not the expected ECG5000 ecg.csv (sha256 differs): "
            f"run `{FETCH_ECG5000}` to fetch it again"
        )
    log.info("ECG5000 data: %s", csv)
    return attach_ecg5000_classes(load_csv(csv))
