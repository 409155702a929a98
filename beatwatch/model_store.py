"""A model location whose current version can change while detectors run.

Layout of a model root::

    ROOT/versions/<model_version>/   one artifact directory per version, never changed
    ROOT/CURRENT                     one line: the current version's directory,
                                     relative to ROOT ("versions/ecg5000-1a2b3c4d5e6f")

:func:`publish` copies a checked artifact into ``versions/`` under a temporary
name and renames it into place, then :func:`activate` writes ``CURRENT`` to a
temporary file and renames it over the old one. Both renames are atomic
within one filesystem, so a reader sees the old pointer or the new one, and
the directory it names is always whole: a detector watching the root never
sees half a model. ``model_version`` comes from what the model computes (see
:mod:`beatwatch.artifact`), so publishing the same model twice is one version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from beatwatch.artifact import CONFIG_FILE, Artifact, load_artifact
from beatwatch.errors import ArtifactError

POINTER_FILE = "CURRENT"
VERSIONS_DIR = "versions"
# A pointer is one short line; anything longer is not one.
MAX_POINTER_BYTES = 1024


def is_model_root(path: str | Path) -> bool:
    """Whether ``path`` is a model root (holds ``CURRENT``) rather than one artifact."""
    return (Path(path) / POINTER_FILE).is_file()


def read_pointer(root: str | Path) -> str:
    """Return the version directory ``CURRENT`` names, relative to ``root``.

    Raises:
        ArtifactError: ``CURRENT`` is missing, unreadable, or names anything
            but a directory directly under ``versions/``.
    """
    pointer_file = Path(root) / POINTER_FILE
    try:
        raw = pointer_file.read_bytes()[: MAX_POINTER_BYTES + 1]
    except OSError as exc:
        raise ArtifactError(f"{pointer_file}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ArtifactError(f"{pointer_file}: not UTF-8 text") from None
    parts = Path(text).parts
    if (
        len(raw) > MAX_POINTER_BYTES
        or len(parts) != 2
        or parts[0] != VERSIONS_DIR
        or parts[1] in (".", "..")
        or parts[1].startswith(".")
    ):
        raise ArtifactError(
            f"{pointer_file}: must name one directory as {VERSIONS_DIR}/<version>, "
            f"got {text[:80]!r}"
        )
    return text


def current_dir(root: str | Path) -> Path:
    """The artifact directory ``CURRENT`` names (not checked beyond the pointer)."""
    return Path(root) / read_pointer(root)


def list_versions(root: str | Path) -> list[str]:
    """Published versions under ``root``, sorted by name (temporary directories left out)."""
    versions = Path(root) / VERSIONS_DIR
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))


def _fsync_tree(path: Path) -> None:
    """Flush every file and directory under ``path`` to disk, so a rename never outruns data."""
    for directory, _, files in os.walk(path):
        for name in files:
            with (Path(directory) / name).open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(directory))


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _foreign(root: Path) -> bool:
    """Whether ``root`` holds files of something other than a model root."""
    if not root.is_dir() or is_model_root(root) or (root / VERSIONS_DIR).is_dir():
        return False
    try:
        return any(root.iterdir())
    except OSError:
        return False  # mkdir or the copy will say why, in one line


def _check_same_length(root: Path, artifact: Artifact) -> None:
    """Refuse a version whose beats differ in length from the current version's."""
    if not is_model_root(root):
        return
    try:
        running = load_artifact(current_dir(root))
    except ArtifactError:
        return  # a broken current version is what switching to a good one repairs
    if running.input_length != artifact.input_length:
        raise ArtifactError(
            f"{artifact.model_version} takes beats of {artifact.input_length} samples, the "
            f"current {running.model_version} of {running.input_length}; a detector would "
            "refuse it"
        )


def activate(root: str | Path, version: str) -> Artifact:
    """Point ``CURRENT`` at ``versions/<version>``, atomically.

    The version is loaded and checked first (no TensorFlow), and must take
    beats of the same length as the current one: the beats topic carries one
    length, and a detector refuses a model of another.

    Returns:
        The activated artifact.

    Raises:
        ArtifactError: one line when the version is missing or invalid, its
            input length differs from the current one's, or writing fails.
    """
    root = Path(root)
    target = root / VERSIONS_DIR / version
    if Path(version).name != version or version.startswith("."):
        raise ArtifactError(f"not a version name: {version!r}")
    if not target.is_dir():
        raise ArtifactError(f"no version {version} in {root / VERSIONS_DIR}")
    artifact = load_artifact(target)
    _check_same_length(root, artifact)
    pointer = root / POINTER_FILE
    staging: Path | None = None
    try:
        descriptor, name = tempfile.mkstemp(dir=root, prefix=f".{POINTER_FILE}.tmp-")
        staging = Path(name)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{VERSIONS_DIR}/{version}\n")
            handle.flush()
            os.fsync(handle.fileno())
        staging.chmod(0o644)
        staging.replace(pointer)
        _fsync_dir(root)
    except OSError as exc:
        if staging is not None:
            staging.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write {pointer}: {exc.strerror or exc}") from None
    return artifact


def publish(source: str | Path, root: str | Path, *, switch: bool = True) -> Artifact:
    """Copy the artifact at ``source`` into ``root`` as a new version; make it current.

    A version already published with the same ``model_version`` is kept as it
    is (same version, same content: the loader verifies the content digest).

    Args:
        source: an artifact directory.
        root: the model root (created when missing).
        switch: also point ``CURRENT`` at it (see :func:`activate`).

    Returns:
        The published artifact (in ``root``).

    Raises:
        ArtifactError: one line when ``source`` is not a valid artifact or
            has no content checksum, ``root`` is an artifact itself or a
            non-empty directory of other files, the input length differs from
            the current version's, or writing fails.
    """
    source, root = Path(source), Path(root)
    artifact = load_artifact(source)
    if artifact.config.content_sha256 is None:
        raise ArtifactError(
            f"{source}: made before content checksums (no content_sha256); train it again "
            "to publish it"
        )
    if (root / CONFIG_FILE).exists():
        raise ArtifactError(f"{root} is an artifact directory, not a model root")
    if _foreign(root):
        raise ArtifactError(
            f"{root} is a non-empty directory without {POINTER_FILE} or {VERSIONS_DIR}/ "
            "(not a model root); refusing to write into it"
        )
    _check_same_length(root, artifact)
    versions = root / VERSIONS_DIR
    target = versions / artifact.model_version
    try:
        versions.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            staging = Path(tempfile.mkdtemp(dir=versions, prefix=f".{artifact.model_version}.tmp-"))
            try:
                for name in (CONFIG_FILE, "model.keras"):
                    shutil.copyfile(source / name, staging / name)
                staging.chmod(0o755)
                _fsync_tree(staging)
                staging.rename(target)
                _fsync_dir(versions)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except OSError as exc:
        raise ArtifactError(f"cannot publish into {root}: {exc.strerror or exc}") from None
    published = load_artifact(target)
    if switch:
        activate(root, artifact.model_version)
    return published
