"""The scoring math shared by the trainer and the detector.

A beat's anomaly score is the mean of its per-sample reconstruction error:
raw beat -> MinMax scaling (parameters stored in the artifact) -> autoencoder
-> per-sample error (MSLE exactly as Keras computes it, MSE or MAE) -> mean. An
alert is ``score > threshold``; its p-value is the conformal
``(1 + #{calibration errors >= score}) / (n + 1)`` against normal beats held
out from training.

The trainer's evaluation and the detector both score through :class:`Scorer`,
so offline metrics are computed by the very code that raises alerts. The
NumPy helpers here carry no TensorFlow; :class:`Scorer` imports it when built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatwatch.tensorflow_runtime import import_tensorflow

log = logging.getLogger(__name__)

LOSSES = ("mse", "msle", "mae")
SCOPES = ("global", "per-feature")
# keras.backend.epsilon(): Keras clips both operands of MSLE at it before log1p.
KERAS_EPSILON = 1e-7
# Guards a constant feature (max == min) from a division by zero.
MIN_RANGE = 1e-12
# Scorer.score splits larger inputs so one call never allocates unbounded memory.
MAX_CHUNK = 16384
# Model calls see only these batch sizes (inputs are padded up to the next one):
# powers of two up to 64, multiples of 64 up to 1024, then of 1024. TensorFlow
# keeps compiled kernels per input shape, about 0.17 MiB per batch size seen:
# batches of every size 1-1000 grew a detector by 170 MiB over 2M beats, still
# growing (measured: process_batch alone, batch sizes drawn at random; fixed
# 1000-beat batches stayed flat from 100k beats on). With buckets a detector
# meets at most 37 sizes (22 up to the default --max-batch of 1000).
PAD_SMALL_ROWS = 64
PAD_MEDIUM_ROWS = 1024


def padded_rows(n: int) -> int:
    """The batch size a model call of ``n`` beats is padded to."""
    if n <= 1:
        return n
    if n <= PAD_SMALL_ROWS:
        return 1 << (n - 1).bit_length()
    step = PAD_SMALL_ROWS if n <= PAD_MEDIUM_ROWS else PAD_MEDIUM_ROWS
    return -(-n // step) * step


@dataclass(frozen=True)
class MinMax:
    """MinMax scaling ``(x - low) / (high - low)``, fitted on normal training beats.

    Attributes:
        scope: ``global`` (one min and max over all samples, the course's way)
            or ``per-feature`` (one per sample position).
        low: the minimum, shape (1,) or (L,).
        high: the maximum, shape (1,) or (L,).
    """

    scope: str
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, scope: str) -> MinMax:
        """Fit on ``x`` (n, L)."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scaling scope {scope!r}")
        if scope == "global":
            return cls(scope, np.array([x.min()], np.float64), np.array([x.max()], np.float64))
        return cls(scope, x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64))

    @property
    def scale(self) -> np.ndarray:
        """``1 / (high - low)`` as float32, the factor the graph multiplies by."""
        factor: np.ndarray = 1.0 / np.maximum(self.high - self.low, MIN_RANGE)
        return factor.astype(np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Scale raw beats (n, L) to float32, exactly as the scoring graph does."""
        scaled: np.ndarray = (x.astype(np.float32) - self.low.astype(np.float32)) * self.scale
        return scaled.astype(np.float32)

    def to_config(self) -> dict[str, Any]:
        """Return the JSON form stored in ``artifact.json``."""
        return {
            "kind": "minmax",
            "scope": self.scope,
            "min": self.low.tolist(),
            "max": self.high.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MinMax:
        """Rebuild from :meth:`to_config` output."""
        return cls(
            str(config["scope"]),
            np.asarray(config["min"], np.float64),
            np.asarray(config["max"], np.float64),
        )


def per_sample_error_np(scaled: np.ndarray, reconstructed: np.ndarray, loss: str) -> np.ndarray:
    """Per-sample reconstruction error in NumPy (reference for the graph, tests, reports).

    Args:
        scaled: scaled beats (n, L).
        reconstructed: the model's output (n, L).
        loss: ``mse``, ``mae`` or ``msle`` (Keras' MSLE: both operands
            clipped at epsilon before ``log1p``).

    Returns:
        float32 (n, L); its row mean is the Keras loss of each beat.
    """
    if loss == "mse":
        squared: np.ndarray = np.square(reconstructed - scaled)
        return squared.astype(np.float32)
    if loss == "mae":
        absolute: np.ndarray = np.abs(reconstructed - scaled)
        return absolute.astype(np.float32)
    if loss == "msle":
        first = np.log1p(np.maximum(reconstructed, KERAS_EPSILON))
        second = np.log1p(np.maximum(scaled, KERAS_EPSILON))
        squared_log: np.ndarray = np.square(first - second)
        return squared_log.astype(np.float32)
    raise ValueError(f"unknown loss {loss!r}")


def conformal_p_values(calibration_sorted: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return ``(1 + #{cal >= s}) / (n + 1)`` for each score ``s``.

    Args:
        calibration_sorted: calibration errors of normal beats, ascending.
        scores: the scores to rate.
    """
    n = len(calibration_sorted)
    at_least = n - np.searchsorted(calibration_sorted, scores, side="left")
    return (1.0 + at_least) / (n + 1.0)


def set_scoring_threads(threads: int) -> None:
    """Let TensorFlow use ``threads`` threads per model call; 0 keeps its default.

    TensorFlow's default is a pool of one thread per core. The models here are
    small dense networks that gain nothing from it (1000 beats: 2.2 ms with
    the pool and 2.1 ms on one thread), while the pool's second thread burns
    CPU (4.3 against 3.0 ms of CPU per call) that the Kafka client and a
    co-located broker need. Takes effect only before TensorFlow first runs an
    operation in this process; afterwards a different value is logged and ignored.
    """
    if threads <= 0:
        return
    import_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("TensorFlow already runs; scoring threads stay at its setting")


class Scorer:
    """Scores raw beats with one compiled TensorFlow call per batch.

    Preprocessing, the model and the error all run inside a ``tf.function``
    with a fixed ``[None, L]`` signature, so any batch size reuses one graph
    (no retracing) and a batch of 512 costs one call.
    """

    def __init__(
        self,
        model: Any,
        scaling: MinMax,
        loss: str,
        threshold: float,
        calibration_errors: np.ndarray | None = None,
    ) -> None:
        """Build the scoring graph.

        Args:
            model: a Keras model mapping scaled (n, L) beats to (n, L).
            scaling: the preprocessing fitted at training time.
            loss: ``mse``, ``mae`` or ``msle``.
            threshold: alert when ``score > threshold``.
            calibration_errors: normal held-out errors for p-values, or None.
        """
        import_tensorflow()
        import tensorflow as tf

        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}")
        self.model = model
        self.scaling = scaling
        self.loss = loss
        self.threshold = float(threshold)
        self.input_length = int(model.input_shape[-1])
        self._calibration = (
            None if calibration_errors is None else np.sort(np.asarray(calibration_errors, float))
        )
        low = tf.constant(scaling.low.astype(np.float32))
        scale = tf.constant(scaling.scale)
        epsilon = tf.constant(KERAS_EPSILON, tf.float32)

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, self.input_length], tf.float32)],
            autograph=False,
        )
        def _score(beats: Any) -> Any:
            scaled = (beats - low) * scale
            reconstructed = model(scaled, training=False)
            if loss == "msle":
                diff = tf.math.log1p(tf.maximum(reconstructed, epsilon)) - tf.math.log1p(
                    tf.maximum(scaled, epsilon)
                )
            else:
                diff = reconstructed - scaled
            error = tf.abs(diff) if loss == "mae" else tf.square(diff)
            return tf.reduce_mean(tf.cast(error, tf.float64), axis=1), error

        # The concrete graph, called directly: the polymorphic tf.function would
        # check its arguments and look up its trace cache on every call, about
        # 0.2 ms of a 25-beat batch's 0.5 ms (measured), paid once per batch.
        self._score = _score.get_concrete_function()

    def score(self, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score raw (unscaled) beats.

        Args:
            beats: float32 (n, L).

        Returns:
            ``(scores, per_sample_error)``: float64 (n,) and float32 (n, L),
            where ``scores`` is the row mean of ``per_sample_error``.
        """
        beats = np.ascontiguousarray(beats, dtype=np.float32)
        if beats.ndim != 2 or beats.shape[1] != self.input_length:
            raise ValueError(f"beats must have shape (n, {self.input_length}), got {beats.shape}")
        n = len(beats)
        if n <= MAX_CHUNK:
            rows = padded_rows(n)
            if rows != n:  # zero rows: finite through the model, and cut off below
                beats = np.concatenate([beats, np.zeros((rows - n, beats.shape[1]), np.float32)])
            scores, errors = self._score(beats)
            return scores.numpy()[:n], errors.numpy()[:n]
        parts = [self.score(beats[i : i + MAX_CHUNK]) for i in range(0, len(beats), MAX_CHUNK)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def reconstruct(self, beats: np.ndarray) -> np.ndarray:
        """Return the model's reconstruction of raw beats, in scaled units (for reports)."""
        scaled = self.scaling.apply(np.asarray(beats, np.float32))
        return np.asarray(self.model(scaled, training=False))

    def p_values(self, scores: np.ndarray) -> np.ndarray | None:
        """Conformal p-values of ``scores``, or None without calibration errors."""
        if self._calibration is None or len(self._calibration) == 0:
            return None
        return conformal_p_values(self._calibration, np.asarray(scores, np.float64))
