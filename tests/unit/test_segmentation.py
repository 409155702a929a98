"""Segmentation: causal, lead choice by name, streaming equals offline, dict round trip."""

from __future__ import annotations

import numpy as np
import pytest

from beatwatch.segmentation import (
    Segmentation,
    StreamCutter,
    cut_beats,
    resolve_leads,
    span_samples,
)

FS_HZ = 360.0


def synthetic(seconds: float = 30.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two leads of noise with a spike at each R peak, R peaks ~0.8 s apart."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS_HZ)
    signal = rng.normal(0.0, 0.05, size=(n, 2))
    peaks = np.cumsum(rng.integers(250, 330, size=int(seconds / 0.6)))
    peaks = peaks[peaks < n]
    signal[peaks, 0] += 1.0
    signal[peaks, 1] -= 0.5
    return signal, peaks


def test_shape_units_and_rhythm() -> None:
    seg = Segmentation()
    signal, peaks = synthetic()
    cut = cut_beats(signal, FS_HZ, ["MLII", "V1"], peaks, seg)
    assert cut.beats.shape == (len(cut), seg.n_values)
    assert cut.beats.dtype == np.float32
    assert cut.kept[0] >= 1  # the first R peak has no rhythm context
    i = cut.kept[3]
    assert cut.rr_prev_ms[3] == pytest.approx((peaks[i] - peaks[i - 1]) / FS_HZ * 1000)
    earlier = np.diff(peaks)[max(0, i - 1 - seg.rr_local_beats) : i - 1] / FS_HZ * 1000
    assert cut.rr_local_ms[3] == pytest.approx(np.median(earlier))
    # amplitude kept (no per-beat normalisation): the R spike stays near its height
    r_at = seg.samples_before
    assert 0.3 < cut.beats[:, r_at - 1 : r_at + 2].max(axis=1).min() < 1.1


def test_leads_are_chosen_by_name() -> None:
    seg = Segmentation(leads=("MLII", "*"))
    assert resolve_leads(["V5", "MLII"], seg) == [1, 0]
    assert resolve_leads(["MLII", "V1"], seg) == [0, 1]
    assert resolve_leads(["ii", "v2"], Segmentation(leads=("MLII|II",))) == [0]
    with pytest.raises(ValueError, match="no lead"):
        resolve_leads(["V1"], Segmentation(leads=("MLII",)))
    with pytest.raises(ValueError, match="besides"):
        resolve_leads(["MLII"], seg)
    signal, peaks = synthetic()
    swapped = cut_beats(signal[:, ::-1], FS_HZ, ["V1", "MLII"], peaks, seg)
    straight = cut_beats(signal, FS_HZ, ["MLII", "V1"], peaks, seg)
    np.testing.assert_array_equal(swapped.beats, straight.beats)


def test_a_beat_does_not_change_when_later_samples_change() -> None:
    seg = Segmentation()
    signal, peaks = synthetic()
    before, after = span_samples(seg, FS_HZ)
    base = cut_beats(signal, FS_HZ, ["MLII", "V1"], peaks, seg)
    k = len(base) // 2
    r = peaks[base.kept[k]]
    changed = signal.copy()
    changed[r + after + 1 :] = 7.0  # everything after the beat's span
    changed[: r - before] += 3.0  # and everything before it
    again = cut_beats(changed, FS_HZ, ["MLII", "V1"], peaks, seg)
    np.testing.assert_array_equal(again.beats[k], base.beats[k])
    # the span is tight (to the interpolation's last zero-weight sample)
    changed[r + after - 1] += 5.0
    moved = cut_beats(changed, FS_HZ, ["MLII", "V1"], peaks, seg)
    assert not np.array_equal(moved.beats[k], base.beats[k])


@pytest.mark.parametrize("seg", [Segmentation(), Segmentation(fs_hz=250.0, leads=("MLII",))])
def test_streaming_equals_offline(seg: Segmentation) -> None:
    signal, peaks = synthetic(60.0, seed=3)
    offline = cut_beats(signal, FS_HZ, ["MLII", "V1"], peaks, seg)
    cutter = StreamCutter(seg, FS_HZ, ["MLII", "V1"], peak_delay_s=0.5)
    rng = np.random.default_rng(1)
    got_r, got_beats, got_rr, got_local = [], [], [], []
    pos, reported = 0, 0
    while pos < signal.shape[0]:
        n = int(rng.integers(1, 900))
        chunk = signal[pos : pos + n]
        pos += n
        new = []
        while reported < peaks.size and peaks[reported] + 90 < pos:  # detector lag 0.25 s
            new.append(int(peaks[reported]))
            reported += 1
        r_abs, cut = cutter.push(chunk, new)
        got_r.append(r_abs)
        got_beats.append(cut.beats)
        got_rr.append(cut.rr_prev_ms)
        got_local.append(cut.rr_local_ms)
    r_abs, cut = cutter.push(np.empty((0, 2)), [int(p) for p in peaks[reported:]])
    got_r.append(r_abs)
    got_beats.append(cut.beats)
    got_rr.append(cut.rr_prev_ms)
    got_local.append(cut.rr_local_ms)
    np.testing.assert_array_equal(np.concatenate(got_r), peaks[offline.kept])
    np.testing.assert_array_equal(np.concatenate(got_beats), offline.beats)
    np.testing.assert_array_equal(np.concatenate(got_rr), offline.rr_prev_ms)
    np.testing.assert_array_equal(np.concatenate(got_local), offline.rr_local_ms)
    # bounded memory: a few windows of signal, a few R peaks
    assert cutter._buffer.shape[0] < 2 * FS_HZ
    assert len(cutter._peaks) <= seg.rr_local_beats + 3


def test_dict_round_trip_and_refusals() -> None:
    seg = Segmentation(fs_hz=250.0, before_ms=250.0, after_ms=450.0, leads=("MLII",))
    assert Segmentation.from_dict(seg.to_dict()) == seg
    with pytest.raises(ValueError, match="unknown"):
        Segmentation.from_dict({**seg.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="fs_hz"):
        Segmentation(fs_hz=0.0)
    with pytest.raises(ValueError, match="increasing"):
        cut_beats(np.zeros((1000, 1)), FS_HZ, ["MLII"], [500, 400], Segmentation(leads=("MLII",)))
