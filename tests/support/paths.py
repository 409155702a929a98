"""Where the tests find the repository, the model they use and the development data.

The installed package never looks beside the repository; the tests do: when
``BEATWATCH_CACHE_DIR`` is not set, ``tests/conftest.py`` points it at the
development copy of the data (``../shared/data`` beside the repository, laid
out as ``beatwatch data fetch`` lays out the data directory), so the loaders
find ECG5000 and MIT-BIH there exactly as a user's installation finds what it
fetched. Without that copy, ``make test`` fetches ECG5000 first.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The development copy of the data sets beside the repository (absent on a newcomer's clone).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The shipped model; BEATWATCH_TEST_MODEL points the tests at another artifact.
MODEL_DIR = Path(os.environ.get("BEATWATCH_TEST_MODEL") or REPO_ROOT / "models" / "ecg5000")


def data_dir() -> Path:
    """The data directory the tests use (``BEATWATCH_CACHE_DIR``, set by tests/conftest.py)."""
    from beatwatch.data import cache_dir

    return cache_dir()
