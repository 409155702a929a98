"""Save and load the model artifact: ``model.keras`` + ``artifact.json`` in one directory.

Saving writes a temporary directory beside the target and renames it into
place, so a crash never leaves half an artifact; it replaces an existing
artifact but refuses to replace anything else. Loading checks everything it
can without TensorFlow (the json, the format version, the model file's sha256,
the input length, no Lambda layer in the model config, every field's type
and range) so that ``beatwatch detect`` refuses a bad artifact in
milliseconds with one clear line; the Keras model itself is loaded
(``safe_mode=True``) only when :meth:`Artifact.scorer` or
:meth:`Artifact.keras_model` is called.

``model_version`` is ``<name>-<first 12 hex of content_sha256>``, a digest of
what the model computes: the architecture, the weights' values and every
``artifact.json`` field that changes scoring (preprocessing, loss, threshold,
calibration, regions, segmentation, ...). The ``.keras`` file's own bytes carry
its save time, so its sha256 (``model_sha256``, the integrity check) differs
between two identical trainings; the version, and so every alert id, does not.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.data import sha256_bytes
from beatwatch.errors import ArtifactError
from beatwatch.scoring import LOSSES, MinMax, Scorer
from beatwatch.tensorflow_runtime import import_tensorflow

FORMAT_VERSION = 1
# The model shipped with the package (the repository's models/, installed as the
# package data beatwatch.models): the default of detect, evaluate and demo,
# whatever the working directory.
SHIPPED_MODELS_DIR = Path(str(importlib.resources.files("beatwatch.models")))
SHIPPED_MODEL_DIR = SHIPPED_MODELS_DIR / "ecg5000"
MODEL_FILE = "model.keras"
CONFIG_FILE = "artifact.json"
REQUIRED_KEYS = (
    "format_version",
    "model_version",
    "input_length",
    "preprocessing",
    "loss",
    "threshold",
    "model_sha256",
)
# Fields of artifact.json that describe how a model was made, not what it computes:
# they stay out of content_sha256 (a training's date or wall time must not change the
# version). Every other field is part of the version, so a new field that changes
# scoring changes the version without being listed anywhere.
DESCRIPTIVE_KEYS = frozenset(
    {
        "format_version",
        "model_version",
        "model_sha256",
        "content_sha256",
        "name",
        "command",
        "command_line",
        "package_version",
        "created_at",
        "data",
        "training",
        "evaluation",
    }
)
# Landmarks of the mean normal ECG5000 beat (end exclusive), used to explain alerts.
ECG5000_REGIONS: list[dict[str, Any]] = [
    {"name": "QRS", "start": 0, "end": 15},
    {"name": "ST", "start": 15, "end": 50},
    {"name": "T", "start": 50, "end": 95},
    {"name": "P", "start": 95, "end": 125},
    {"name": "next-QRS", "start": 125, "end": 140},
]
# Kernel pseudo-filesystems: a directory there may look writable to root, but
# an artifact cannot (or must not) live there.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass
class Artifact:
    """A checked artifact directory; the Keras model loads on first use.

    Attributes:
        path: the artifact directory.
        config: the parsed ``artifact.json``.
        input_length: samples per beat.
        threshold: alert when ``score > threshold``.
        model_version: ``<name>-<first 12 hex of content_sha256>`` (older
            artifacts without ``content_sha256``: of the model file's sha256).
        regions: named sample ranges ``{"name", "start", "end"}`` (end exclusive).
    """

    path: Path
    config: dict[str, Any]
    input_length: int
    threshold: float
    model_version: str
    regions: list[dict[str, Any]]
    _model: Any = field(default=None, repr=False)
    _scorer: Scorer | None = field(default=None, repr=False)

    def keras_model(self) -> Any:
        """Load the Keras model with ``safe_mode=True`` (once)."""
        if self._model is None:
            import_tensorflow()
            import keras

            try:
                self._model = keras.saving.load_model(
                    self.path / MODEL_FILE, safe_mode=True, compile=False
                )
            except Exception as exc:  # Keras raises many types for a bad file
                raise ArtifactError(f"{self.path / MODEL_FILE}: cannot load model: {exc}") from None
            shape = tuple(self._model.input_shape)
            if (
                shape[1:] != (self.input_length,)
                or tuple(self._model.output_shape)[1:] != shape[1:]
            ):
                raise ArtifactError(
                    f"{self.path}: model maps {shape} to {self._model.output_shape}, "
                    f"expected (None, {self.input_length}) both ways"
                )
        return self._model

    def scorer(self) -> Scorer:
        """Return the :class:`Scorer` of this artifact (built once)."""
        if self._scorer is None:
            calibration = self.config.get("calibration", {}).get("errors")
            self._scorer = Scorer(
                self.keras_model(),
                MinMax.from_config(self.config["preprocessing"]),
                str(self.config["loss"]),
                self.threshold,
                None if not calibration else np.asarray(calibration, np.float64),
            )
        return self._scorer


def _keras_config(model_file: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"{model_file}: not a readable .keras file ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{model_file}: config.json is not an object")
    return config


def _config_dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict anywhere in a Keras config tree (depth first)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _config_dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _config_dicts(value)


def _class_names(node: Any) -> list[str]:
    """Every ``class_name`` anywhere in a Keras config tree."""
    return [d["class_name"] for d in _config_dicts(node) if isinstance(d.get("class_name"), str)]


def _input_lengths(node: Any) -> list[int]:
    """The last dimension of every ``batch_shape``/``batch_input_shape`` in a config tree."""
    return [
        shape[-1]
        for d in _config_dicts(node)
        for key in ("batch_shape", "batch_input_shape")
        if isinstance(shape := d.get(key), list) and shape and isinstance(shape[-1], int)
    ]


def load_artifact(path: str | Path) -> Artifact:
    """Open and check an artifact directory without loading TensorFlow.

    Raises:
        ArtifactError: one line each for a missing directory or file, corrupt
            json, an unknown format version, a model checksum mismatch, a
            Lambda layer, a wrong or inconsistent input length, or a malformed,
            non-finite or inverted field (preprocessing, threshold,
            calibration, regions).
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"no artifact directory at {root}")
    config_file, model_file = root / CONFIG_FILE, root / MODEL_FILE
    for required in (config_file, model_file):
        if not required.is_file():
            raise ArtifactError(f"{root}: missing {required.name}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{config_file}: corrupt json ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_file}: corrupt json (not an object)")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{config_file}: unknown format version {version!r} (this beatwatch reads "
            f"{FORMAT_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ArtifactError(f"{config_file}: missing keys {', '.join(missing)}")
    digest = sha256_bytes(model_file.read_bytes())
    if digest != config["model_sha256"]:
        raise ArtifactError(
            f"{model_file}: checksum mismatch (sha256 {digest[:12]}..., artifact.json says "
            f"{str(config['model_sha256'])[:12]}...)"
        )
    keras_config = _keras_config(model_file)
    if "Lambda" in _class_names(keras_config):
        raise ArtifactError(f"{model_file}: refusing a model with a Lambda layer (arbitrary code)")
    length = config["input_length"]
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ArtifactError(
            f"{config_file}: input_length must be a positive integer, got {length!r}"
        )
    model_lengths = set(_input_lengths(keras_config))
    if model_lengths != {length}:
        raise ArtifactError(
            f"{root}: input length {length} in artifact.json but {sorted(model_lengths)} in "
            f"{MODEL_FILE}"
        )
    _check_preprocessing(config_file, config["preprocessing"], length)
    if config["loss"] not in LOSSES:
        raise ArtifactError(f"{config_file}: unknown loss {config['loss']!r}")
    threshold: Any = None
    if isinstance(config["threshold"], dict):
        threshold = config["threshold"].get("value")
    if not _is_number(threshold):
        raise ArtifactError(f"{config_file}: threshold.value missing or not a number")
    if not _is_finite(threshold):
        # A NaN or infinite threshold compares false with every score: no alert, ever.
        raise ArtifactError(f"{config_file}: threshold.value must be finite, got {threshold!r}")
    _check_calibration(config_file, config.get("calibration", {}))
    regions = _checked_regions(config_file, config.get("regions", []), length)
    # Last: each field's own check above says more than a digest mismatch would.
    content = config.get("content_sha256")
    if content is not None:
        if content != content_sha256(model_file, config):
            raise ArtifactError(
                f"{config_file}: content checksum mismatch (a scoring field or the model "
                "changed after saving)"
            )
        if not str(config["model_version"]).endswith(f"-{str(content)[:12]}"):
            raise ArtifactError(
                f"{config_file}: model_version {config['model_version']!r} does not end with "
                f"its content checksum {str(content)[:12]}"
            )
    return Artifact(
        path=root,
        config=config,
        input_length=length,
        threshold=float(threshold),
        model_version=str(config["model_version"]),
        regions=regions,
    )


def content_sha256(model_file: Path, config: dict[str, Any]) -> str:
    """The sha256 of what a model computes, independent of when it was saved.

    Covers the Keras architecture (``config.json`` inside the ``.keras`` zip),
    every weight array (path, dtype, shape and bytes, read with h5py; no
    TensorFlow) and the fields of ``config`` outside :data:`DESCRIPTIVE_KEYS`,
    all serialised as canonical JSON.

    Args:
        model_file: the ``.keras`` file.
        config: ``artifact.json`` (descriptive fields are ignored).

    Raises:
        ArtifactError: the file is not a readable ``.keras`` zip with weights.
    """
    import h5py  # type: ignore[import-untyped]  # comes with Keras

    try:
        with zipfile.ZipFile(model_file) as archive:
            architecture = json.loads(archive.read("config.json"))
            weights_bytes = archive.read("model.weights.h5")
        weights: list[list[Any]] = []
        with h5py.File(io.BytesIO(weights_bytes), "r") as weights_file:

            def visit(path: str, node: Any) -> None:
                if isinstance(node, h5py.Dataset):
                    values = np.ascontiguousarray(node[()])
                    digest = hashlib.sha256(values.tobytes()).hexdigest()
                    weights.append([path, values.dtype.str, list(values.shape), digest])

            weights_file.visititems(visit)  # in name order: deterministic
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"{model_file}: not a readable .keras file ({exc})") from None
    scoring = {key: value for key, value in config.items() if key not in DESCRIPTIVE_KEYS}
    whole = {"architecture": _without_names(architecture), "weights": sorted(weights)}
    canonical = json.dumps(
        {**whole, "scoring": scoring},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _without_names(architecture: Any) -> Any:
    """``architecture`` with the model's and its layers' names replaced by their position.

    Keras numbers unnamed layers per process (``dense``, ``dense_1``, ...), so the
    same model built twice in one process has other names; names compute nothing.
    Every string equal to a name (connections between layers name them too) is
    replaced by ``#<position>`` in order of appearance.
    """
    names: dict[str, str] = {}

    def collect(node: Any) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("config"), dict):
            return
        layer = node["config"]
        if isinstance(layer.get("name"), str):
            names.setdefault(layer["name"], f"#{len(names)}")
        for child in layer.get("layers") or []:  # a model: its layers, nested models too
            collect(child)

    collect(architecture)

    def rename(node: Any) -> Any:
        if isinstance(node, str):
            return names.get(node, node)
        if isinstance(node, dict):
            return {key: rename(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rename(value) for value in node]
        return node

    return rename(architecture)


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (``bool`` is an ``int`` in Python, but not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer literal too large for a float
        return False


def _check_preprocessing(config_file: Path, preprocessing: Any, length: int) -> None:
    """Refuse scaling parameters that are malformed, of the wrong size, non-finite or inverted."""
    try:
        scaling = MinMax.from_config(preprocessing)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{config_file}: bad preprocessing ({exc})") from None
    if scaling.low.ndim != 1 or scaling.high.ndim != 1:
        raise ArtifactError(f"{config_file}: preprocessing min and max must be lists of numbers")
    if len(scaling.low) not in (1, length) or len(scaling.high) != len(scaling.low):
        raise ArtifactError(
            f"{config_file}: preprocessing has {len(scaling.low)} values, expected 1 or {length}"
        )
    for key, values in (("min", scaling.low), ("max", scaling.high)):
        if not np.isfinite(values).all():
            raise ArtifactError(f"{config_file}: preprocessing.{key} has non-finite values")
    # min == max is a constant feature, which MinMax guards with MIN_RANGE; min > max
    # is no fitted scaling at all.
    inverted = np.flatnonzero(scaling.low > scaling.high)
    if len(inverted):
        i = int(inverted[0])
        raise ArtifactError(
            f"{config_file}: preprocessing min > max at feature {i} "
            f"({scaling.low[i]!r} > {scaling.high[i]!r})"
        )


def _check_calibration(config_file: Path, calibration: Any) -> None:
    """Refuse calibration errors that :meth:`Artifact.scorer` could not turn into p-values."""
    if not isinstance(calibration, dict):
        raise ArtifactError(f"{config_file}: calibration must be an object")
    errors = calibration.get("errors", [])
    if not isinstance(errors, list) or not all(
        _is_number(error) and _is_finite(error) for error in errors
    ):
        raise ArtifactError(f"{config_file}: calibration.errors must be a list of finite numbers")


def _checked_regions(config_file: Path, regions: Any, length: int) -> list[dict[str, Any]]:
    """Return ``regions`` once each is ``{"name": str, "start": int, "end": int}`` in the beat."""
    if not isinstance(regions, list):
        raise ArtifactError(f"{config_file}: regions must be a list")
    for region in regions:
        if not (
            isinstance(region, dict)
            and isinstance(region.get("name"), str)
            and all(
                isinstance(region.get(key), int) and not isinstance(region.get(key), bool)
                for key in ("start", "end")
            )
        ):
            raise ArtifactError(
                f"{config_file}: region {region!r} is not "
                "{name: string, start: integer, end: integer}"
            )
        if not 0 <= region["start"] < region["end"] <= length:
            raise ArtifactError(f"{config_file}: region {region} is outside 0..{length}")
    return list(regions)


def _inference_copy(model: Any) -> Any:
    """The same architecture and weights, uncompiled: no optimizer state in the file.

    Scoring never needs Adam's moments, and leaving them out makes the file
    about three times smaller.
    """
    # keras.models.clone_model would carry the compile state (and the optimizer) over.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


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


def save_artifact(target: str | Path, model: Any, config: dict[str, Any], name: str) -> Artifact:
    """Write ``model`` and ``config`` as an artifact directory, atomically.

    Fills in ``format_version``, ``model_sha256``, ``content_sha256``,
    ``model_version`` (from ``content_sha256``: see :func:`content_sha256`) and
    ``input_length``; an existing artifact at ``target`` is replaced, anything
    else there is refused (see :func:`check_artifact_target`). NaN and
    infinite floats anywhere in ``config`` (an undefined metric, say) are
    written as ``null``, so ``artifact.json`` is strict JSON.

    Args:
        target: the artifact directory to create or replace.
        model: the Keras model (no Lambda layers).
        config: the rest of ``artifact.json``.
        name: the model name, the prefix of ``model_version``.

    Returns:
        The written artifact, loaded back and checked.

    Raises:
        ArtifactError: ``target`` is refused, or writing fails (one line with
            the operating system's reason).
    """
    target = check_artifact_target(target)
    config = _finite_or_null(config)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as exc:
        raise ArtifactError(f"cannot write artifact {target}: {exc.strerror or exc}") from None
    try:
        _inference_copy(model).save(staging / MODEL_FILE)
        digest = sha256_bytes((staging / MODEL_FILE).read_bytes())
        full = {
            "format_version": FORMAT_VERSION,
            "model_version": "",
            "input_length": int(model.input_shape[-1]),
            **config,
            "model_sha256": digest,
        }
        content = content_sha256(staging / MODEL_FILE, full)
        full["model_version"] = f"{name}-{content[:12]}"
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
