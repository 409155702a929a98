"""Patient-adaptive stream scoring: seq guard, JSON state round trip, adaptation per patient."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from beatwatch.patient import (
    KIND_NONE,
    KIND_S,
    KIND_V,
    PatientRules,
    StreamBeats,
    StreamScorer,
    stream_beats,
)

L = 40
RULES = PatientRules(
    region_start=10,
    region_end=30,
    input_scale=1.0,
    population_ref=0.05,
    n_leads=1,
    scale_beats=8,
    learn_s=20.0,
    learn_min_beats=10,
    learn_max_beats=64,
    template_alpha=0.01,
    rr_beats=16,
)


def zero_model(scaled: np.ndarray) -> np.ndarray:
    """A 'population autoencoder' that knows nothing: the residual is the beat itself."""
    return np.zeros_like(scaled)


def shape(kind: str) -> np.ndarray:
    t = np.arange(L) - 20.0
    shapes: dict[str, np.ndarray] = {
        "normal-a": np.exp(-(t**2) / 4.0),
        # another patient's normal: a different QRS
        "normal-b": np.exp(-(t**2) / 4.0) - 0.6 * np.exp(-((t - 4) ** 2) / 3.0),
        # ventricular-like: wide and large
        "wide": 1.5 * np.exp(-(t**2) / 40.0),
    }
    return shapes[kind]


def stream(kinds: list[str], rr_ms: list[float], seed: int = 0) -> StreamBeats:
    rng = np.random.default_rng(seed)
    samples = np.stack([shape(k) + rng.normal(0, 0.02, L) for k in kinds]).astype(np.float32)
    ts = np.cumsum(rr_ms).astype(np.int64)
    return stream_beats(np.arange(len(kinds)), ts, samples, rr_ms)


def patient(
    normal: str, n: int = 120, ectopic_at: tuple[int, ...] = (), premature_at: tuple[int, ...] = ()
) -> StreamBeats:
    kinds = [("wide" if i in ectopic_at else normal) for i in range(n)]
    rr = [800.0] * n
    for i in premature_at:
        rr[i] = 500.0
        if i + 1 < n:
            rr[i + 1] = 1100.0
    return stream(kinds, rr)


def test_each_patient_is_scored_against_its_own_normal() -> None:
    scorer = StreamScorer(RULES, zero_model, L)
    for normal in ("normal-a", "normal-b"):
        beats = patient(normal, ectopic_at=(60, 90), premature_at=(75,))
        out = scorer.score_beats(beats, None)
        after = ~out.learning
        assert out.learning[:20].all() and after[40:].all()
        ectopic = np.zeros(len(out.kind), bool)
        ectopic[[60, 90]] = True
        assert (out.kind[ectopic] == KIND_V).all()
        assert out.kind[75] == KIND_S
        normal_beats = after & ~ectopic
        normal_beats[[75, 76]] = False
        assert (out.kind[normal_beats] == KIND_NONE).all()
        assert out.scores[ectopic].min() > out.scores[normal_beats].max() + 2


def test_without_learning_the_other_patients_normal_would_alert() -> None:
    # The population reference alone (the learning phase) calls patient b's
    # normal beats abnormal; the learned template is what makes them normal.
    a = shape("normal-a")
    population = (a / np.ptp(a)).astype(np.float32)

    def knows_patient_a(scaled: np.ndarray) -> np.ndarray:
        return np.broadcast_to(population, scaled.shape)

    noise_level = float(np.mean((0.02 / np.ptp(a)) ** 2))
    rules = PatientRules.from_dict({**RULES.to_dict(), "population_ref": noise_level})
    scorer = StreamScorer(rules, knows_patient_a, L)
    out = scorer.score_beats(patient("normal-b"), None)
    assert out.scores[out.learning].min() > out.scores[~out.learning].max() + 2
    assert (out.kind[out.learning] == KIND_V).all()
    assert (out.kind[~out.learning] == KIND_NONE).all()


def test_early_ectopics_do_not_become_the_normal() -> None:
    scorer = StreamScorer(RULES, zero_model, L)
    # more than half of the learning window is ectopic (bigeminy and worse)
    early = tuple(i for i in range(24) if i % 9 in (0, 2, 4, 6, 8))
    beats = patient("normal-a", ectopic_at=(*early, 80))
    out = scorer.score_beats(beats, None)
    assert out.kind[80] == KIND_V
    assert out.learning[list(early)].all()


def test_redelivered_beats_are_scored_but_do_not_change_the_state() -> None:
    scorer = StreamScorer(RULES, zero_model, L)
    beats = patient("normal-a", ectopic_at=(70,))
    first = scorer.score_beats(beats, None)
    again = scorer.score_beats(beats, first.state)
    assert again.state == first.state
    assert again.kind[70] == KIND_V
    # a partly redelivered batch: the old part leaves the state alone, the new part moves it
    head = beats._replace(**{k: getattr(beats, k)[:50] for k in beats._fields})
    mid = scorer.score_beats(head, None).state
    overlap = beats._replace(**{k: getattr(beats, k)[30:] for k in beats._fields})
    assert scorer.score_beats(overlap, mid).state == first.state


@pytest.mark.parametrize("cuts", [(1, 7, 30, 31, 90), (25,), (5, 64)])
def test_state_survives_json_between_any_batches(cuts: tuple[int, ...]) -> None:
    def model(scaled: np.ndarray) -> np.ndarray:  # float64 output, as a real one may give
        return 0.3 * scaled.astype(np.float64) + 0.01

    scorer = StreamScorer(RULES, model, L)
    beats = patient("normal-b", ectopic_at=(3, 50, 99), premature_at=(60,))
    whole = scorer.score_beats(beats, None)
    state = None
    scores, kinds = [], []
    edges = [0, *cuts, len(beats.seq)]
    for a, b in itertools.pairwise(edges):
        part = beats._replace(**{k: getattr(beats, k)[a:b] for k in beats._fields})
        out = scorer.score_beats(part, state)
        state = json.loads(json.dumps(out.state))  # what a state store would keep
        scores.append(out.scores)
        kinds.append(out.kind)
    np.testing.assert_allclose(np.concatenate(scores), whole.scores, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate(kinds), whole.kind)
    assert state == json.loads(json.dumps(whole.state))


def test_amplitude_is_normalised_per_stream_not_per_beat() -> None:
    scorer = StreamScorer(RULES, zero_model, L)
    small = patient("normal-a", ectopic_at=(70,))
    big = small._replace(samples=small.samples * 3.0)  # same patient, 3x the gain
    a = scorer.score_beats(small, None)
    b = scorer.score_beats(big, None)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # within a stream a beat twice the size is not normal
    grown = small.samples.copy()
    grown[80] *= 2.0
    c = scorer.score_beats(small._replace(samples=grown), None)
    assert c.kind[80] == KIND_V


def test_rules_and_state_are_checked() -> None:
    assert PatientRules.from_dict(RULES.to_dict()) == RULES
    with pytest.raises(ValueError, match="unknown"):
        PatientRules.from_dict({**RULES.to_dict(), "surprise": 1})
    with pytest.raises(ValueError, match="region"):
        PatientRules(region_start=5, region_end=5, input_scale=1.0, population_ref=1.0)
    for bad, match in (
        ({"s_rr_beats": 0}, "s_rr_beats"),
        ({"irregularity_beats": 2}, "irregularity_beats"),
        ({"irregularity_quantile": 1.5}, "irregularity_quantile"),
    ):
        with pytest.raises(ValueError, match=match):
            PatientRules.from_dict({**RULES.to_dict(), **bad})
    scorer = StreamScorer(RULES, zero_model, L)
    with pytest.raises(ValueError, match="version"):
        scorer.score_beats(patient("normal-a", n=3), {"version": 99})
    with pytest.raises(ValueError, match="shape"):
        scorer.score_beats(stream_beats([0], [0], np.zeros((1, L + 1)), [800.0]), None)


def test_a_premature_beat_needs_the_premature_morphology_floor_to_be_ventricular() -> None:
    # beat 60 wide and on time, beat 75 wide and early: with a floor no beat
    # reaches, the early one is supraventricular and the other stays ventricular
    beats = patient("normal-a", ectopic_at=(60, 75), premature_at=(75,))
    same_floor = StreamScorer(RULES, zero_model, L).score_beats(beats, None)
    assert same_floor.kind[60] == KIND_V and same_floor.kind[75] == KIND_V
    high = PatientRules.from_dict({**RULES.to_dict(), "v_morph_premature": 100.0})
    out = StreamScorer(high, zero_model, L).score_beats(beats, None)
    assert out.kind[60] == KIND_V and out.kind[75] == KIND_S
    np.testing.assert_array_equal(out.scores, same_floor.scores)


def test_a_sustained_run_stays_early_against_the_longer_s_reference() -> None:
    # beats 60-89 at 500 ms after 800 ms: past the 16-beat reference's half,
    # the run is its own normal; against 64 beats it stays supraventricular
    rr = [800.0] * 60 + [500.0] * 30 + [800.0] * 30
    beats = stream(["normal-a"] * len(rr), rr)
    short = StreamScorer(RULES, zero_model, L).score_beats(beats, None)
    long_rules = PatientRules.from_dict({**RULES.to_dict(), "s_rr_beats": 64})
    long = StreamScorer(long_rules, zero_model, L).score_beats(beats, None)
    assert (short.kind[60:69] == KIND_S).all() and (short.kind[69:] == KIND_NONE).all()
    assert (long.kind[60:90] == KIND_S).all()
    assert (long.kind[90:] == KIND_NONE).all()
    # the score's own prematurity term keeps the 16-beat reference (the
    # template drifts only with beats that raise no alert, so only up to there)
    np.testing.assert_array_equal(long.scores[:70], short.scores[:70])


def test_frequent_premature_beats_are_regular_rhythm_and_atrial_fibrillation_is_not() -> None:
    # every fifth beat early with a compensatory pause: three in five RR changes
    # are large, so the median change calls it irregular; a low quantile does not
    rr = [800.0] * 120
    for i in range(40, 118, 5):
        rr[i], rr[i + 1] = 550.0, 1050.0
    premature = np.arange(60, 118, 5)
    beats = stream(["normal-a"] * 120, rr)
    median_rules = PatientRules.from_dict({**RULES.to_dict(), "s_prematurity": 0.82})
    low_rules = PatientRules.from_dict(
        {**median_rules.to_dict(), "irregularity_beats": 17, "irregularity_quantile": 0.3}
    )
    by_median = StreamScorer(median_rules, zero_model, L).score_beats(beats, None)
    by_low = StreamScorer(low_rules, zero_model, L).score_beats(beats, None)
    assert (by_median.kind[premature] == KIND_NONE).all()
    assert (by_low.kind[premature] == KIND_S).all()
    others = np.setdiff1d(np.arange(60, 120), premature)
    assert (by_low.kind[others] == KIND_NONE).all()
    # atrial fibrillation: every interval random, no supraventricular alerts
    rng = np.random.default_rng(3)
    af = stream(["normal-a"] * 120, list(rng.uniform(450.0, 1100.0, 120)))
    out = StreamScorer(low_rules, zero_model, L).score_beats(af, None)
    assert not (out.kind[40:] == KIND_S).any()


def test_unknown_rhythm_context_is_not_premature() -> None:
    scorer = StreamScorer(RULES, zero_model, L)
    beats = patient("normal-a")
    rr = beats.rr_prev_ms.copy()
    rr[70] = np.nan
    out = scorer.score_beats(beats._replace(rr_prev_ms=rr), None)
    assert np.isfinite(out.scores).all()
    assert out.kind[70] == KIND_NONE


def test_several_streams_in_one_call_equal_each_alone() -> None:
    calls = []

    def model(scaled: np.ndarray) -> np.ndarray:
        calls.append(len(scaled))
        return 0.5 * scaled

    scorer = StreamScorer(RULES, model, L)
    a = patient("normal-a", ectopic_at=(50,))
    b = patient("normal-b", n=80, premature_at=(60,))
    mid = scorer.score_beats(a._replace(**{k: getattr(a, k)[:40] for k in a._fields}), None).state
    rest_a = a._replace(**{k: getattr(a, k)[40:] for k in a._fields})
    calls.clear()
    together = scorer.score_streams([(rest_a, mid), (b, None)])
    assert calls == [len(rest_a.seq) + len(b.seq)]  # one autoencoder call
    for got, (beats, state) in zip(together, [(rest_a, mid), (b, None)], strict=True):
        alone = scorer.score_beats(beats, state)
        np.testing.assert_array_equal(got.scores, alone.scores)
        np.testing.assert_array_equal(got.kind, alone.kind)
        assert got.state == alone.state
    assert scorer.score_streams([]) == []
