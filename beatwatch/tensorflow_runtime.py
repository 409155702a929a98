"""Import TensorFlow and Keras once, without their native start-up banner.

TensorFlow 2.21 logs through absl, which writes a preamble line and INFO
lines (``oneDNN custom operations are on``, CPU feature notes) straight to
file descriptor 2 while the library loads, before ``TF_CPP_MIN_LOG_LEVEL`` or
any absl setting is read. No variable silences them, so the import runs with
descriptor 2 pointed at a temporary file; afterwards every captured line that
is not one of those banner lines is written back to stderr, so TensorFlow's
warnings and errors (and anything another thread logged meanwhile) still show.
oneDNN stays on: switching it off only to hide a line would cost speed.

Every module that needs TensorFlow or Keras calls :func:`import_tensorflow`
first, and only after its command has checked its inputs.

Keras imports scikit-learn, matplotlib and pandas whenever they are
installed, only for its scikit-learn wrappers, plotting helpers and DataFrame
inputs, which nothing here uses (models get NumPy arrays); with the training
extras installed they are about a third of the import's CPU time, paid by
every detector start. They are hidden while Keras loads (Keras then leaves
those helpers out) and import normally afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

# absl's preamble, and absl INFO lines: "I0000 00:00:1796659571.559053 14773 port.cc:153] ...".
BANNER_LINES = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(rb"^I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.\-]+:\d+\] "),
)

# Optional imports of Keras that no beatwatch program needs from it.
KERAS_EXTRAS = ("sklearn", "matplotlib", "pandas")

_lock = threading.Lock()
_imported = False
_import_s: float | None = None


def is_banner_line(line: bytes) -> bool:
    """Whether ``line`` is one of TensorFlow's or absl's start-up banner lines."""
    return any(pattern.match(line) for pattern in BANNER_LINES)


def without_banner(captured: bytes) -> bytes:
    """``captured`` stderr bytes with the banner lines removed, the rest kept in order."""
    kept = [line for line in captured.splitlines(keepends=True) if not is_banner_line(line)]
    return b"".join(kept)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Capture what is written to file descriptor 2 inside the block; replay all but the banner.

    If descriptor 2 cannot be redirected (closed, or not a real descriptor),
    the block runs unfiltered.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = without_banner(capture.read())
            if rest:
                os.write(2, rest)


@contextlib.contextmanager
def keras_extras_hidden() -> Iterator[None]:
    """Inside the block, importing a :data:`KERAS_EXTRAS` package not yet imported fails.

    A ``None`` in ``sys.modules`` makes ``import`` raise ImportError, which
    Keras catches for these optional packages; the entries are removed
    afterwards, so a later ``import sklearn`` works as usual.
    """
    hidden = [name for name in KERAS_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_tensorflow() -> None:
    """Import ``tensorflow`` and ``keras`` (once per process), banner filtered out."""
    global _imported, _import_s
    with _lock:
        if _imported:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        started = time.monotonic()
        with native_stderr_filtered(), keras_extras_hidden():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        _import_s = time.monotonic() - started
        _imported = True


def import_seconds() -> float | None:
    """How long this process took to import TensorFlow and Keras; None before it has."""
    return _import_s
