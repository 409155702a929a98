"""ECG5000: ``ecg.csv`` from the data directory, and its five classes from the UCR files.

Its one job is the ECG5000 data set: its published digests, the byte-exact
rebuild of ``ecg.csv`` from the UCR TSV files, the five-class labels read
from them, and :func:`load_ecg5000`, which reads ``ecg5000/ecg.csv`` from the
data directory (:func:`~beatwatch.data.cache.cache_dir`). Nothing here
downloads: a missing file is one line naming ``beatwatch data fetch ecg5000``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from beatwatch.data.cache import ecg5000_dir, sha256_bytes
from beatwatch.data.labelled_csv import Dataset, load_csv
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
FETCH_ECG5000 = "beatwatch data fetch ecg5000"


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
    (:func:`~beatwatch.data.cache.cache_dir`), which ``beatwatch data fetch
    ecg5000`` fills. Nothing is downloaded here. Five-class labels come from
    the UCR files beside it when they are there.

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
