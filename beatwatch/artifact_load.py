"""Open an artifact directory: check everything that can be checked without TensorFlow.

Loading checks the json, the format version and every field
(:class:`~beatwatch.artifact_config.ArtifactConfig`), the model file's sha256,
the input length, no Lambda layer in the model config, and the content
checksum, so that ``beatwatch detect`` refuses a bad artifact in milliseconds
with one clear line; the Keras model itself is loaded (``safe_mode=True``)
only when :meth:`Artifact.scorer` or :meth:`Artifact.keras_model` is called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beatwatch.artifact_config import CONFIG_FILE, MODEL_FILE, ArtifactConfig
from beatwatch.artifact_version import VERSION_HEX, content_sha256
from beatwatch.data import sha256_bytes
from beatwatch.errors import ArtifactError
from beatwatch.keras_file import class_names, input_lengths, keras_config
from beatwatch.scoring import Scorer
from beatwatch.tensorflow_runtime import import_tensorflow


@dataclass
class Artifact:
    """A checked artifact directory; the Keras model loads on first use.

    Attributes:
        path: the artifact directory.
        config: the checked ``artifact.json``.
    """

    path: Path
    config: ArtifactConfig
    _model: Any = field(default=None, repr=False)
    _scorer: Scorer | None = field(default=None, repr=False)

    @property
    def input_length(self) -> int:
        """Samples per beat."""
        return self.config.input_length

    @property
    def threshold(self) -> float:
        """Alert when ``score > threshold``."""
        return float(self.config.threshold.value)

    @property
    def model_version(self) -> str:
        """``<name>-<first 12 hex of content_sha256>``.

        Older artifacts without ``content_sha256``: of the model file's sha256.
        """
        return self.config.model_version

    @property
    def regions(self) -> list[dict[str, Any]]:
        """Named sample ranges ``{"name", "start", "end"}`` (end exclusive), as explain takes."""
        return self.config.region_dicts()

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
            self._scorer = Scorer(
                self.keras_model(),
                self.config.preprocessing.scaling(),
                self.config.loss,
                self.threshold,
                self.config.calibration_errors(),
            )
        return self._scorer


def read_config(root: Path) -> tuple[dict[str, Any], ArtifactConfig]:
    """``root/artifact.json`` as parsed and as checked.

    Raises:
        ArtifactError: the file is missing, not a JSON object, or a field is refused.
    """
    config_file = root / CONFIG_FILE
    if not config_file.is_file():
        raise ArtifactError(f"{root}: missing {CONFIG_FILE}")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{config_file}: corrupt json ({exc})") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{config_file}: corrupt json (not an object)")
    return raw, ArtifactConfig.from_json(raw, str(config_file))


def load_artifact(path: str | Path) -> Artifact:
    """Open and check an artifact directory without loading TensorFlow.

    Raises:
        ArtifactError: one line each for a missing directory or file, corrupt
            json, an unknown format version, a malformed, non-finite or
            inverted field (preprocessing, threshold, calibration, regions,
            ...), a model checksum mismatch, a Lambda layer, a wrong or
            inconsistent input length, or a content checksum mismatch.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"no artifact directory at {root}")
    config_file, model_file = root / CONFIG_FILE, root / MODEL_FILE
    for required in (config_file, model_file):
        if not required.is_file():
            raise ArtifactError(f"{root}: missing {required.name}")
    raw, config = read_config(root)
    digest = sha256_bytes(model_file.read_bytes())
    if digest != config.model_sha256:
        raise ArtifactError(
            f"{model_file}: checksum mismatch (sha256 {digest[:12]}..., artifact.json says "
            f"{config.model_sha256[:12]}...)"
        )
    architecture = keras_config(model_file)
    if "Lambda" in class_names(architecture):
        raise ArtifactError(f"{model_file}: refusing a model with a Lambda layer (arbitrary code)")
    model_lengths = set(input_lengths(architecture))
    if model_lengths != {config.input_length}:
        raise ArtifactError(
            f"{root}: input length {config.input_length} in artifact.json but "
            f"{sorted(model_lengths)} in {MODEL_FILE}"
        )
    # Last: each field's own check says more than a digest mismatch would. The
    # digest is of the file as parsed, so it vouches for exactly what was read.
    content = config.content_sha256
    if content is not None:
        if content != content_sha256(model_file, raw):
            raise ArtifactError(
                f"{config_file}: content checksum mismatch (a scoring field or the model "
                "changed after saving)"
            )
        if not config.model_version.endswith(f"-{content[:VERSION_HEX]}"):
            raise ArtifactError(
                f"{config_file}: model_version {config.model_version!r} does not end with "
                f"its content checksum {content[:VERSION_HEX]}"
            )
    return Artifact(path=root, config=config)
