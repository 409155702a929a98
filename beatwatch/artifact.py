"""The model artifact: ``model.keras`` + ``artifact.json`` in one directory.

One import for the artifact's public interface; each job lives in its own module:

- :mod:`beatwatch.artifact_config`: the typed definition of ``artifact.json``
  (:class:`ArtifactConfig`), its validation and its on-disk layout; its
  sections in :mod:`beatwatch.artifact_scoring` (what changes the scores) and
  :mod:`beatwatch.artifact_record` (training data and evaluation), their shared
  field checks in :mod:`beatwatch.artifact_checks`;
- :mod:`beatwatch.artifact_version`: ``content_sha256`` and ``model_version``,
  a digest of what the model computes;
- :mod:`beatwatch.keras_file`: the ``.keras`` architecture read without TensorFlow;
- :mod:`beatwatch.artifact_load`: :class:`Artifact` and :func:`load_artifact`;
- :mod:`beatwatch.artifact_save`: :func:`check_artifact_target` and the atomic
  :func:`save_artifact`.

The artifacts shipped with the package live here too (:data:`SHIPPED_MODEL_DIR`).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from beatwatch.artifact_config import (
    CONFIG_FILE,
    ECG5000_REGION_SPANS,
    FORMAT_VERSION,
    MODEL_FILE,
    ArtifactConfig,
)
from beatwatch.artifact_load import Artifact, load_artifact
from beatwatch.artifact_save import check_artifact_target, save_artifact
from beatwatch.artifact_version import DESCRIPTIVE_KEYS, content_sha256

# The model shipped with the package (the repository's models/, installed as the
# package data beatwatch.models): the default of detect, evaluate and demo,
# whatever the working directory.
SHIPPED_MODELS_DIR = Path(str(importlib.resources.files("beatwatch.models")))
SHIPPED_MODEL_DIR = SHIPPED_MODELS_DIR / "ecg5000"
# Landmarks of the mean normal ECG5000 beat as explain() takes them.
ECG5000_REGIONS: list[dict[str, Any]] = [region.to_json() for region in ECG5000_REGION_SPANS]

__all__ = [
    "CONFIG_FILE",
    "DESCRIPTIVE_KEYS",
    "ECG5000_REGIONS",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "SHIPPED_MODELS_DIR",
    "SHIPPED_MODEL_DIR",
    "Artifact",
    "ArtifactConfig",
    "check_artifact_target",
    "content_sha256",
    "load_artifact",
    "save_artifact",
]
