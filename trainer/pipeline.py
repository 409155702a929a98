"""One training run: split -> scale -> fit -> calibrate -> evaluate, with the shared Scorer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatwatch.artifact_config import Calibration, SplitRows
from beatwatch.data import Dataset
from beatwatch.errors import ConfigError, DataError
from beatwatch.scoring import MinMax, Scorer
from beatwatch.tensorflow_runtime import import_tensorflow
from trainer.calibrate import calibration_stats, check_rule, threshold_for
from trainer.fit import FitResult, fit
from trainer.metrics import detection_metrics
from trainer.presets import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Row indices (into the CSV's data rows) of each role.

    Attributes:
        train: normal beats the model is fitted on.
        calibration: normal beats the threshold is set on (held out from
            ``train``, or equal to it for the course's ``train`` calibration).
        test: the stratified test split (normal and abnormal), never seen.
    """

    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray

    def to_json(self) -> dict[str, list[int]]:
        """Return the row lists for ``artifact.json``."""
        return {k: getattr(self, k).tolist() for k in ("train", "calibration", "test")}

    def rows(self) -> SplitRows:
        """The ``data.rows`` section of ``artifact.json``."""
        return SplitRows(
            train=tuple(self.train.tolist()),
            calibration=tuple(self.calibration.tolist()),
            test=tuple(self.test.tolist()),
        )


def stratified_split(normal: np.ndarray, config: TrainConfig) -> Split:
    """Split rows: a stratified test share, then normal training beats (some held out).

    Deterministic given ``config.seed``. Abnormal rows of the training share are
    not used (the autoencoder learns normal beats only).
    """
    rng = np.random.default_rng(config.seed)
    test_parts, train_normal = [], np.array([], np.int64)
    for is_normal in (True, False):
        rows = rng.permutation(np.flatnonzero(normal == is_normal))
        n_test = round(len(rows) * config.test_fraction)
        test_parts.append(rows[:n_test])
        if is_normal:
            train_normal = rows[n_test:]
    test = np.sort(np.concatenate(test_parts))
    if config.calibrate_on == "train":
        fit_rows = np.sort(train_normal)
        return Split(fit_rows, fit_rows, test)
    n_holdout = round(len(train_normal) * config.holdout_fraction)
    return Split(np.sort(train_normal[n_holdout:]), np.sort(train_normal[:n_holdout]), test)


@dataclass
class Outcome:
    """Everything one run produced (the artifact and the report are made from it)."""

    config: TrainConfig
    split: Split
    scaling: MinMax
    fitted: FitResult
    scorer: Scorer
    threshold: float
    calibration_errors: np.ndarray
    test_scores: np.ndarray
    metrics: dict[str, Any]
    train_seconds: float


def train(dataset: Dataset, config: TrainConfig, *, verbose: bool = True) -> Outcome:
    """Run one training on ``dataset`` with ``config``.

    ``train_seconds`` covers scaling, fitting and calibration (not data loading
    or the TensorFlow import).

    Raises:
        DataError: too few normal beats for the split.
        ConfigError: the threshold rule cannot be met with this many
            calibration beats (checked before fitting), or the fit diverged.
    """
    split = stratified_split(dataset.normal, config)
    test_normal = int(dataset.normal[split.test].sum())
    if len(split.train) < 2 or len(split.calibration) < 2 or test_normal < 1:
        raise DataError(
            f"{dataset.source}: too few normal rows to split "
            f"(train {len(split.train)}, calibration {len(split.calibration)}, "
            f"test {test_normal}; each needs normal rows)"
        )
    check_rule(config.threshold_rule, config.threshold_params, len(split.calibration))
    if test_normal == len(split.test):
        log.warning(
            "%s: no abnormal rows in the test split: recall, AUROC and AUPRC are undefined",
            dataset.source,
        )
    # Otherwise the first run in a process would time the import too (several
    # seconds), and `--compare` would show it as spread between seeds.
    import_tensorflow()
    started = time.perf_counter()
    scaling = MinMax.fit(dataset.x[split.train], config.scaling)
    held_out = config.calibrate_on == "held-out"
    x_val = scaling.apply(dataset.x[split.calibration]) if held_out else None
    log.info(
        "training %s: %d normal beats, %s%d test rows",
        config.preset,
        len(split.train),
        f"{len(split.calibration)} held out, " if held_out else "",
        len(split.test),
    )
    fitted = fit(config, scaling.apply(dataset.x[split.train]), x_val, verbose=verbose)
    calibration_errors = Scorer(fitted.model, scaling, config.loss, 0.0).score(
        dataset.x[split.calibration]
    )[0]
    losses = fitted.history.get("loss") or [float("nan")]
    if not (np.isfinite(losses).all() and np.isfinite(calibration_errors).all()):
        raise ConfigError(
            f"training diverged: loss {losses[-1]:g} at epoch {len(losses)}; "
            f"lower --learning-rate (now {config.learning_rate:g})"
        )
    threshold = threshold_for(calibration_errors, config.threshold_rule, config.threshold_params)
    scorer = Scorer(fitted.model, scaling, config.loss, threshold, calibration_errors)
    train_seconds = time.perf_counter() - started
    test_scores = scorer.score(dataset.x[split.test])[0]
    metrics = detection_metrics(
        test_scores,
        threshold,
        dataset.normal[split.test],
        None if dataset.classes is None else dataset.classes[split.test],
    )
    log.info(
        "%s: %d epochs (best %d) in %.1f s; threshold %.6g (%s %s); test accuracy %.4f AUROC %.4f",
        config.preset,
        fitted.epochs_run,
        fitted.best_epoch,
        train_seconds,
        threshold,
        config.threshold_rule,
        config.threshold_params,
        metrics["accuracy"],
        metrics["auroc"],
    )
    return Outcome(
        config=config,
        split=split,
        scaling=scaling,
        fitted=fitted,
        scorer=scorer,
        threshold=threshold,
        calibration_errors=calibration_errors,
        test_scores=test_scores,
        metrics=metrics,
        train_seconds=train_seconds,
    )


def calibration_record(outcome: Outcome) -> Calibration:
    """The ``calibration`` section of ``artifact.json``."""
    source = (
        "held-out normal beats"
        if outcome.config.calibrate_on == "held-out"
        else ("the training beats themselves (course recipe)")
    )
    stats = calibration_stats(outcome.calibration_errors)
    summary = {key: stats[key] for key in ("mean", "std", "min", "p50", "p95", "p99", "max")}
    return Calibration(errors=tuple(stats["errors"]), source=source, n=stats["n"], **summary)
