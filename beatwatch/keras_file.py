"""Read a ``.keras`` file's architecture without TensorFlow: what load refuses before Keras.

A ``.keras`` file is a zip whose ``config.json`` holds the model's layer
tree; reading it with the standard library lets ``load_artifact`` refuse a
Lambda layer (arbitrary code) or an input length that disagrees with
``artifact.json`` in milliseconds.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from beatwatch.errors import ArtifactError


def keras_config(model_file: Path) -> dict[str, Any]:
    """The architecture (``config.json``) inside ``model_file``.

    Raises:
        ArtifactError: not a readable ``.keras`` zip, or its config is not an object.
    """
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


def class_names(node: Any) -> list[str]:
    """Every ``class_name`` anywhere in a Keras config tree."""
    return [d["class_name"] for d in _config_dicts(node) if isinstance(d.get("class_name"), str)]


def input_lengths(node: Any) -> list[int]:
    """The last dimension of every ``batch_shape``/``batch_input_shape`` in a config tree."""
    return [
        shape[-1]
        for d in _config_dicts(node)
        for key in ("batch_shape", "batch_input_shape")
        if isinstance(shape := d.get(key), list) and shape and isinstance(shape[-1], int)
    ]
