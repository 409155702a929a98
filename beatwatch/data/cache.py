"""Where the data lives: the data directory, one directory a data set, and file digests.

Its one job is the on-disk location that ``beatwatch data fetch`` writes and
the loaders read (``$BEATWATCH_CACHE_DIR`` or ``~/.cache/beatwatch``), and the
sha256 that checks a file is the expected one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
