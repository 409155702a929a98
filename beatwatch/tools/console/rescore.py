"""Re-score an alert's beat with the artifact the detector used, for the page to draw.

The beat is the record at the alert's partition and offset on the beats topic,
decoded as the detector decodes it; the artifact's scorer gives its score,
per-sample error and reconstruction, so the page shows what the detector saw.
An alert from another model version is refused with a reason the page shows:
its score cannot be reproduced with this artifact.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.alert import explain
from beatwatch.artifact import Artifact, load_artifact
from beatwatch.clients import Record
from beatwatch.errors import InvalidBeat
from beatwatch.scoring import MIN_RANGE, Scorer
from beatwatch.tools.console.state import AlertRow
from beatwatch.wire import decode

log = logging.getLogger(__name__)


class Refused(Exception):  # noqa: N818 - reads as the page's verdict
    """The alert's beat cannot be shown re-scored; the message says why, for the page."""


class Rescorer:
    """The artifact, checked at start-up; its Keras model loads once, in the background.

    Raises:
        ArtifactError: the artifact is missing or invalid (at construction).
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.artifact: Artifact = load_artifact(model_dir)
        self._lock = threading.Lock()
        self._error: str | None = None

    @property
    def model_version(self) -> str:
        """The artifact's model version."""
        return self.artifact.model_version

    def warm(self) -> None:
        """Load the model now (TensorFlow takes seconds); a failure is kept for the page."""
        with contextlib.suppress(Refused):
            self._scorer()

    def _scorer(self) -> Scorer:
        with self._lock:
            if self._error is not None:
                raise Refused(self._error)
            try:
                return self.artifact.scorer()
            except Exception as exc:  # a model that does not load must not stop the page
                self._error = f"the model at {self.artifact.path} does not load: {exc}"
                log.error("%s", self._error)
                raise Refused(self._error) from None

    def check_version(self, row: AlertRow) -> None:
        """Refuse an alert that another model version scored.

        Raises:
            Refused: the versions differ.
        """
        if row.model_version != self.model_version:
            raise Refused(
                f"this alert was scored by model {row.model_version}, the console has "
                f"{self.model_version}: it cannot re-score the beat with the same model "
                "(start the console with --model pointing at that artifact)"
            )

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
                record.key, record.value, record.headers,
                expected_length=self.artifact.input_length,
            )  # fmt: skip
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
        scorer = self._scorer()
        beats = samples[None, :].astype(np.float32)
        scores, errors = scorer.score(beats)
        reconstructed = np.asarray(scorer.reconstruct(beats), np.float64)[0]
        scaling = scorer.scaling
        span = np.maximum(scaling.high - scaling.low, MIN_RANGE)
        reconstructed_raw = reconstructed * span + scaling.low
        p_values = scorer.p_values(scores)
        explanation = explain(errors[0], self.artifact.regions)
        return {
            "alert": row.to_json(),
            "samples": [float(v) for v in samples],
            "reconstruction": [round(float(v), 6) for v in reconstructed_raw],
            "error": [float(v) for v in errors[0]],
            "regions": self.artifact.regions,
            "score": float(scores[0]),
            "threshold": scorer.threshold,
            "p_value": None if p_values is None else float(p_values[0]),
            "model_version": self.model_version,
            "summary": explanation["summary"],
        }

    def strip(self, records: list[Record], alerted: set[tuple[int, int]]) -> list[dict[str, Any]]:
        """Recent beats of a stream for the strip, each scored and marked when it alerted."""
        beats = []
        for record in records:
            try:
                beat = decode(
                    record.key, record.value, record.headers,
                    expected_length=self.artifact.input_length,
                )  # fmt: skip
            except InvalidBeat:
                continue  # the detector dead-lettered it; nothing to draw
            beats.append((record, beat))
        if not beats:
            return []
        scores, _ = self._scorer().score(np.stack([b.samples for _, b in beats]))
        return [
            {
                "seq": beat.seq,
                "ts_ms": beat.ts_ms,
                "partition": record.partition,
                "offset": record.offset,
                "samples": [round(float(v), 4) for v in beat.samples],
                "score_ratio": float(score) / self.artifact.threshold,
                "alerted": (record.partition, record.offset) in alerted,
            }
            for (record, beat), score in zip(beats, scores, strict=True)
        ]
