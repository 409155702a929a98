"""The model version: a digest of what a model computes, not of when it was saved.

``model_version`` is ``<name>-<first 12 hex of content_sha256>``, a digest of
the architecture, the weights' values and every ``artifact.json`` field that
changes scoring (preprocessing, loss, threshold, calibration, regions,
segmentation, ...). The ``.keras`` file's own bytes carry its save time, so
its sha256 (``model_sha256``, the integrity check) differs between two
identical trainings; the version, and so every alert id, does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact_config import ArtifactConfig
from beatwatch.errors import ArtifactError

# Fields of artifact.json that describe how a model was made, not what it computes:
# they stay out of content_sha256 (a training's date or wall time must not change the
# version). Every other field is part of the version, so a new field that changes
# scoring changes the version without being listed here.
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
VERSION_HEX = 12


def model_version(name: str, content: str) -> str:
    """``<name>-<first 12 hex of content>``: the version alerts and metrics carry."""
    return f"{name}-{content[:VERSION_HEX]}"


def content_sha256(model_file: Path, config: ArtifactConfig | Mapping[str, Any]) -> str:
    """The sha256 of what a model computes, independent of when it was saved.

    Covers the Keras architecture (``config.json`` inside the ``.keras`` zip),
    every weight array (path, dtype, shape and bytes, read with h5py; no
    TensorFlow) and the fields of ``config`` outside :data:`DESCRIPTIVE_KEYS`,
    all serialised as canonical JSON.

    Args:
        model_file: the ``.keras`` file.
        config: ``artifact.json``, typed or as parsed (descriptive fields are ignored).

    Raises:
        ArtifactError: the file is not a readable ``.keras`` zip with weights.
    """
    import h5py  # type: ignore[import-untyped]  # comes with Keras

    if isinstance(config, ArtifactConfig):
        config = config.to_json()
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
