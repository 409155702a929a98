"""Live model updates: watch a model root, load a new version off the hot path, hand it over.

``--model`` names either one artifact directory (loaded once, as before) or a
model root (see :mod:`beatwatch.model_store`) whose ``CURRENT`` pointer a
:class:`ModelWatcher` thread reads every ``interval_s``. When the pointer
changes, the thread loads, checks and warms the new version (artifact checks,
Keras load with ``safe_mode=True``, one scoring call), and parks it; the
detector loop takes it between two batches (:meth:`ModelWatcher.take`), so a
batch is scored by one model and every alert names the version that scored it.

A version that fails (bad pointer, checksum, format, Lambda layer, another
input length than the running model, a Keras error) is refused: logged once,
counted in ``beatwatch_model_refusals_total{reason}``, and the running model
stays until the pointer changes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.artifact import Artifact, load_artifact
from beatwatch.errors import ArtifactError
from beatwatch.model_store import is_model_root, read_pointer
from beatwatch.tensorflow_runtime import import_seconds
from detector.batch import ModelContext
from detector.patient_scoring import PatientScoring, patient_scoring

log = logging.getLogger(__name__)

DEFAULT_MODEL_POLL_S = 5.0
# Beats scored once when a model is loaded: compiles the graph and allocates
# buffers for a typical batch, so the first real batch after a switch is not slower.
WARM_UP_BEATS = 256


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its artifact, compiled scorer and alert context.

    Attributes:
        artifact: the checked artifact.
        scorer: the compiled scoring call (``beatwatch.scoring.Scorer``), warmed up.
        context: threshold, version, regions and limits for ``process_batch``.
        pointer: the ``CURRENT`` line it was loaded from (None: a plain directory).
        patient: the per-stream scoring of a patient-adaptive model (artifact
            section ``"patient"``), None for a model that scores beats alone.
    """

    artifact: Artifact
    scorer: Any
    context: ModelContext
    pointer: str | None = None
    patient: PatientScoring | None = None

    @property
    def version(self) -> str:
        """The model version alerts carry."""
        return self.context.model_version


class ModelRefusedError(Exception):
    """A new model version the detector will not switch to.

    Attributes:
        reason: one of ``beatwatch.metrics.MODEL_REFUSAL_REASONS``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_model_path(path: Path) -> tuple[Path, str | None]:
    """Resolve ``--model``: the artifact directory to load and the pointer read, if a root.

    Raises:
        ArtifactError: a model root whose pointer is bad (one line).
    """
    if is_model_root(path):
        pointer = read_pointer(path)
        return path / pointer, pointer
    return path, None


@dataclass(frozen=True)
class OpenedModel:
    """``--model`` checked without TensorFlow: the artifact to load, and the pointer read.

    Attributes:
        artifact: the checked artifact (the root's current version, for a root).
        pointer: the ``CURRENT`` line, or None for a plain artifact directory.
        max_message_bytes: the detector's beat size limit (for the alert context).
    """

    artifact: Artifact
    pointer: str | None
    max_message_bytes: int

    def warm(self) -> LoadedModel:
        """Load the Keras model and warm it up (imports TensorFlow).

        Raises:
            ArtifactError: Keras cannot load or run the model (one line).
        """
        try:
            return warm_up(self.artifact, self.max_message_bytes, self.pointer)
        except ModelRefusedError as exc:
            raise ArtifactError(str(exc)) from None


def open_model(path: Path, max_message_bytes: int) -> OpenedModel:
    """Check ``--model`` (an artifact directory or a model root) without TensorFlow.

    Raises:
        ArtifactError: a bad pointer or artifact (one line).
    """
    artifact_dir, pointer = check_model_path(path)
    return OpenedModel(load_artifact(artifact_dir), pointer, max_message_bytes)


def warm_up(artifact: Artifact, max_message_bytes: int, pointer: str | None) -> LoadedModel:
    """Load the Keras model and compile and run the scoring graph once.

    Raises:
        ModelRefusedError: reason ``load`` (Keras cannot load it, or scoring fails).
    """
    started = time.monotonic()
    try:
        scorer = artifact.scorer()
        scores, _ = scorer.score(np.zeros((WARM_UP_BEATS, artifact.input_length), np.float32))
    except ArtifactError as exc:
        raise ModelRefusedError("load", str(exc)) from None
    except Exception as exc:  # TensorFlow raises many types for a model it cannot run
        raise ModelRefusedError("load", f"{artifact.path}: cannot score: {exc}") from None
    if scores.shape != (WARM_UP_BEATS,):
        raise ModelRefusedError("load", f"{artifact.path}: scoring returned shape {scores.shape}")
    try:
        patient = patient_scoring(artifact)
    except ArtifactError as exc:
        raise ModelRefusedError("artifact", str(exc)) from None
    if patient is not None:  # the per-stream path calls the model its own way: warm it too
        patient.scorer.reconstruct(np.zeros((WARM_UP_BEATS, artifact.input_length), np.float32))
    # Where a start's time goes (docs/incidents.md, recovery after kill -9).
    log.info(
        "model %s loaded and warmed in %.2f s (this process imported TensorFlow in %.2f s)",
        artifact.model_version,
        time.monotonic() - started,
        import_seconds() or 0.0,
    )
    context = ModelContext(
        input_length=artifact.input_length,
        threshold=artifact.threshold,
        model_version=artifact.model_version,
        regions=artifact.regions,
        max_message_bytes=max_message_bytes,
    )
    return LoadedModel(artifact, scorer, context, pointer, patient)


def load_version(
    root: Path, pointer: str, max_message_bytes: int, input_length: int
) -> LoadedModel:
    """Load and warm the version ``pointer`` names under ``root``; refuse a bad one.

    Raises:
        ModelRefusedError: with the reason (``artifact``, ``input_length``, ``load``).
    """
    try:
        artifact = load_artifact(root / pointer)
    except ArtifactError as exc:
        raise ModelRefusedError("artifact", str(exc)) from None
    if artifact.input_length != input_length:
        raise ModelRefusedError(
            "input_length",
            f"{artifact.path}: takes beats of {artifact.input_length} samples, the running "
            f"model {input_length}",
        )
    return warm_up(artifact, max_message_bytes, pointer)


class ModelWatcher:
    """Watches a model root's ``CURRENT`` in a thread; parks each new good version.

    Args:
        root: the model root.
        running: the model the detector scores with now.
        on_refused: called with the reason of each refused version (a metric).
        interval_s: how often ``CURRENT`` is read.
        loader: loads a version (tests replace it to slow or fail loading).
    """

    def __init__(
        self,
        root: Path,
        running: LoadedModel,
        on_refused: Callable[[str], None],
        *,
        interval_s: float = DEFAULT_MODEL_POLL_S,
        loader: Callable[[Path, str, int, int], LoadedModel] = load_version,
    ) -> None:
        self.root = root
        self.interval_s = interval_s
        self._on_refused = on_refused
        self._loader = loader
        self._input_length = running.context.input_length
        self._max_message_bytes = running.context.max_message_bytes
        self._lock = threading.Lock()
        self._pending: LoadedModel | None = None
        # The last pointer acted on (loaded or refused): read again only when it changes.
        self._seen = running.pointer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelWatcher:
        """Start the watching thread (a daemon: it never holds up an exit)."""
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; a load in progress finishes first (bounded by the load)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive anything a file system does
                log.exception("model watch failed; retrying in %.1f s", self.interval_s)

    def check(self) -> LoadedModel | None:
        """Read ``CURRENT`` once; load, check and park a new version. Returns what it parked."""
        try:
            pointer = read_pointer(self.root)
        except ArtifactError as exc:
            key = f"!{exc}"
            if key != self._seen:  # report a bad pointer once, not every interval
                self._seen = key
                self._refuse("pointer", str(exc))
            return None
        if pointer == self._seen:
            return None
        self._seen = pointer
        log.info("model pointer now %s; loading it", pointer)
        try:
            loaded = self._loader(self.root, pointer, self._max_message_bytes, self._input_length)
        except ModelRefusedError as exc:
            self._refuse(exc.reason, str(exc))
            return None
        with self._lock:
            self._pending = loaded
        log.info("model %s loaded and warmed; switching at the next batch", loaded.version)
        return loaded

    def _refuse(self, reason: str, message: str) -> None:
        log.error("model refused (%s): %s; the running model stays", reason, message)
        self._on_refused(reason)

    def take(self) -> LoadedModel | None:
        """The parked new model, once (the detector calls this between batches)."""
        if self._pending is None:  # the common case, without the lock
            return None
        with self._lock:
            pending, self._pending = self._pending, None
        return pending
