"""Train the patient-adaptive model from annotated continuous records (WFDB).

Beats are cut at the reference R peaks with the artifact's segmentation (the
cutter the producer uses); labels pick the autoencoder's training beats (AAMI
N) and nothing else: the scorer never sees them. Each record is scaled as a
live stream would scale itself (:meth:`beatwatch.patient.StreamScorer.lead_scales`
from its first beats), so training and scoring see the same inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from beatwatch.data import sha256_bytes
from beatwatch.errors import DataError
from beatwatch.patient import PatientRules, StreamScorer, qrs_region, stream_beats
from beatwatch.recording import Recording, read_wfdb
from beatwatch.segmentation import Segmentation, cut_beats
from trainer.presets import TrainConfig

log = logging.getLogger(__name__)

# The scored region around the R peak (ms), chosen on record-disjoint folds.
REGION_MS = (-80.0, 100.0)
# The patient rules chosen on record-disjoint folds of MIT-BIH DS1; region,
# scales and the population reference are filled in by training.
RULES_CHOSEN: dict[str, Any] = {
    "learn_s": 300.0,
    "scale_beats": 128,
    "good_quantile": 0.5,
    "ref_quantile": 0.25,
    "template_alpha": 0.005,
    "rr_beats": 32,
    "prem_weight": 4.0,
    "v_threshold": 4.0,
    "v_morph_min": 2.5,
    "v_morph_premature": 3.0,
    "s_rr_beats": 256,
    "s_prematurity": 0.82,
    "irregularity_beats": 17,
    "irregularity_quantile": 0.3,
    "irregularity_max": 0.07,
}
# Normal beats held out of fitting (early stopping, population reference).
HOLDOUT_FRACTION = 0.1


@dataclass
class RecordBeats:
    """One record's beats cut at its reference R peaks, in order.

    Attributes:
        name: the record.
        samples: float32 ``(n, seg.n_values)``.
        r_index: R peak sample index of each beat.
        ts_ms: beat times from the record's start.
        rr_prev_ms: interval from the previous R peak.
        beat_class: AAMI class of each beat (training selection and evaluation only).
        sha256: of the record's files (header, signal, annotations), for provenance.
    """

    name: str
    samples: np.ndarray
    r_index: np.ndarray
    ts_ms: np.ndarray
    rr_prev_ms: np.ndarray
    beat_class: list[str]
    sha256: dict[str, str]


def load_record_beats(wfdb_dir: str | Path, name: str, seg: Segmentation) -> RecordBeats:
    """Read a WFDB record and cut its annotated beats.

    Raises:
        DataError: the record is missing, malformed, unannotated or lacks a lead.
    """
    stem = Path(wfdb_dir) / name
    if not stem.with_suffix(".hea").is_file():
        raise DataError(f"--records: no record {name} in {wfdb_dir} ({name}.hea not found)")
    rec: Recording = read_wfdb(stem)
    if rec.ann_index is None:
        raise DataError(f"{name}: no reference annotations (.atr) to train from")
    try:
        cut = cut_beats(rec.signal, rec.fs_hz, rec.lead_names, rec.ann_index, seg)
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from None
    classes = rec.ann_class
    files = {
        p.name: sha256_bytes(p.read_bytes())
        for p in sorted(Path(wfdb_dir).glob(f"{name}.*"))
        if p.suffix in (".hea", ".dat", ".atr")
    }
    r_index = rec.ann_index[cut.kept]
    return RecordBeats(
        name=name,
        samples=cut.beats,
        r_index=r_index,
        ts_ms=np.round(r_index * 1000.0 / rec.fs_hz).astype(np.int64),
        rr_prev_ms=cut.rr_prev_ms,
        beat_class=[classes[i] for i in cut.kept],
        sha256=files,
    )


def base_rules(seg: Segmentation, **overrides: Any) -> PatientRules:
    """The chosen rules for ``seg``, before training fills in the scales."""
    start, end = qrs_region(seg, *REGION_MS)
    values = {**RULES_CHOSEN, **overrides}
    return PatientRules(
        region_start=start,
        region_end=end,
        input_scale=1.0,
        population_ref=1.0,
        n_leads=len(seg.leads),
        **values,
    )


def stream_scaled(
    records: Sequence[RecordBeats], rules: PatientRules, n_values: int
) -> list[np.ndarray]:
    """Each record's beats divided by its own lead scales, as its live stream would be."""
    scorer = StreamScorer(rules, _identity, n_values)
    out = []
    for r in records:
        beats = stream_beats(np.arange(len(r.samples)), r.ts_ms, r.samples, r.rr_prev_ms)
        scales, _ = scorer.lead_scales(beats, scorer.initial_state())
        out.append(scorer.scaled(r.samples, scales))
    return out


def _identity(x: np.ndarray) -> np.ndarray:
    return x


@dataclass
class TrainedModel:
    """The autoencoder and the rules that score with it."""

    model: Any
    rules: PatientRules
    fit_info: dict[str, Any]


def train_records(
    records: Sequence[RecordBeats],
    seg: Segmentation,
    config: TrainConfig,
    *,
    rules_overrides: dict[str, Any] | None = None,
    verbose: bool = False,
) -> TrainedModel:
    """Fit the autoencoder on the records' normal beats and fill in the rules.

    Raises:
        DataError: no normal beats to train on.
    """
    from trainer.fit import fit

    rules = base_rules(seg, **(rules_overrides or {}))
    scaled = stream_scaled(records, rules, seg.n_values)
    normal = np.concatenate(
        [x[np.asarray(r.beat_class) == "N"] for x, r in zip(scaled, records, strict=True)]
    )
    if len(normal) < 100:
        raise DataError(f"only {len(normal)} normal beats in the training records")
    input_scale = float(np.std(normal))
    normal = (normal / input_scale).astype(np.float32)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(normal))
    n_val = max(1, round(HOLDOUT_FRACTION * len(normal)))
    x_val, x_fit = normal[order[:n_val]], normal[order[n_val:]]
    fitted = fit(config, x_fit, x_val, verbose=verbose)
    rebuilt = np.asarray(fitted.model.predict(x_val, batch_size=4096, verbose=0))
    lo, hi = rules.region_start, rules.region_end
    errors = np.mean((x_val[:, lo:hi] - rebuilt[:, lo:hi]) ** 2, axis=1)
    rules = replace(rules, input_scale=input_scale, population_ref=float(np.median(errors)))
    info = {
        "normal_beats": len(normal),
        "fit_beats": len(x_fit),
        "holdout_beats": int(n_val),
        "epochs_run": fitted.epochs_run,
        "best_epoch": fitted.best_epoch,
        "train_seconds": round(fitted.seconds, 2),
    }
    return TrainedModel(fitted.model, rules, info)


def keras_reconstruct(model: Any) -> Any:
    """A ``reconstruct`` callable for :class:`StreamScorer` from an in-memory Keras model."""

    def reconstruct(scaled: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(scaled, np.float32), batch_size=4096, verbose=0))

    return reconstruct
