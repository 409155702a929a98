"""Live patient-adaptive scoring: each stream's beats through its own :class:`StreamScorer` state.

A model whose artifact has a ``"patient"`` section (``models/mitbih``) scores a
beat against what the stream learned from its own earlier beats
(:mod:`beatwatch.patient`). The detector runs exactly what ``beatwatch
evaluate`` runs offline, beat for beat:

- the stream's state is the ``"patient"`` part of its record in the state
  store (:mod:`beatwatch.state`, kept by :mod:`detector.stream_state`): written
  to the changelog with the batch, rebuilt when a partition is assigned, and
  set only for beats the stream's seq guard accepts;
- the beats of one stream are scored in ``seq`` order (a batch may hold many),
  by the scorer's own steps: :meth:`StreamScorer.lead_scales`, the autoencoder
  (one call for the whole batch: its rows do not depend on the batch, measured
  bit-identical), :meth:`StreamScorer.region_residuals` and
  :meth:`StreamScorer.score_residuals`, as :meth:`StreamScorer.score_beats`;
- a redelivered beat (``seq`` at or below the last one the state consumed) is
  scored against the current state and changes nothing.

Beats that do not match the artifact's segmentation are dead-lettered: another
length (``length``, checked by the decoder) and, when the rules score rhythm,
no ``rr_prev_ms`` (``missing-rr``). The state part records the model version it
was learned with; a stream meeting another version learns again.

Alerts carry ``kind`` (``"V"``: unlike the stream's normal; ``"S"``: premature
in a regular rhythm), ``learning``, the score and the threshold of the rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatwatch.alert_batch import encode_alerts
from beatwatch.artifact import Artifact
from beatwatch.clients.client import next_offsets
from beatwatch.errors import ArtifactError
from beatwatch.explanation import explain_numbers
from beatwatch.patient import KIND_NAMES, StreamBeats, StreamScorer, stream_beats
from detector.batch import (
    UNSCORABLE,
    BatchOutcome,
    ModelContext,
    Outgoing,
    Record,
    dead_letter,
    decode_checked,
)
from detector.scored_beats import ScoredBeats

# The part of a stream's state record this scorer owns.
PART = "patient"
MISSING_RR = "missing-rr"


class StateAccess:
    """How the scorer reads stream state (the state step's store; a dict in unit tests)."""

    def prepare(self) -> None:
        """Rebuild partitions assigned since the last call, before any of their beats is scored."""

    def owns(self, partition: int) -> bool:
        """Whether ``partition``'s state is here."""
        raise NotImplementedError

    def part(self, partition: int, stream: str) -> Any:
        """The stream's ``"patient"`` part, or None."""
        raise NotImplementedError


@dataclass(frozen=True)
class PatientScoring:
    """A patient-adaptive model ready for the detector.

    Attributes:
        scorer: the artifact's stream scorer (the same class ``evaluate`` uses).
        model_version: the version its states are learned with.
        needs_rr: the rules score rhythm (prematurity), so a beat must carry ``rr_prev_ms``.
    """

    scorer: StreamScorer
    model_version: str
    needs_rr: bool

    @property
    def threshold(self) -> float:
        """The score above which a beat is ventricular-like (alerts carry it)."""
        return float(self.scorer.rules.v_threshold)


def patient_scoring(artifact: Artifact) -> PatientScoring | None:
    """The patient-adaptive scoring of ``artifact``, or None when it has no ``"patient"`` section.

    Loads the Keras model (once per artifact).

    Raises:
        ArtifactError: invalid patient rules, or a segmentation that does not cut
            beats of the model's input length (one line).
    """
    if artifact.config.patient is None:
        return None
    seg = artifact.config.segmentation
    try:
        scorer = StreamScorer.from_artifact(artifact)
        if seg is not None and seg.n_values != artifact.input_length:
            raise ValueError(
                f"segmentation cuts {seg.n_values} values per beat, "
                f"the model takes {artifact.input_length}"
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{artifact.path}: invalid patient rules: {exc}") from None
    rules = scorer.rules
    return PatientScoring(
        scorer=scorer,
        model_version=artifact.model_version,
        needs_rr=rules.prem_weight > 0 or rules.s_prematurity > 0,
    )


@dataclass
class _Stream:
    """One stream's beats of a batch, in seq order, and what scoring them produced."""

    partition: int
    stream: str
    rows: list[int]  # decoded rows, in seq order
    beats: StreamBeats
    state: dict[str, Any]
    scaled: np.ndarray


def score_patient_batch(
    records: Sequence[Record],
    scoring: PatientScoring,
    model: ModelContext,
    state: StateAccess,
    now_ms: int,
) -> BatchOutcome:
    """Decode, validate and score ``records`` with each stream's state; alerts and dead letters.

    The new state of each stream goes into ``outcome.beats.parts`` (every row of
    the stream carries it); the state step stores it when the seq guard accepts
    the beat. Beats of a partition whose state is not here (revoked during the
    poll) are left to its new owner: not scored, their offsets not committed.
    """
    outcome = BatchOutcome(next_offsets=next_offsets(records))
    decoded = decode_checked(records, model, outcome)
    if not decoded.index:
        return outcome
    state.prepare()
    rr = decoded.rr_prev_ms
    rr_prev = np.full(len(decoded.index), np.nan) if rr is None else rr
    scorer = scoring.scorer
    groups: dict[tuple[int, str], list[int]] = {}
    left_out: set[int] = set()
    for row, index in enumerate(decoded.index):
        record = records[index]
        if scoring.needs_rr and not np.isfinite(rr_prev[row]):
            outcome.dead_letters.append(
                dead_letter(record, MISSING_RR, "the model scores rhythm: no rr_prev_ms")
            )
            outcome.invalid_reasons[MISSING_RR] += 1
        elif not state.owns(record.partition):
            left_out.add(record.partition)
        else:
            groups.setdefault((record.partition, decoded.streams[row]), []).append(row)
    for index in decoded.index:
        if records[index].partition in left_out:
            outcome.next_offsets.pop((records[index].topic, records[index].partition), None)
    if not groups:
        return outcome

    started = time.perf_counter()
    streams = [
        _prepare(scoring, decoded, rr_prev, partition, stream, rows, state)
        for (partition, stream), rows in groups.items()
    ]
    scaled = np.concatenate([s.scaled for s in streams])
    rebuilt = np.asarray(scorer.reconstruct(scaled), dtype=np.float64)
    blocks = np.split(rebuilt, np.cumsum([len(s.rows) for s in streams])[:-1])
    unscorable: list[int] = []
    for i, s in enumerate(streams):
        bad = ~(np.isfinite(blocks[i]).all(axis=1) & np.isfinite(s.scaled).all(axis=1))
        if bad.any():
            # Finite samples so wild that scaling or the model overflows: refused,
            # and the stream's state is computed again without them (never poisoned).
            unscorable += [s.rows[j] for j in np.flatnonzero(bad)]
            good = [s.rows[j] for j in np.flatnonzero(~bad)]
            streams[i] = _prepare(scoring, decoded, rr_prev, s.partition, s.stream, good, state)
            if good:
                blocks[i] = np.asarray(scorer.reconstruct(streams[i].scaled), np.float64)
    for row in unscorable:
        outcome.dead_letters.append(
            dead_letter(records[decoded.index[row]], UNSCORABLE, "model output is not finite")
        )
        outcome.invalid_reasons[UNSCORABLE] += 1

    n = len(decoded.index)
    scores = np.full(n, np.nan)
    kinds = np.zeros(n, dtype=np.int8)
    learning = np.zeros(n, dtype=bool)
    errors = np.zeros((n, scaled.shape[1]), dtype=np.float32)
    parts: list[dict[str, Any] | None] = [None] * n
    for s, block in zip(streams, blocks, strict=True):
        if not s.rows:
            continue
        out = scorer.score_residuals(s.beats, scorer.region_residuals(s.scaled, block), s.state)
        part = {PART: {"model_version": scoring.model_version, "state": out.state}}
        for i, row in enumerate(s.rows):
            scores[row], kinds[row], learning[row] = out.scores[i], out.kind[i], out.learning[i]
            errors[row] = (s.scaled[i] - block[i]) ** 2
            parts[row] = part
    outcome.scoring_s = time.perf_counter() - started

    scored = np.flatnonzero([p is not None for p in parts])
    outcome.scores = scores[scored]
    outcome.latency_s = (now_ms - decoded.ts_ms[scored].astype(np.float64)) / 1e3
    over = scored[kinds[scored] != 0]
    threshold = scoring.threshold
    if over.size:
        outcome.alerts = _alerts(
            records, decoded, over, scores, errors, kinds, learning, model, threshold, now_ms
        )
    rows = scored.tolist()
    outcome.beats = ScoredBeats(
        partitions=[records[decoded.index[r]].partition for r in rows],
        streams=[decoded.streams[r] for r in rows],
        seqs=[decoded.seqs[r] for r in rows],
        ts_ms=decoded.ts_ms[scored].tolist(),
        scores=scores[scored].tolist(),
        ratios=(scores[scored] / threshold).tolist(),
        abnormal=(kinds[scored] != 0).tolist(),
        rr_prev_ms=rr_prev[scored].tolist(),
        regions=[None] * len(rows),
        parts=[parts[r] for r in rows],
    )
    return outcome


def _prepare(
    scoring: PatientScoring,
    decoded: Any,
    rr_prev: np.ndarray,
    partition: int,
    stream: str,
    rows: list[int],
    state: StateAccess,
) -> _Stream:
    """A stream's beats in seq order, its lead scales learned, its beats scaled for the model."""
    rows = sorted(rows, key=lambda r: decoded.seqs[r])  # stable: equal seqs keep their order
    beats = stream_beats(
        [decoded.seqs[r] for r in rows], decoded.ts_ms[rows], decoded.samples[rows], rr_prev[rows]
    )
    before = _state_of(scoring, state.part(partition, stream))
    scales, after_scales = scoring.scorer.lead_scales(beats, before)
    scaled = scoring.scorer.scaled(beats.samples, scales)
    return _Stream(partition, stream, rows, beats, after_scales, scaled)


def _state_of(scoring: PatientScoring, part: Any) -> dict[str, Any]:
    """The stream's scorer state from its part; a fresh one for a new stream or another model."""
    if isinstance(part, dict) and part.get("model_version") == scoring.model_version:
        stored = part.get("state")
        if isinstance(stored, dict):
            return stored
    return scoring.scorer.initial_state()


def _alerts(
    records: Sequence[Record],
    decoded: Any,
    over: np.ndarray,
    scores: np.ndarray,
    errors: np.ndarray,
    kinds: np.ndarray,
    learning: np.ndarray,
    model: ModelContext,
    threshold: float,
    now_ms: int,
) -> list[Outgoing]:
    """The alert messages of rows ``over``, with their kind (V, S) and learning flag."""
    rows = over.tolist()
    sources = [records[decoded.index[row]] for row in rows]
    streams = [decoded.streams[row] for row in rows]
    values = encode_alerts(
        streams=streams,
        seqs=[decoded.seqs[row] for row in rows],
        ts_ms=decoded.ts_ms[over].tolist(),
        labels=[decoded.labels[row] for row in rows],
        scores=scores[over].tolist(),
        p_values=None,
        explained=explain_numbers(errors[over], model.regions),
        threshold=threshold,
        model_version=model.model_version,
        topics=[record.topic for record in sources],
        partitions=[record.partition for record in sources],
        offsets=[record.offset for record in sources],
        detected_ts_ms=now_ms,
        kinds=[KIND_NAMES[int(k)] for k in kinds[over]],
        learning=learning[over].tolist(),
    )
    return [Outgoing(s.encode(), v) for s, v in zip(streams, values, strict=True)]


class StoreAccess(StateAccess):
    """Stream state from the detector's state step (``detector.stream_state``)."""

    def __init__(
        self,
        prepare: Callable[[], None],
        owns: Callable[[int], bool],
        get: Callable[[int, str], dict[str, Any] | None],
    ) -> None:
        self._prepare, self._owns, self._get = prepare, owns, get

    def prepare(self) -> None:
        """Rebuild newly assigned partitions from their changelog first."""
        self._prepare()

    def owns(self, partition: int) -> bool:
        """Whether the store holds ``partition``."""
        return self._owns(partition)

    def part(self, partition: int, stream: str) -> Any:
        """The ``"patient"`` part of the stream's record."""
        record = self._get(partition, stream)
        return None if record is None else record.get(PART)
