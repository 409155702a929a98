"""Fit an autoencoder on normal beats, deterministically, with progress per epoch."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatwatch.tensorflow_runtime import import_tensorflow
from trainer.presets import TrainConfig, build_model

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """A fitted model and how it got there.

    Attributes:
        model: the Keras model (best weights when early stopping).
        history: per-epoch ``loss`` (and ``val_loss``) lists.
        epochs_run: epochs actually trained.
        best_epoch: 1-based epoch whose weights were kept.
        seconds: wall time of ``fit``.
    """

    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    seconds: float


def seed_everything(seed: int) -> None:
    """Make training repeatable: Python, NumPy and TF seeds, deterministic ops."""
    import_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(
    config: TrainConfig, x_fit: np.ndarray, x_val: np.ndarray | None, *, verbose: bool = True
) -> FitResult:
    """Train on scaled normal beats; early-stop on ``x_val`` when ``config.patience``.

    Args:
        config: the training configuration.
        x_fit: scaled normal beats to fit, (n, L) float32.
        x_val: scaled held-out normal beats, or None.
        verbose: log one progress line per epoch.
    """
    seed_everything(config.seed)  # first: it quiets TF before TF is imported
    import keras

    model = build_model(config, x_fit.shape[1])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=config.loss,
        metrics=["mse"] if config.loss != "mse" else [],
    )
    # A diverged fit stops at once; train() then refuses it with one line.
    callbacks: list[Any] = [keras.callbacks.TerminateOnNaN()]
    if verbose:
        callbacks.append(_Progress(config.epochs))
    if config.patience and x_val is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True
            )
        )
    started = time.perf_counter()
    history = model.fit(
        x_fit,
        x_fit,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=None if x_val is None else (x_val, x_val),
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - started
    curves = {key: [float(v) for v in values] for key, values in history.history.items()}
    epochs_run = len(curves["loss"])
    if "val_loss" in curves and config.patience:
        best_epoch = int(np.argmin(curves["val_loss"])) + 1
    else:
        best_epoch = epochs_run
    return FitResult(model, curves, epochs_run, best_epoch, seconds)


class _Progress:
    """Keras callback logging ``epoch i/n loss ... val_loss ...`` lines."""

    def __new__(cls, epochs: int) -> Any:
        import keras

        class Progress(keras.callbacks.Callback):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                shown = " ".join(f"{k} {v:.5f}" for k, v in sorted((logs or {}).items()))
                elapsed = time.perf_counter() - self.started
                log.info("epoch %d/%d %s (%.1f s)", epoch + 1, epochs, shown, elapsed)

        return Progress()
