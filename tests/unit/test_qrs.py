"""The QRS detector on a synthetic ECG: every beat found, streaming equals offline."""

from __future__ import annotations

import numpy as np
import pytest

from beatwatch.qrs import LEARNING_S, QrsDetector, detect_qrs
from tests.support.ecg import synthetic_ecg
from trainer.ec57 import match_beats


@pytest.fixture(scope="module")
def ecg():
    return synthetic_ecg(120.0, seed=1)


def test_every_beat_is_found_near_its_r_peak_and_nothing_else(ecg):
    peaks = detect_qrs(ecg.signal[:, 0], ecg.fs_hz)
    match = match_beats(ecg.r_index, peaks, round(0.150 * ecg.fs_hz))
    assert (match >= 0).all()  # Se 100%
    assert peaks.size == ecg.r_index.size  # +P 100%
    error_ms = np.abs(peaks[match] - ecg.r_index) * 1000 / ecg.fs_hz
    assert np.median(error_ms) <= 15


def test_inverted_lead_beats_are_found_too(ecg):
    peaks = detect_qrs(ecg.signal[:, 1], ecg.fs_hz)
    match = match_beats(ecg.r_index, peaks, round(0.150 * ecg.fs_hz))
    assert (match >= 0).all() and peaks.size == ecg.r_index.size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_chunking_yields_the_offline_peaks(ecg, seed):
    rng = np.random.default_rng(seed)
    # Noise makes many candidates near the thresholds, where any chunk effect would show.
    x = ecg.signal[:, 0] + 0.15 * rng.standard_normal(ecg.signal.shape[0])
    whole = QrsDetector(ecg.fs_hz)
    offline = np.concatenate([whole.push(x), whole.flush()])
    detector = QrsDetector(ecg.fs_hz)
    found = []
    at = 0
    while at < x.size:
        size = int(rng.choice([1, 7, 100, 361, 5000]))
        found.append(detector.push(x[at : at + size]))
        at += size
    found.append(detector.flush())
    streamed = np.concatenate(found)
    np.testing.assert_array_equal(streamed, offline)
    assert np.all(np.diff(streamed) > 0)
    # Every candidate moved the levels the same way.
    assert (detector._decider.spk, detector._decider.npk) == (
        whole._decider.spk,
        whole._decider.npk,
    )


def test_peaks_come_out_soon_after_the_beat(ecg):
    """Causal with a bounded delay: after the first 2 s of learning, within about 0.5 s."""
    x = ecg.signal[:, 0]
    detector = QrsDetector(ecg.fs_hz)
    delays = []
    for at in range(0, x.size, 36):
        for peak in detector.push(x[at : at + 36]):
            delays.append(((at + 36 - peak) / ecg.fs_hz, peak / ecg.fs_hz))
    assert max(d for d, t in delays if t > LEARNING_S) < 0.6
    assert max(d for d, _ in delays) <= LEARNING_S + 0.6


def test_flat_signal_and_short_signal_give_no_peaks_and_no_error():
    assert detect_qrs(np.zeros(36_000), 360.0).size == 0
    assert detect_qrs(np.zeros(10), 360.0).size == 0


def test_a_signal_shorter_than_the_learning_period_still_gives_its_beats(ecg):
    x = ecg.signal[: round(1.9 * ecg.fs_hz), 0]
    peaks = detect_qrs(x, ecg.fs_hz)
    truth = ecg.r_index[ecg.r_index < x.size - round(0.25 * ecg.fs_hz)]
    assert match_beats(truth, peaks, 54).min() >= 0


def test_long_noise_without_beats_keeps_the_search_back_pool_bounded():
    rng = np.random.default_rng(0)
    ecg = synthetic_ecg(20.0, seed=4)
    x = np.concatenate([ecg.signal[:, 0], 0.05 * rng.standard_normal(360 * 120)])
    detector = QrsDetector(360.0)
    for at in range(0, x.size, 3600):
        detector.push(x[at : at + 3600])
    assert len(detector._decider.since_last) <= 32  # the bound itself


def test_other_sampling_rates_work():
    ecg = synthetic_ecg(60.0, seed=2)
    x250 = np.interp(
        np.arange(0, 60.0, 1 / 250), np.arange(ecg.signal.shape[0]) / 360, ecg.signal[:, 0]
    )
    peaks = detect_qrs(x250, 250.0)
    truth = np.round(ecg.r_index * 250 / 360).astype(np.int64)
    match = match_beats(truth, peaks, round(0.150 * 250))
    assert (match >= 0).all() and peaks.size == truth.size


def test_bad_sampling_rate_is_refused():
    with pytest.raises(ValueError):
        QrsDetector(0.0)
