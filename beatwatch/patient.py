"""Patient-adaptive scoring: each stream's beats scored against that stream's own normal.

A population autoencoder (trained on normal beats of other patients) reconstructs
every beat; what is left over, the residual, has a part that is this patient's
normal morphology and a part that is this beat's abnormality. So each stream
first *learns* (``learn_s`` of signal, the part EC57 does not score): the
residual template is the median residual of its normal-looking beats (those
whose population error is at or below the ``good_quantile`` of the window, so
up to half the window may be ectopic without moving it) and the reference
level is a low quantile of their distances to it. Afterwards a beat's
morphology score is ``log(distance to the template / reference)``, which means
the same on every patient; a premature beat (``rr_prev`` short against the
stream's own recent RR) adds ``prem_weight * log(rr_ref / rr_prev)``.

Two kinds of alert: ``KIND_V`` when the score passes ``v_threshold`` (a beat
unlike this patient's normal: ventricular-like; an early beat must be more
unlike it, ``v_morph_premature``), ``KIND_S`` when the beat is not ``KIND_V``
but comes early against the stream's longer-term rate (``s_rr_beats``,
``s_prematurity``) in a regular rhythm (irregularity below
``irregularity_max``, so atrial fibrillation does not raise a flood of them).
Labels are never used here.

Per-stream state is a JSON-able dict (:meth:`StreamScorer.initial_state`), so it
can live with the stream's partition and be rebuilt anywhere. It records the
last ``seq`` it consumed: a redelivered beat (``seq <= last_seq``) is scored
against the current state but does not change it.

Pure NumPy: the autoencoder is a ``reconstruct`` callable given by the caller
(:meth:`StreamScorer.from_artifact` loads the Keras model only when asked).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from beatwatch.segmentation import Segmentation

STATE_VERSION = 1
KIND_NONE = 0
KIND_V = 1
KIND_S = 2
KIND_NAMES = {KIND_NONE: "", KIND_V: "V", KIND_S: "S"}
PHASE_LEARNING = "learning"
PHASE_SCORING = "scoring"
# Guards a division by a flat lead (mV).
MIN_SCALE = 1e-3
# Guards log() of a zero distance (a beat identical to the template).
MIN_DISTANCE = 1e-12


@dataclass(frozen=True)
class PatientRules:
    """How a stream learns its normal and scores beats against it (recorded in the artifact).

    Attributes:
        region_start: first value of the beat vector the distance is taken over.
        region_end: one past the last (the QRS region of the first lead: where
            ectopic beats differ; the T wave and baseline mostly add noise).
        input_scale: beats are divided by it before the autoencoder, after the
            stream's own lead scales (a global constant).
        n_leads: leads in a beat (equal parts of the beat vector, lead after lead).
        scale_beats: each lead is divided by the median peak-to-peak amplitude of
            that lead over the stream's first ``scale_beats`` beats (amplitude is
            normalised per stream, never per beat: within a patient an ectopic
            beat keeps its larger or smaller size).
        population_ref: median regional error of held-out normal training beats;
            scores beats while a stream is still learning.
        learn_s: seconds of a stream's beats (by ``ts_ms``) it learns from; the
            beats before its lead scales are final (``scale_beats``) are not kept.
        learn_max_beats: cap on the beats kept while learning (state size).
        learn_min_beats: fewer beats than this extend the learning.
        good_quantile: learning beats whose population error is at or below this
            quantile of the window form the template (robust to early ectopics).
        ref_quantile: quantile of the template beats' distances taken as reference.
        template_alpha: after learning, each beat that raises no alert moves the
            template this fraction towards its residual (slow drift); 0 freezes it.
        rr_beats: recent RR intervals whose median is the stream's RR reference
            for the score's prematurity term.
        s_rr_beats: recent RR intervals whose median is the reference of the
            ``KIND_S`` rule (``None``: ``rr_beats``); longer than ``rr_beats`` so
            that a sustained supraventricular run stays early against the
            patient's own rate.
        prem_weight: weight of ``log(rr_ref / rr_prev)`` (premature beats) in the score.
        v_threshold: ``KIND_V`` alert when ``score > v_threshold`` and the
            morphology part alone exceeds ``v_morph_min`` (a premature beat of
            normal shape is supraventricular, not ventricular).
        v_morph_premature: the morphology floor of a ``KIND_V`` alert for an
            early beat (early as the ``KIND_S`` rule says); a supraventricular
            beat that comes early often looks a little unlike the patient's
            normal (the previous T wave, aberrant conduction), a ventricular
            one much more. ``None``: ``v_morph_min``.
        s_prematurity: ``KIND_S`` alert when ``rr_prev`` over the ``s_rr_beats``
            reference is below it.
        irregularity_max: no ``KIND_S`` alert when the ``irregularity_quantile``
            of the absolute changes between the last ``irregularity_beats`` RR
            intervals, relative to their median, exceeds it (atrial fibrillation
            is irregular beat after beat; a few premature beats among regular
            ones move only the upper quantiles).
    """

    region_start: int
    region_end: int
    input_scale: float
    population_ref: float
    n_leads: int = 1
    scale_beats: int = 128
    learn_s: float = 300.0
    learn_max_beats: int = 512
    learn_min_beats: int = 32
    good_quantile: float = 0.5
    ref_quantile: float = 0.25
    template_alpha: float = 0.0
    rr_beats: int = 32
    prem_weight: float = 4.0
    v_threshold: float = 3.0
    v_morph_min: float = 0.0
    s_prematurity: float = 0.8
    irregularity_max: float = 0.1
    v_morph_premature: float | None = None
    s_rr_beats: int | None = None
    irregularity_beats: int = 9
    irregularity_quantile: float = 0.5

    def __post_init__(self) -> None:
        """Refuse rules that cannot score."""
        if not 0 <= self.region_start < self.region_end:
            raise ValueError("patient rules need 0 <= region_start < region_end")
        for name in ("input_scale", "population_ref", "learn_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"patient rules {name} must be positive, got {value}")
        for name in ("good_quantile", "ref_quantile"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"patient rules {name} must be in (0, 1]")
        if not 0 <= self.template_alpha < 1:
            raise ValueError("patient rules template_alpha must be in [0, 1)")
        if self.learn_min_beats < 2 or self.learn_max_beats < self.learn_min_beats:
            raise ValueError("patient rules need 2 <= learn_min_beats <= learn_max_beats")
        if self.rr_beats < 1 or (self.s_rr_beats is not None and self.s_rr_beats < 1):
            raise ValueError("patient rules rr_beats and s_rr_beats must be >= 1")
        if self.irregularity_beats < 3 or not 0 <= self.irregularity_quantile <= 1:
            raise ValueError(
                "patient rules need irregularity_beats >= 3 and irregularity_quantile in [0, 1]"
            )
        if self.n_leads < 1 or self.scale_beats < 1:
            raise ValueError("patient rules need n_leads >= 1 and scale_beats >= 1")

    @property
    def region_length(self) -> int:
        """Values in the scored region."""
        return self.region_end - self.region_start

    @property
    def s_reference_beats(self) -> int:
        """RR intervals the ``KIND_S`` rule's reference is the median of."""
        return self.rr_beats if self.s_rr_beats is None else self.s_rr_beats

    @property
    def rr_kept(self) -> int:
        """RR intervals a stream's state keeps."""
        return max(self.rr_beats, self.s_reference_beats, self.irregularity_beats)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ``artifact.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientRules:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"patient rules have unknown keys {unknown}")
        return cls(**data)


def qrs_region(
    seg: Segmentation, start_ms: float = -150.0, end_ms: float = 250.0
) -> tuple[int, int]:
    """Indices of ``start_ms..end_ms`` around the R peak in the first lead of ``seg``'s beats."""
    start = seg.samples_before + round(start_ms * seg.fs_hz / 1000.0)
    end = seg.samples_before + round(end_ms * seg.fs_hz / 1000.0)
    return max(0, start), min(seg.samples_per_lead, end)


class StreamBeats(NamedTuple):
    """One stream's beats, in stream order.

    Attributes:
        seq: per-stream beat numbers (increasing for new beats).
        ts_ms: beat times (epoch ms).
        samples: float32 ``(n, L)`` cut as the artifact's segmentation says.
        rr_prev_ms: interval from the previous R peak.
    """

    seq: np.ndarray
    ts_ms: np.ndarray
    samples: np.ndarray
    rr_prev_ms: np.ndarray


class StreamScores(NamedTuple):
    """What :meth:`StreamScorer.score_beats` returns.

    Attributes:
        scores: float64 per beat (higher = less like this patient's normal).
        is_alert: bool per beat.
        kind: ``KIND_NONE``, ``KIND_V`` or ``KIND_S`` per beat.
        learning: True for beats scored while the stream was still learning
            (against the population reference only).
        state: the stream's state after these beats.
    """

    scores: np.ndarray
    is_alert: np.ndarray
    kind: np.ndarray
    learning: np.ndarray
    state: dict[str, Any]


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, width: int) -> np.ndarray:
    flat = np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)
    return flat.reshape(-1, width)


class StreamScorer:
    """Scores one stream's beats in order against its own learned normal.

    The same object serves every stream: all per-stream memory is in the state
    dict passed in and returned, so the caller decides where it lives.
    """

    def __init__(
        self,
        rules: PatientRules,
        reconstruct: Callable[[np.ndarray], np.ndarray],
        input_length: int,
    ) -> None:
        """Build a scorer.

        Args:
            rules: the learning and scoring rules.
            reconstruct: the autoencoder, ``(n, L)`` scaled beats -> ``(n, L)``.
            input_length: values per beat ``L``.
        """
        if rules.region_end > input_length:
            raise ValueError(
                f"patient region ends at {rules.region_end} > beat length {input_length}"
            )
        self.rules = rules
        self.reconstruct = reconstruct
        self.input_length = input_length

    @classmethod
    def from_artifact(cls, artifact: Any) -> StreamScorer:
        """Build from a loaded artifact with a ``"patient"`` section (loads the Keras model).

        Raises:
            ValueError: the artifact records no patient rules.
        """
        rules = artifact.config.patient
        if not isinstance(rules, PatientRules):
            raise ValueError("the artifact records no patient rules")
        model = artifact.keras_model()

        def reconstruct(scaled: np.ndarray) -> np.ndarray:
            return np.asarray(model(np.asarray(scaled, np.float32), training=False))

        return cls(rules, reconstruct, int(artifact.input_length))

    def initial_state(self) -> dict[str, Any]:
        """The state of a stream no beat of which has been seen."""
        return {
            "version": STATE_VERSION,
            "last_seq": None,
            "phase": PHASE_LEARNING,
            "first_ts_ms": None,
            "learn_errors": [],
            "learn_residuals": "",
            "template": None,
            "reference": None,
            "rr_recent": [],
            "scale_ptp": [],
            "beats_seen": 0,
        }

    def lead_ptp(self, samples: np.ndarray) -> np.ndarray:
        """Peak-to-peak amplitude of each lead of each beat, ``(n, n_leads)``."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_length:
            raise ValueError(f"beats must have shape (n, {self.input_length}), got {x.shape}")
        ptp: np.ndarray = np.ptp(x.reshape(x.shape[0], self.rules.n_leads, -1), axis=2)
        return ptp

    def scaled(self, samples: np.ndarray, lead_scales: np.ndarray) -> np.ndarray:
        """Beats as the autoencoder sees them: per-stream lead scales, then the global one."""
        x = np.asarray(samples, dtype=np.float64).reshape(len(samples), self.rules.n_leads, -1)
        x = x / (lead_scales[:, :, None] * self.rules.input_scale)
        return x.reshape(len(samples), -1).astype(np.float32)

    def residuals(self, samples: np.ndarray, lead_scales: np.ndarray) -> np.ndarray:
        """Regional residual of each beat (scaled units), from one autoencoder call."""
        scaled = self.scaled(samples, lead_scales)
        return self.region_residuals(scaled, self.reconstruct(scaled))

    def region_residuals(self, scaled: np.ndarray, rebuilt: np.ndarray) -> np.ndarray:
        """Regional residual of scaled beats, given their reconstruction.

        The detector reconstructs the beats of many streams in one call, then
        takes each stream's rows; :meth:`residuals` is this after one call.
        """
        lo, hi = self.rules.region_start, self.rules.region_end
        rebuilt = np.asarray(rebuilt, dtype=np.float64)
        residual: np.ndarray = np.asarray(scaled)[:, lo:hi].astype(np.float64) - rebuilt[:, lo:hi]
        return residual

    def score(
        self, beats: StreamBeats, state: dict[str, Any] | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Score ``beats`` (one stream, in order): ``(scores, is_alert, new_state)``."""
        out = self.score_beats(beats, state)
        return out.scores, out.is_alert, out.state

    def score_beats(self, beats: StreamBeats, state: dict[str, Any] | None) -> StreamScores:
        """Score one stream's beats in order, updating a copy of ``state``."""
        state = state if state is not None else self.initial_state()
        lead_scales, state = self.lead_scales(beats, state)
        residuals = self.residuals(beats.samples, lead_scales)
        return self.score_residuals(beats, residuals, state)

    def score_streams(
        self, items: Sequence[tuple[StreamBeats, dict[str, Any] | None]]
    ) -> list[StreamScores]:
        """Score several streams' beats with one autoencoder call (a detector's poll batch).

        Each item is one stream's beats in order and its state; the result for
        each equals :meth:`score_beats` on that item alone, as far as the
        autoencoder gives each beat the same reconstruction in a larger batch.
        """
        states = [state if state is not None else self.initial_state() for _, state in items]
        scaled_parts = []
        for i, (beats, _) in enumerate(items):
            scales, states[i] = self.lead_scales(beats, states[i])
            scaled_parts.append(self.scaled(beats.samples, scales))
        if not scaled_parts:
            return []
        scaled = np.concatenate(scaled_parts)
        residuals = self.region_residuals(scaled, self.reconstruct(scaled))
        out = []
        start = 0
        for (beats, _), state in zip(items, states, strict=True):
            end = start + len(beats.seq)
            out.append(self.score_residuals(beats, residuals[start:end], state))
            start = end
        return out

    def lead_scales(
        self, beats: StreamBeats, state: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Each beat's lead scales, and the state after learning them (only that part changes).

        A beat's scales are the medians over the stream's first ``scale_beats``
        beats seen so far, itself included when it is one of them.
        """
        ptp = self.lead_ptp(beats.samples)
        stored = [list(map(float, row)) for row in state.get("scale_ptp", [])]
        last_seq = state.get("last_seq")
        scales = np.empty_like(ptp)
        for i, seq in enumerate(np.asarray(beats.seq, dtype=np.int64)):
            fresh = last_seq is None or int(seq) > last_seq
            if fresh:
                last_seq = int(seq)
                if len(stored) < self.rules.scale_beats:
                    stored.append([float(v) for v in ptp[i]])
            scales[i] = np.median(np.asarray(stored), axis=0) if stored else ptp[i]
        scales = np.maximum(scales, MIN_SCALE)
        return scales, {**state, "scale_ptp": stored}

    def score_residuals(
        self, beats: StreamBeats, residuals: np.ndarray, state: dict[str, Any] | None
    ) -> StreamScores:
        """The sequential part of :meth:`score_beats`, given the regional residuals."""
        rules = self.rules
        st = _State.load(state if state is not None else self.initial_state(), rules)
        n = residuals.shape[0]
        scores = np.empty(n)
        kind = np.zeros(n, dtype=np.int8)
        learning = np.zeros(n, dtype=bool)
        seqs = np.asarray(beats.seq, dtype=np.int64)
        ts = np.asarray(beats.ts_ms, dtype=np.int64)
        rr_prev = np.asarray(beats.rr_prev_ms, dtype=np.float64)
        v_floor_premature = (
            rules.v_morph_min if rules.v_morph_premature is None else rules.v_morph_premature
        )
        for i in range(n):
            fresh = st.last_seq is None or int(seqs[i]) > st.last_seq
            res = residuals[i]
            error = float(np.mean(res * res))
            if fresh and st.phase == PHASE_LEARNING:
                if st.first_ts_ms is None:
                    st.first_ts_ms = int(ts[i])
                learned_s = (int(ts[i]) - st.first_ts_ms) / 1000.0
                if learned_s >= rules.learn_s and len(st.learn_errors) >= rules.learn_min_beats:
                    st.finish_learning(rules)
            prematurity = st.prematurity(rr_prev[i], rules.rr_beats)
            s_prematurity = (
                prematurity
                if rules.s_reference_beats == rules.rr_beats
                else st.prematurity(rr_prev[i], rules.s_reference_beats)
            )
            early = rules.prem_weight * max(0.0, -math.log(max(prematurity, 1e-6)))
            if st.phase == PHASE_LEARNING:
                learning[i] = True
                morph = math.log(max(error, MIN_DISTANCE) / rules.population_ref)
            else:
                assert st.template is not None and st.reference is not None
                diff = res - st.template
                distance = float(np.mean(diff * diff))
                morph = math.log(max(distance, MIN_DISTANCE) / st.reference)
            scores[i] = morph + early
            premature = s_prematurity < rules.s_prematurity
            v_floor = v_floor_premature if premature else rules.v_morph_min
            if scores[i] > rules.v_threshold and morph > v_floor:
                kind[i] = KIND_V
            elif premature and st.irregularity(rules) <= rules.irregularity_max:
                kind[i] = KIND_S
            if fresh:
                st.last_seq = int(seqs[i])
                # Learn only from beats scaled with the stream's final lead
                # scales: the template must match the beats it will score.
                if st.phase == PHASE_LEARNING:
                    if st.beats_seen >= rules.scale_beats - 1:
                        st.learn(error, res, rules)
                elif kind[i] == KIND_NONE and rules.template_alpha > 0:
                    assert st.template is not None
                    st.template += rules.template_alpha * (res - st.template)
                st.beats_seen += 1
                st.add_rr(rr_prev[i], rules)
        return StreamScores(scores, kind != KIND_NONE, kind, learning, st.dump())


@dataclass
class _State:
    """The working form of a stream's state (arrays instead of lists)."""

    last_seq: int | None
    phase: str
    first_ts_ms: int | None
    learn_errors: list[float]
    learn_residuals: list[np.ndarray]
    template: np.ndarray | None
    reference: float | None
    rr_recent: list[float]
    scale_ptp: list[list[float]]
    beats_seen: int = 0

    @classmethod
    def load(cls, data: dict[str, Any], rules: PatientRules) -> _State:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"stream state version {data.get('version')!r} is not {STATE_VERSION}")
        width = rules.region_length
        stored = data["learn_residuals"]
        residuals = list(_decode(stored, width)) if stored else []
        if len(residuals) != len(data["learn_errors"]):
            raise ValueError("stream state learning buffers disagree in length")
        template = data["template"]
        if template is not None and len(template) != width:
            raise ValueError("stream state template does not match the rules' region")
        return cls(
            last_seq=None if data["last_seq"] is None else int(data["last_seq"]),
            phase=str(data["phase"]),
            first_ts_ms=None if data["first_ts_ms"] is None else int(data["first_ts_ms"]),
            learn_errors=[float(e) for e in data["learn_errors"]],
            learn_residuals=residuals,
            template=None if template is None else np.asarray(template, dtype=np.float64),
            reference=None if data["reference"] is None else float(data["reference"]),
            rr_recent=[float(r) for r in data["rr_recent"]],
            scale_ptp=[[float(v) for v in row] for row in data.get("scale_ptp", [])],
            beats_seen=int(data.get("beats_seen", 0)),
        )

    def dump(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "last_seq": self.last_seq,
            "phase": self.phase,
            "first_ts_ms": self.first_ts_ms,
            "learn_errors": list(self.learn_errors),
            "learn_residuals": _encode(np.array(self.learn_residuals))
            if self.learn_residuals
            else "",
            "template": None if self.template is None else [float(v) for v in self.template],
            "reference": self.reference,
            "rr_recent": list(self.rr_recent),
            "scale_ptp": [list(row) for row in self.scale_ptp],
            "beats_seen": self.beats_seen,
        }

    def learn(self, error: float, residual: np.ndarray, rules: PatientRules) -> None:
        if len(self.learn_errors) < rules.learn_max_beats:
            self.learn_errors.append(error)
            # float32 round trip now, so that a state reloaded from JSON learns
            # exactly what this one would have.
            self.learn_residuals.append(residual.astype("<f4").astype(np.float64))

    def finish_learning(self, rules: PatientRules) -> None:
        errors = np.asarray(self.learn_errors)
        residuals = np.asarray(self.learn_residuals)
        good = errors <= np.quantile(errors, rules.good_quantile)
        template = np.median(residuals[good], axis=0)
        distances = np.mean((residuals[good] - template) ** 2, axis=1)
        self.template = template
        self.reference = max(float(np.quantile(distances, rules.ref_quantile)), MIN_DISTANCE)
        self.phase = PHASE_SCORING
        self.learn_errors = []
        self.learn_residuals = []

    def prematurity(self, rr_prev_ms: float, beats: int) -> float:
        """``rr_prev`` over the median of the last ``beats`` RR intervals; 1 when unknown."""
        if not (math.isfinite(rr_prev_ms) and rr_prev_ms > 0) or not self.rr_recent:
            return 1.0
        return rr_prev_ms / float(np.median(self.rr_recent[-beats:]))

    def irregularity(self, rules: PatientRules) -> float:
        if len(self.rr_recent) < 3:
            return 0.0
        recent = np.asarray(self.rr_recent[-rules.irregularity_beats :])
        changes = np.abs(np.diff(recent))
        return float(np.quantile(changes, rules.irregularity_quantile) / np.median(recent))

    def add_rr(self, rr_prev_ms: float, rules: PatientRules) -> None:
        if math.isfinite(rr_prev_ms) and rr_prev_ms > 0:
            self.rr_recent.append(float(rr_prev_ms))
            del self.rr_recent[: max(0, len(self.rr_recent) - rules.rr_kept)]


def stream_beats(
    seq: Sequence[int] | np.ndarray,
    ts_ms: Sequence[int] | np.ndarray,
    samples: np.ndarray,
    rr_prev_ms: Sequence[float] | np.ndarray,
) -> StreamBeats:
    """Bundle one stream's beats (arrays of equal length) for :class:`StreamScorer`."""
    out = StreamBeats(
        np.asarray(seq, dtype=np.int64),
        np.asarray(ts_ms, dtype=np.int64),
        np.asarray(samples, dtype=np.float32),
        np.asarray(rr_prev_ms, dtype=np.float64),
    )
    if not len(out.seq) == len(out.ts_ms) == len(out.samples) == len(out.rr_prev_ms):
        raise ValueError("stream beats: seq, ts_ms, samples and rr_prev_ms differ in length")
    return out
