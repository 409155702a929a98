"""Score drift (PSI over calibration deciles, sliding window): the math and the window."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from beatwatch.drift import ScoreDrift, ScoreDriftCollector, bin_edges, expected_shares, psi


def brute_force_psi(calibration: np.ndarray, recent: np.ndarray) -> float:
    edges = bin_edges(calibration)
    expected = expected_shares(calibration, edges)
    observed = expected_shares(recent, edges)
    return psi(observed, expected)


def test_psi_of_known_shares() -> None:
    assert psi(np.full(10, 0.1), np.full(10, 0.1)) == 0.0
    observed = np.array([0.5, 0.5])
    expected = np.array([0.25, 0.75])
    manual = 0.25 * np.log(2) + (-0.25) * np.log(0.5 / 0.75)
    assert psi(observed, expected) == pytest.approx(manual)


def test_deciles_hold_a_tenth_each() -> None:
    calibration = np.random.default_rng(0).lognormal(size=1000)
    shares = expected_shares(calibration, bin_edges(calibration))
    assert shares.shape == (10,) and np.allclose(shares, 0.1, atol=0.002)


def test_same_distribution_is_stable_and_a_shift_is_not() -> None:
    rng = np.random.default_rng(1)
    drift = ScoreDrift(window=5000)
    drift.set_reference(rng.lognormal(-4.7, 0.4, size=500))
    drift.observe_many(rng.lognormal(-4.7, 0.4, size=5000))
    stable = drift.value()
    assert stable is not None and stable < 0.1
    drift.observe_many(rng.lognormal(-4.0, 0.4, size=5000))  # scores double
    shifted = drift.value()
    assert shifted is not None and shifted > 0.25


def test_window_keeps_the_last_beats_across_batches() -> None:
    rng = np.random.default_rng(2)
    calibration = rng.normal(size=300)
    drift = ScoreDrift(window=700)
    drift.set_reference(calibration)
    seen: list[np.ndarray] = []
    for size in [1, 5, 300, 699, 700, 1500, 3, 0, 250, 450]:
        batch = rng.normal(loc=rng.uniform(-1, 1), size=size)
        drift.observe_many(batch)
        seen.append(batch)
        recent = np.concatenate(seen)[-700:]
        assert drift.beats == len(recent)
        assert drift.value() == pytest.approx(brute_force_psi(calibration, recent))


def test_new_reference_empties_the_window_and_none_means_no_psi() -> None:
    drift = ScoreDrift(window=10)
    assert drift.value() is None
    drift.observe_many(np.ones(5))  # no reference yet: nothing recorded
    assert drift.beats == 0
    drift.set_reference(np.arange(100.0))
    drift.observe_many(np.ones(5))
    assert drift.beats == 5
    drift.set_reference(np.arange(100.0) * 2)
    assert drift.beats == 0 and drift.value() is None
    drift.set_reference(None)
    drift.observe_many(np.ones(5))
    assert drift.value() is None


def test_collector_exposes_gauges() -> None:
    registry = CollectorRegistry()
    drift = ScoreDrift(window=10)
    ScoreDriftCollector(drift, registry)
    text = generate_latest(registry).decode()
    assert "beatwatch_score_drift_psi" not in text  # no reference yet
    assert "beatwatch_score_drift_window_beats 0.0" in text
    drift.set_reference(np.arange(100.0))
    drift.observe_many(np.full(10, 1000.0))  # all in the top bin
    text = generate_latest(registry).decode()
    value = psi(np.array([0] * 9 + [1.0]), np.full(10, 0.1))
    assert f"beatwatch_score_drift_psi {value}" in text
    assert "beatwatch_score_drift_window_size_beats 10.0" in text


def test_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="window"):
        ScoreDrift(window=0)
