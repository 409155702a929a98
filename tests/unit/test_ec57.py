"""EC57 beat matching and metrics on synthetic annotations with known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainer.ec57 import (
    RecordResult,
    auroc,
    format_table,
    match_beats,
    score_record,
    summarize,
)

FS = 100.0  # 1 sample = 10 ms: the 150 ms window is 15 samples
N_SAMPLES = 100_000  # 1000 s


def test_matching_is_one_to_one_closest_first_within_the_window():
    ref = np.array([100, 200, 300, 400])
    test = np.array([95, 108, 215, 216, 500])
    match = match_beats(ref, test, window=15)
    # 100 takes 95 (5 away), not 108; 200 takes 215 (15 away, inclusive), 216 is left;
    # 300 and 400 have nothing within 15.
    assert match.tolist() == [0, 2, -1, -1]


def test_a_test_beat_between_two_references_goes_to_the_closer_one():
    match = match_beats(np.array([100, 120]), np.array([118]), window=20)
    assert match.tolist() == [-1, 0]


def test_matching_handles_empty_sides():
    assert match_beats(np.array([1, 2]), np.array([], dtype=np.int64), 15).tolist() == [-1, -1]
    assert match_beats(np.array([], dtype=np.int64), np.array([5]), 15).tolist() == []


def test_auroc_known_values():
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count one half
    assert auroc(np.array([0.0, 2.0]), np.array([1.0])) == 0.5
    assert auroc(np.array([]), np.array([1.0])) is None


def _record(**overrides: Any) -> RecordResult:
    """Reference beats every second from 1 s; the first 5 min (300 s) are not scored.

    After 300 s: beats at 301..310 s, classes N N V V S N N F Q N.
    """
    ref = np.concatenate([np.arange(1, 300) * 100, np.arange(301, 311) * 100])
    classes = ["N"] * 299 + list("NNVVSNNFQN")
    # The detector finds every reference beat 3 samples late, misses the one at
    # 302 s (N), and adds a false beat at 305.5 s and one at 10.5 s (not scored).
    test = np.sort(np.concatenate([np.setdiff1d(ref, [30200]) + 3, [30550, 1050]]))
    scores = np.zeros(test.size)
    alerts = np.zeros(test.size, dtype=bool)
    where = {int(t): i for i, t in enumerate(test)}
    # Alerts: V at 303 s, S at 305 s, N at 306 s, the false beat at 305.5 s, and an
    # N beat at 100 s (before the scored part).
    for t in (30303, 30503, 30603, 30550, 10003):
        alerts[where[t]] = True
    scores[alerts] = 5.0
    scores[where[30403]] = 4.0  # the V beat not alerted still scores high
    args: dict[str, Any] = {
        "name": "r1",
        "fs_hz": FS,
        "n_samples": N_SAMPLES,
        "ref_index": ref,
        "ref_class": classes,
        "test_index": test,
        "test_score": scores,
        "test_alert": alerts,
    }
    args.update(overrides)
    return score_record(**args)


def test_record_counts_with_binary_alerting():
    r = _record()
    assert r.class_counts == {"N": 5, "S": 1, "V": 2, "F": 1, "Q": 1}
    assert (r.qrs.tp, r.qrs.fn, r.qrs.fp) == (9, 1, 1)
    # VEB: V at 303 alerted, V at 304 not; false positives: N at 306 and the false beat.
    assert (r.veb.tp, r.veb.fn, r.veb.fp) == (1, 1, 2)
    # SVEB: the S beat alerted; the same two false positives (the V alert counts neither way).
    assert (r.sveb.tp, r.sveb.fn, r.sveb.fp) == (1, 0, 2)
    assert r.false_alerts == 2
    assert r.scored_s == pytest.approx(700.0)
    assert r.false_alerts_per_hour == pytest.approx(2 / (700 / 3600))
    assert r.false_alert_share == pytest.approx(2 / 5)
    assert r.alerted_counts == {"N": 1, "S": 1, "V": 1, "F": 0, "Q": 0}
    d = r.to_dict()
    # Matched scored N beats score 0, 5, 0, 0; the V beats 5 and 4; the S beat 5.
    assert d["auroc_n_vs_v"] == pytest.approx((3.5 + 3) / 8)
    assert d["auroc_n_vs_s"] == pytest.approx(3.5 / 4)


def test_record_counts_with_predicted_classes():
    test = _record().qrs
    assert test.tp == 9
    ref = np.concatenate([np.arange(1, 300), np.arange(301, 311)]) * 100
    test_index = np.sort(np.concatenate([np.setdiff1d(ref, [30200]) + 3, [30550, 1050]]))
    predicted: list[str | None] = [None] * test_index.size
    where = {int(t): i for i, t in enumerate(test_index)}
    # V for the V at 303 s, the S at 305 s and the false beat; S for the N at 306 s.
    for t, cls in ((30303, "V"), (30503, "V"), (30550, "V"), (30603, "S")):
        predicted[where[t]] = cls
    r = _record(test_class=predicted)
    # VEB: TP the V at 303; FN the V at 304; FP the S predicted V and the false beat.
    assert (r.veb.tp, r.veb.fn, r.veb.fp) == (1, 1, 2)
    # SVEB: the S beat predicted V is missed; the N predicted S is a false positive.
    assert (r.sveb.tp, r.sveb.fn, r.sveb.fp) == (0, 1, 1)


def test_beats_in_ventricular_flutter_are_not_compared():
    r = _record(excluded=[(30150, 30320)])  # the missed N at 302 s and the V at 303 s
    assert (r.qrs.tp, r.qrs.fn, r.qrs.fp) == (8, 0, 1)
    assert r.class_counts["V"] == 1 and r.class_counts["N"] == 4


def test_summary_pools_counts_and_leaves_paced_records_out_of_arrhythmia_figures():
    a = _record(name="r1")
    b = _record(name="r2")
    paced = _record(name="102")  # a paced record by name
    assert paced.paced
    report = summarize([a, b, paced])
    g = report["gross"]
    assert g["qrs"]["tp"] == 27 and g["qrs"]["fn"] == 3  # QRS pools every record
    assert (g["veb"]["tp"], g["veb"]["fn"], g["veb"]["fp"]) == (2, 2, 4)  # paced left out
    assert g["veb"]["se"] == 0.5 and g["veb"]["ppv"] == pytest.approx(2 / 6)
    assert g["class_counts"]["N"] == 10
    assert g["false_alert_share_of_n"] == pytest.approx(4 / 10)
    assert g["false_alerts_per_hour"] == pytest.approx(4 / (1400 / 3600))
    assert report["conventions"]["paced_excluded_from_arrhythmia"] == ["102"]
    assert [r["record"] for r in report["per_record"]] == ["r1", "r2", "102"]
    table = format_table(report)
    assert "gross" in table and "102*" in table


def test_a_record_without_scores_gives_qrs_figures_only():
    ref = np.arange(400, 1000) * 100
    r = score_record("q", FS, N_SAMPLES, ref, ["N"] * ref.size, ref + 20)
    assert (r.qrs.tp, r.qrs.fn, r.qrs.fp) == (0, 600, 600)  # 200 ms off: no match
    r = score_record("q", FS, N_SAMPLES, ref, ["N"] * ref.size, ref + 15)
    assert (r.qrs.tp, r.qrs.fn, r.qrs.fp) == (600, 0, 0)  # 150 ms: a match
    assert r.false_alerts == 0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        score_record("x", FS, 100, np.array([1, 2]), ["N"], np.array([1]))
    with pytest.raises(ValueError):
        score_record("x", FS, 100, np.array([1]), ["N"], np.array([1]), np.zeros(2))
