"""Load labelled beat data: ECG5000 from the data directory, or any numeric CSV.

Shared by the trainer (fit, calibrate, evaluate) and the producer (replay).
:func:`load_ecg5000` reads ``ecg.csv`` from an explicit path or from the data
directory (:func:`cache_dir`), where ``beatwatch data fetch ecg5000`` puts it;
nothing here downloads: a missing file is one line naming that command.
:func:`load_csv` reads any CSV of fixed-length numeric vectors with a label
column and refuses bad data with one line naming the file, the row and the
problem.

Modules: ``cache`` (the data directory and file digests), ``labelled_csv``
(:class:`Dataset` and :func:`load_csv`) and ``ecg5000`` (the ECG5000 files,
the UCR rebuild and :func:`load_ecg5000`). Import the names from
``beatwatch.data``. No TensorFlow here: the producer imports this package.
"""

from beatwatch.data.cache import cache_dir, ecg5000_dir, mitbih_dir, sha256_bytes
from beatwatch.data.ecg5000 import (
    ECG5000_CLASS_NAMES,
    ECG5000_LENGTH,
    ECG5000_SHA256,
    ECG5000_URL,
    FETCH_ECG5000,
    UCR_FILES,
    UCR_SHA256,
    UCR_TEST_ROWS_IN_CSV,
    attach_ecg5000_classes,
    load_ecg5000,
    read_ucr_tsvs,
    rebuild_ecg_csv,
    ucr_classes,
)
from beatwatch.data.labelled_csv import MIN_ROWS, Dataset, format_number, load_csv

__all__ = [
    "ECG5000_CLASS_NAMES",
    "ECG5000_LENGTH",
    "ECG5000_SHA256",
    "ECG5000_URL",
    "FETCH_ECG5000",
    "MIN_ROWS",
    "UCR_FILES",
    "UCR_SHA256",
    "UCR_TEST_ROWS_IN_CSV",
    "Dataset",
    "attach_ecg5000_classes",
    "cache_dir",
    "ecg5000_dir",
    "format_number",
    "load_csv",
    "load_ecg5000",
    "mitbih_dir",
    "read_ucr_tsvs",
    "rebuild_ecg_csv",
    "sha256_bytes",
    "ucr_classes",
]
