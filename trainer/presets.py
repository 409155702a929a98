"""Model presets and the Keras model they build.

``seed`` is exactly the course recipe; ``default`` is the better model chosen
by measurement (see ``docs/trainer.md`` and ``beatwatch train --compare``).
Keras is imported only inside :func:`build_model`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from beatwatch.tensorflow_runtime import import_tensorflow

THRESHOLD_RULES = ("mean+k*std", "percentile", "fpr")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (with the data and the seed).

    Attributes:
        preset: the preset this config started from.
        encoder: Dense widths of the encoder; the last is the code size.
        decoder: hidden Dense widths of the decoder (the output layer has L units).
        noise_std: std of Gaussian noise added to inputs while training
            (a denoising autoencoder; inactive at inference); 0 for none.
        activation: hidden-layer activation.
        output_activation: output-layer activation (sigmoid: scaled beats are in [0, 1]).
        loss: ``mae``, ``mse`` or ``msle``; also the anomaly score.
        learning_rate: Adam's learning rate.
        epochs: maximum epochs.
        batch_size: minibatch size.
        patience: early-stopping patience in epochs on held-out normal beats;
            0 trains all ``epochs``.
        scaling: MinMax ``global`` or ``per-feature``.
        calibrate_on: ``held-out`` normal beats (never test rows) or ``train``
            (the course: the training beats' own errors).
        holdout_fraction: share of normal training-split beats held out for
            calibration and early stopping (``held-out`` only).
        test_fraction: share of all rows in the stratified test split.
        threshold_rule: ``mean+k*std``, ``percentile`` or ``fpr``.
        threshold_params: ``{"k": ...}``, ``{"q": ...}`` or ``{"fpr": ...}``.
        seed: seeds the split, the weights and the shuffling.
    """

    preset: str
    encoder: tuple[int, ...]
    decoder: tuple[int, ...]
    noise_std: float = 0.0
    activation: str = "relu"
    output_activation: str = "sigmoid"
    loss: str = "mse"
    learning_rate: float = 1e-3
    epochs: int = 20
    batch_size: int = 512
    patience: int = 0
    scaling: str = "global"
    calibrate_on: str = "held-out"
    holdout_fraction: float = 0.2
    test_fraction: float = 0.2
    threshold_rule: str = "mean+k*std"
    threshold_params: dict[str, float] = field(default_factory=lambda: {"k": 1.0})
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def with_(self, **changes: Any) -> TrainConfig:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


PRESETS: dict[str, TrainConfig] = {
    # The course recipe, faithfully: it calibrates on the training errors
    # themselves (optimistic: those beats were fitted), with mean + 1 std.
    "seed": TrainConfig(
        preset="seed",
        encoder=(64, 32, 16, 8),
        decoder=(16, 32, 64),
        loss="msle",
        epochs=20,
        batch_size=512,
        scaling="global",
        calibrate_on="train",
        threshold_rule="mean+k*std",
        threshold_params={"k": 1.0},
    ),
    # Continuous ECG (beatwatch train --wfdb): a dense autoencoder of beats cut
    # with both leads, in per-stream-scaled mV (not squashed into [0, 1]),
    # scored by beatwatch.patient; chosen on record-disjoint MIT-BIH folds.
    "mitbih": TrainConfig(
        preset="mitbih",
        encoder=(128, 64, 16),
        decoder=(64, 128),
        output_activation="linear",
        loss="mse",
        epochs=30,
        batch_size=256,
        patience=3,
        threshold_rule="percentile",
        threshold_params={"q": 100.0},
    ),
    # Chosen by measurement (5 seeds, see docs/trainer.md).
    "default": TrainConfig(
        preset="default",
        encoder=(128, 64, 16),
        decoder=(64, 128),
        loss="mae",
        epochs=200,
        batch_size=64,
        patience=20,
        scaling="global",
        calibrate_on="held-out",
        threshold_rule="fpr",
        threshold_params={"fpr": 0.02},
    ),
}


def build_model(config: TrainConfig, input_length: int) -> Any:
    """Build the dense autoencoder of ``config`` (uncompiled).

    Plain ``Dense`` layers in a ``Sequential`` model, so it saves in the native
    format and loads with ``safe_mode=True``.
    """
    import_tensorflow()
    import keras

    layers: list[Any] = [keras.Input(shape=(input_length,), name="beat")]
    if config.noise_std > 0:
        layers.append(keras.layers.GaussianNoise(config.noise_std, name="denoising"))
    for i, width in enumerate(config.encoder):
        layers.append(keras.layers.Dense(width, config.activation, name=f"encoder_{i}"))
    for i, width in enumerate(config.decoder):
        layers.append(keras.layers.Dense(width, config.activation, name=f"decoder_{i}"))
    layers.append(keras.layers.Dense(input_length, config.output_activation, name="reconstruction"))
    return keras.Sequential(layers, name=f"autoencoder_{config.preset}")
