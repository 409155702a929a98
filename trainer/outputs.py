"""Where ``train`` and ``evaluate`` write: checked before the work, written with one-line errors.

Training takes from seconds to minutes; a report directory that cannot be
created must be refused before it starts, not after (a traceback once the
model is done, with the artifact written but the command failing).
"""

from __future__ import annotations

import os
from pathlib import Path

from beatwatch.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()  # pragma: no cover - "/" always exists


def check_directory(path: str | Path, option: str) -> Path:
    """Refuse a directory that cannot be created or written; return it.

    Raises:
        ConfigError: ``path`` is a file, a parent is a file, or the nearest
            existing directory is not writable.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if existing == path and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a directory")
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {existing} is not writable")
    return path


def check_file(path: str | Path, option: str) -> Path:
    """Refuse a file path that cannot be written; return it.

    Raises:
        ConfigError: ``path`` is a directory, or its directory cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: is not writable")
    check_directory(path.parent, option)
    return path


def write_text(path: Path, text: str, option: str) -> None:
    """Write ``text`` to ``path``, creating its directory.

    Raises:
        ConfigError: the operating system refused (one line with its reason).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None
