"""Re-score an alert's beat with the artifact the detector used, for the page to draw.

The beat is the record at the alert's partition and offset on the beats topic,
decoded as the detector decodes it; the artifact's scorer gives its score,
per-sample error and reconstruction, so the page shows what the detector saw.
An alert is re-scored with the model version it names: the artifact given,
or any version published in a model root given instead. An alert of a version
the console does not have is refused with a reason the page shows: its score
cannot be reproduced.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.alert import explain
from beatwatch.artifact import Artifact, load_artifact
from beatwatch.clients import Record
from beatwatch.errors import ArtifactError, InvalidBeat
from beatwatch.model_store import VERSIONS_DIR, current_dir, is_model_root, list_versions
from beatwatch.scoring import MIN_RANGE, Scorer
from beatwatch.tools.console.state import AlertRow
from beatwatch.wire import decode

log = logging.getLogger(__name__)

# Versions other than the one given kept loaded at once (each holds a Keras model).
MAX_OTHER_MODELS = 2


class Refused(Exception):  # noqa: N818 - reads as the page's verdict
    """The alert's beat cannot be shown re-scored; the message says why, for the page."""


class Rescorer:
    """The artifact (or model root) the detector uses; Keras models load on first use.

    ``model_path`` is one artifact directory, or a model root (see
    :mod:`beatwatch.model_store`): then an alert is re-scored with the version it
    names, so alerts from before and after a live model switch are both shown.

    Raises:
        ArtifactError: the artifact, or the root's current one, is missing or
            invalid (at construction).
    """

    def __init__(self, model_path: str | Path) -> None:
        self.root = Path(model_path) if is_model_root(model_path) else None
        self.artifact: Artifact = load_artifact(
            current_dir(self.root) if self.root is not None else model_path
        )
        self._lock = threading.Lock()
        self._others: OrderedDict[str, Artifact] = OrderedDict()
        self._errors: dict[str, str] = {}

    @property
    def model_version(self) -> str:
        """The version of the artifact given (of the root's current one at start-up)."""
        return self.artifact.model_version

    def warm(self) -> None:
        """Load the model now (TensorFlow takes seconds); a failure is kept for the page."""
        with contextlib.suppress(Refused):
            self._scorer(self.artifact)

    def artifact_for(self, version: str) -> Artifact:
        """The artifact of ``version``: the one given, or a published version of the root.

        Raises:
            Refused: no such version here.
        """
        if version == self.artifact.model_version:
            return self.artifact
        with self._lock:
            if version in self._others:
                self._others.move_to_end(version)
                return self._others[version]
            # Only names listed under versions/ are looked up: a message's text
            # never becomes a path.
            if self.root is None or version not in list_versions(self.root):
                where = (
                    f"the model root {self.root} has no version {version}"
                    if self.root is not None
                    else f"the console has {self.model_version}"
                )
                raise Refused(
                    f"this alert was scored by model {version}, {where}: it cannot re-score "
                    "the beat with the same model (start the console with --model pointing "
                    "at that artifact, or at the detector's model root)"
                )
            try:
                artifact = load_artifact(self.root / VERSIONS_DIR / version)
            except ArtifactError as exc:
                raise Refused(f"model {version} in the model root is not usable: {exc}") from None
            if artifact.model_version != version:
                raise Refused(f"the model root's {version} holds {artifact.model_version}")
            self._others[version] = artifact
            if len(self._others) > MAX_OTHER_MODELS:
                self._others.popitem(last=False)
            return artifact

    def _scorer(self, artifact: Artifact) -> Scorer:
        with self._lock:
            version = artifact.model_version
            if version in self._errors:
                raise Refused(self._errors[version])
            try:
                return artifact.scorer()
            except Exception as exc:  # a model that does not load must not stop the page
                self._errors[version] = f"the model at {artifact.path} does not load: {exc}"
                log.error("%s", self._errors[version])
                raise Refused(self._errors[version]) from None

    def check_version(self, row: AlertRow) -> None:
        """Refuse an alert whose model version this console cannot re-score with.

        Raises:
            Refused: no artifact of that version here.
        """
        self.artifact_for(row.model_version)

    def beat_of(self, row: AlertRow, record: Record | None) -> np.ndarray:
        """The alert's beat samples from its record.

        Raises:
            Refused: the record is gone, unreadable, or not this alert's beat.
        """
        if record is None:
            raise Refused(
                f"the beat at partition {row.partition} offset {row.offset} is no longer "
                "on the beats topic"
            )
        try:
            beat = decode(
                record.key,
                record.value,
                record.headers,
                expected_length=self.artifact_for(row.model_version).input_length,
            )
        except InvalidBeat as exc:
            raise Refused(f"the record at the alert's offset is not a beat: {exc}") from None
        if beat.stream != row.stream or beat.seq != row.seq:
            raise Refused(
                f"the record at partition {row.partition} offset {row.offset} is not this "
                "alert's beat (another stream or beat number)"
            )
        return beat.samples

    def detail(self, row: AlertRow, samples: np.ndarray) -> dict[str, Any]:
        """Everything the page draws for one alert.

        The reconstruction is mapped back to the beat's raw units (the inverse
        of the artifact's MinMax scaling), so it lies over the waveform; the
        per-sample error stays in the model's loss units.
        """
        artifact = self.artifact_for(row.model_version)
        scorer = self._scorer(artifact)
        beats = samples[None, :].astype(np.float32)
        scores, errors = scorer.score(beats)
        reconstructed = np.asarray(scorer.reconstruct(beats), np.float64)[0]
        scaling = scorer.scaling
        span = np.maximum(scaling.high - scaling.low, MIN_RANGE)
        reconstructed_raw = reconstructed * span + scaling.low
        p_values = scorer.p_values(scores)
        explanation = explain(errors[0], artifact.regions)
        return {
            "alert": row.to_json(),
            "samples": [float(v) for v in samples],
            "reconstruction": [round(float(v), 6) for v in reconstructed_raw],
            "error": [float(v) for v in errors[0]],
            "regions": artifact.regions,
            "score": float(scores[0]),
            "threshold": scorer.threshold,
            "p_value": None if p_values is None else float(p_values[0]),
            "model_version": artifact.model_version,
            "summary": explanation.summary,
        }

    def strip(
        self, records: list[Record], alerted: set[tuple[int, int]], version: str
    ) -> list[dict[str, Any]]:
        """Recent beats of a stream for the strip, each scored and marked when it alerted.

        They are scored with ``version`` (the model of the stream's newest alert)
        when it is here, else with the artifact given.
        """
        try:
            artifact = self.artifact_for(version)
        except Refused:
            artifact = self.artifact
        beats = []
        for record in records:
            try:
                beat = decode(
                    record.key,
                    record.value,
                    record.headers,
                    expected_length=artifact.input_length,
                )
            except InvalidBeat:
                continue  # the detector dead-lettered it; nothing to draw
            beats.append((record, beat))
        if not beats:
            return []
        scores, _ = self._scorer(artifact).score(np.stack([b.samples for _, b in beats]))
        return [
            {
                "seq": beat.seq,
                "ts_ms": beat.ts_ms,
                "partition": record.partition,
                "offset": record.offset,
                "samples": [round(float(v), 4) for v in beat.samples],
                "score_ratio": float(score) / artifact.threshold,
                "alerted": (record.partition, record.offset) in alerted,
            }
            for (record, beat), score in zip(beats, scores, strict=True)
        ]
