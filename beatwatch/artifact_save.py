"""Write an artifact directory atomically: ``model.keras`` + ``artifact.json``.

Saving writes a temporary directory beside the target and renames it into
place, so a crash never leaves half an artifact; it replaces an existing
artifact but refuses to replace anything else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from beatwatch.artifact_config import CONFIG_FILE, FORMAT_VERSION, MODEL_FILE, ArtifactConfig
from beatwatch.artifact_load import Artifact, load_artifact
from beatwatch.artifact_version import content_sha256, model_version
from beatwatch.data import sha256_bytes
from beatwatch.errors import ArtifactError

# Kernel pseudo-filesystems: a directory there may look writable to root, but
# an artifact cannot (or must not) live there.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_artifact_target(target: str | Path) -> Path:
    """Check that an artifact can be written at ``target`` without destroying anything else.

    Creates nothing, so the trainer can call it before spending minutes on
    training. Replaceable are: nothing, an empty directory, or an artifact
    directory (one holding ``artifact.json``).

    Args:
        target: the artifact directory to create or replace.

    Returns:
        ``target`` resolved to an absolute path (symlinks followed).

    Raises:
        ArtifactError: one line when ``target`` is a file or a non-empty
            directory that is not an artifact, is the working directory or
            one of its parents, lies under /proc, /sys or /dev, or its
            nearest existing ancestor is a file or not writable.
    """
    try:
        resolved = Path(target).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop before 3.13
        raise ArtifactError(f"cannot resolve artifact path {target}: {exc}") from None
    try:
        cwd: Path | None = Path.cwd().resolve()
    except OSError:  # the working directory was deleted: nothing to protect
        cwd = None
    if cwd is not None and (resolved == cwd or resolved in cwd.parents):
        # Renaming "." fails with EBUSY, and replacing a parent would take the
        # working directory (and everything beside it) with it.
        raise ArtifactError(
            f"{resolved} is the working directory or one of its parents; refusing to replace it"
        )
    for pseudo in PSEUDO_FILESYSTEMS:
        if resolved.is_relative_to(pseudo):
            raise ArtifactError(
                f"{resolved} is under {pseudo}; refusing to write an artifact there"
            )
    if resolved.exists():
        if not resolved.is_dir():
            raise ArtifactError(f"{resolved} exists and is not a directory; refusing to replace it")
        try:
            foreign = not (resolved / CONFIG_FILE).is_file() and any(resolved.iterdir())
        except OSError as exc:
            raise ArtifactError(f"cannot list {resolved}: {exc.strerror or exc}") from None
        if foreign:
            raise ArtifactError(
                f"{resolved} is a non-empty directory without {CONFIG_FILE} (not an artifact); "
                "refusing to replace it"
            )
    # The parent must accept the staging directory and the renames; when it does
    # not exist yet, its nearest existing ancestor must accept mkdir.
    ancestor = resolved.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ArtifactError(f"cannot write {resolved}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ArtifactError(f"cannot write {resolved}: {ancestor} is not writable")
    return resolved


def _inference_copy(model: Any) -> Any:
    """The same architecture and weights, uncompiled: no optimizer state in the file.

    Scoring never needs Adam's moments, and leaving them out makes the file
    about three times smaller.
    """
    # keras.models.clone_model would carry the compile state (and the optimizer) over.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _finite_or_null(node: Any) -> Any:
    """``node`` with every NaN or infinite float, at any depth, replaced by None."""
    if isinstance(node, float):  # np.float64 included: it subclasses float
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {key: _finite_or_null(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_finite_or_null(value) for value in node]
    return node


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an existing ``target`` directory.

    A directory cannot be replaced by rename in one step: the old one moves
    aside first, so at every moment the target is either absent or whole. When
    a rename fails, the old artifact is put back and no ``.old-`` directory is
    left behind.
    """
    if not target.exists():
        staging.replace(target)
        return
    retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    try:
        target.replace(retired / "artifact")
    except OSError:
        retired.rmdir()
        raise
    try:
        staging.replace(target)
    except OSError:
        (retired / "artifact").replace(target)
        retired.rmdir()
        raise
    shutil.rmtree(retired, ignore_errors=True)


def save_artifact(target: str | Path, model: Any, config: ArtifactConfig, name: str) -> Artifact:
    """Write ``model`` and ``config`` as an artifact directory, atomically.

    Fills in ``format_version``, ``input_length``, ``model_sha256``,
    ``content_sha256`` and ``model_version`` (from ``content_sha256``: see
    :mod:`beatwatch.artifact_version`); an existing artifact at ``target`` is
    replaced, anything else there is refused (see :func:`check_artifact_target`).
    NaN and infinite floats anywhere in ``config`` (an undefined metric, a
    diverged loss in the training history) are written as ``null``, so
    ``artifact.json`` is strict JSON.

    Args:
        target: the artifact directory to create or replace.
        model: the Keras model (no Lambda layers).
        config: the rest of ``artifact.json`` (its sealed fields are ignored).
        name: the model name, the prefix of ``model_version``.

    Returns:
        The written artifact, loaded back and checked.

    Raises:
        ArtifactError: ``target`` is refused, or writing fails (one line with
            the operating system's reason).
    """
    target = check_artifact_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as exc:
        raise ArtifactError(f"cannot write artifact {target}: {exc.strerror or exc}") from None
    try:
        _inference_copy(model).save(staging / MODEL_FILE)
        sealed = dataclasses.replace(
            config,
            format_version=FORMAT_VERSION,
            model_version="",
            input_length=int(model.input_shape[-1]),
            model_sha256=sha256_bytes((staging / MODEL_FILE).read_bytes()),
            content_sha256=None,
        )
        full = _finite_or_null(sealed.to_json())
        content = content_sha256(staging / MODEL_FILE, full)
        full["model_version"] = model_version(name, content)
        full["content_sha256"] = content
        # allow_nan=False: a non-finite value that slipped past _finite_or_null
        # fails here instead of writing a bare NaN.
        text = json.dumps(full, indent=1, allow_nan=False)
        (staging / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        staging.chmod(0o755)
        _move_into_place(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArtifactError(f"cannot write artifact {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_artifact(target)
