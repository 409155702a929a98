"""Beat-by-beat evaluation the ANSI/AAMI EC57 way (as PhysioNet's ``bxb`` does it).

Pure functions over arrays: no model, no files. The reference is a record's
annotated beats (sample index + AAMI class); the test is what the system under
test produced for the same record: detected beats (sample index), each with a
score and whether it alerted (and optionally a predicted AAMI class).

Conventions:
- A test beat matches a reference beat within 150 ms; matching is one to one,
  closest pairs first.
- Reference and test beats inside ventricular flutter or fibrillation
  episodes (annotations ``[`` to ``]``) are not compared, as in ``bxb``.
- The first 5 minutes of each record are not scored (a patient-adaptive score
  may learn there): reference beats before it are ignored, and so are test
  beats matched to them or unmatched before it.
- QRS detection: Se = matched reference beats / reference beats, +P = matched
  test beats / test beats.
- Binary alerting (no predicted class): an alert declares the beat abnormal.
  For VEB, true positives are alerted reference V beats, false negatives
  reference V beats missed or not alerted, false positives alerts on reference
  N beats and on test beats matching no reference beat; alerts on S, F and Q
  beats count neither way. SVEB likewise with S.
  With predicted classes, VEB counts beats predicted V (false positives: on
  reference N, S or no beat) and SVEB beats predicted S (false positives: on
  reference N, V or no beat); F and Q reference beats never count as false
  positives, as in EC57.
- False alerts: alerts on reference N beats or on no reference beat, per hour
  of scored signal and as a share of the scored reference N beats.
- Paced records (any paced-beat annotation, or a name in ``PACED_RECORDS``)
  count for QRS detection but are excluded from the arrhythmia figures.
- Gross figures pool the counts of all records; per-record figures are kept
  beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MATCH_WINDOW_S = 0.150
SKIP_START_S = 300.0
PACED_RECORDS = frozenset({"102", "104", "107", "217"})
CLASSES = ("N", "S", "V", "F", "Q")


def match_beats(ref_index: np.ndarray, test_index: np.ndarray, window: int) -> np.ndarray:
    """Match test beats to reference beats one to one, closest pairs first.

    Args:
        ref_index: reference beat sample indices, ascending.
        test_index: test beat sample indices, ascending.
        window: largest distance (samples) of a match, inclusive.

    Returns:
        For each reference beat the index into ``test_index`` of its match, or -1.
    """
    ref = np.asarray(ref_index, dtype=np.int64)
    test = np.asarray(test_index, dtype=np.int64)
    match = np.full(ref.size, -1, dtype=np.int64)
    if ref.size == 0 or test.size == 0:
        return match
    lo = np.searchsorted(test, ref - window, side="left")
    hi = np.searchsorted(test, ref + window, side="right")
    counts = hi - lo
    ref_of_pair = np.repeat(np.arange(ref.size), counts)
    test_of_pair = (
        np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
        if (ref_of_pair.size)
        else np.zeros(0, dtype=np.int64)
    )
    distance = np.abs(test[test_of_pair] - ref[ref_of_pair])
    # Closest first; ties broken by time so the result never depends on sort internals.
    order = np.lexsort((test_of_pair, ref_of_pair, distance))
    test_taken = np.zeros(test.size, dtype=bool)
    for pair in order.tolist():
        r, t = int(ref_of_pair[pair]), int(test_of_pair[pair])
        if match[r] < 0 and not test_taken[t]:
            match[r] = t
            test_taken[t] = True
    return match


def _inside(index: np.ndarray, intervals: Sequence[tuple[int, int]]) -> np.ndarray:
    """Whether each index lies in one of the ``[start, end]`` intervals."""
    out = np.zeros(index.size, dtype=bool)
    for start, end in intervals:
        out |= (index >= start) & (index <= end)
    return out


def auroc(negative: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (positives scoring higher); None when a side is empty.

    The Mann-Whitney statistic with ties counted one half.
    """
    neg = np.asarray(negative, dtype=np.float64)
    pos = np.asarray(positive, dtype=np.float64)
    if neg.size == 0 or pos.size == 0:
        return None
    values = np.concatenate([neg, pos])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    # Average ranks over ties.
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1.0
    rank_sum = float(ranks[neg.size :].sum())
    u = rank_sum - pos.size * (pos.size + 1) / 2.0
    return u / (pos.size * neg.size)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class Detection:
    """Se and +P of one kind of detection from its counts."""

    tp: int = 0
    fn: int = 0
    fp: int = 0

    def __iadd__(self, other: Detection) -> Detection:
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        return self

    @property
    def se(self) -> float | None:
        """Sensitivity: TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def ppv(self) -> float | None:
        """Positive predictivity: TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    def to_dict(self) -> dict[str, Any]:
        """Counts and rates, JSON-ready."""
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "se": self.se, "ppv": self.ppv}


@dataclass
class RecordResult:
    """What one record's beats gave, after matching.

    Attributes:
        name: the record.
        paced: excluded from the arrhythmia figures.
        scored_s: seconds of signal scored (after the skipped start).
        qrs: QRS detection counts.
        veb: VEB detection counts.
        sveb: SVEB detection counts.
        class_counts: scored reference beats per AAMI class.
        alerted_counts: of those, alerted (matched and alerted) per class.
        false_alerts: alerts on reference N beats or on no reference beat.
        unmatched_test: scored test beats matching no reference beat.
        scores_by_class: scores of the matched scored reference beats, per class.
    """

    name: str
    paced: bool
    scored_s: float
    qrs: Detection
    veb: Detection
    sveb: Detection
    class_counts: dict[str, int]
    alerted_counts: dict[str, int]
    false_alerts: int
    unmatched_test: int
    scores_by_class: dict[str, np.ndarray] = field(repr=False)

    @property
    def false_alerts_per_hour(self) -> float | None:
        """False alerts per hour of scored signal."""
        return self.false_alerts / (self.scored_s / 3600.0) if self.scored_s > 0 else None

    @property
    def false_alert_share(self) -> float | None:
        """False alerts as a share of the scored reference N beats."""
        return _ratio(self.false_alerts, self.class_counts.get("N", 0))

    def to_dict(self) -> dict[str, Any]:
        """The record's figures, JSON-ready (no per-beat arrays)."""
        scores = self.scores_by_class
        abnormal = np.concatenate([scores[c] for c in ("S", "V", "F", "Q")])
        return {
            "record": self.name,
            "paced": self.paced,
            "scored_s": self.scored_s,
            "qrs": self.qrs.to_dict(),
            "veb": self.veb.to_dict(),
            "sveb": self.sveb.to_dict(),
            "class_counts": self.class_counts,
            "alerted_counts": self.alerted_counts,
            "false_alerts": self.false_alerts,
            "false_alerts_per_hour": self.false_alerts_per_hour,
            "false_alert_share_of_n": self.false_alert_share,
            "unmatched_test_beats": self.unmatched_test,
            "auroc_n_vs_v": auroc(scores["N"], scores["V"]),
            "auroc_n_vs_s": auroc(scores["N"], scores["S"]),
            "auroc_n_vs_abnormal": auroc(scores["N"], abnormal),
        }


def score_record(
    name: str,
    fs_hz: float,
    n_samples: int,
    ref_index: np.ndarray,
    ref_class: Sequence[str],
    test_index: np.ndarray,
    test_score: np.ndarray | None = None,
    test_alert: np.ndarray | None = None,
    test_class: Sequence[str | None] | None = None,
    *,
    paced: bool | None = None,
    excluded: Sequence[tuple[int, int]] = (),
    skip_start_s: float = SKIP_START_S,
    window_s: float = MATCH_WINDOW_S,
) -> RecordResult:
    """Match one record's test beats to its reference and count everything.

    Args:
        name: the record's name.
        fs_hz: sampling rate of both index arrays.
        n_samples: the record's length in samples (for the scored duration).
        ref_index: reference beat indices, ascending.
        ref_class: AAMI class of each reference beat.
        test_index: detected beat indices, ascending.
        test_score: score of each detected beat (None: QRS detection only).
        test_alert: whether each detected beat alerted (None: none did).
        test_class: predicted AAMI class of each detected beat, or None (binary alerting).
        paced: override; by default paced when the name is a known paced
            record or any reference beat is paced (``/`` or ``f`` map to Q, so
            pass ``paced`` from the annotations when they were read).
        excluded: ``(start, end)`` sample ranges where no beat is compared
            (ventricular flutter or fibrillation).
        skip_start_s: seconds at the start not scored.
        window_s: largest distance of a match.
    """
    ref = np.asarray(ref_index, dtype=np.int64)
    test = np.asarray(test_index, dtype=np.int64)
    classes = np.asarray(list(ref_class), dtype="<U1") if len(ref_class) else np.zeros(0, "<U1")
    if classes.size != ref.size:
        raise ValueError("ref_class must give one class per reference beat")
    scores = np.zeros(test.size) if test_score is None else np.asarray(test_score, dtype=np.float64)
    alerts = np.zeros(test.size, dtype=bool) if test_alert is None else np.asarray(test_alert, bool)
    if scores.size != test.size or alerts.size != test.size:
        raise ValueError("test_score and test_alert must give one value per test beat")
    if test_class is not None and len(test_class) != test.size:
        raise ValueError("test_class must give one value per test beat")
    window = round(window_s * fs_hz)
    start = round(skip_start_s * fs_hz)
    if excluded:
        keep_ref = ~_inside(ref, excluded)
        keep_test = ~_inside(test, excluded)
        ref, classes = ref[keep_ref], classes[keep_ref]
        test, scores, alerts = test[keep_test], scores[keep_test], alerts[keep_test]
        if test_class is not None:
            test_class = [p for p, k in zip(test_class, keep_test.tolist(), strict=True) if k]
    match = match_beats(ref, test, window)
    ref_scored = ref >= start
    matched_test = np.zeros(test.size, dtype=bool)
    matched_test[match[match >= 0]] = True
    test_scored_unmatched = (~matched_test) & (test >= start)

    qrs = Detection(
        tp=int(np.count_nonzero(ref_scored & (match >= 0))),
        fn=int(np.count_nonzero(ref_scored & (match < 0))),
        fp=int(np.count_nonzero(test_scored_unmatched)),
    )
    # Per scored reference beat: detected, alerted, predicted class.
    m = match[ref_scored]
    c = classes[ref_scored]
    detected = m >= 0
    alerted = np.zeros(m.size, dtype=bool)
    alerted[detected] = alerts[m[detected]]
    predicted = np.full(m.size, "", dtype="<U1")
    if test_class is not None:
        pred_all = np.asarray([p or "" for p in test_class], dtype="<U1")
        predicted[detected] = pred_all[m[detected]]
    unmatched_alerts = int(np.count_nonzero(alerts & test_scored_unmatched))

    def detection(target: str, other_fp: str) -> Detection:
        if test_class is None:
            hit = alerted
            fp_refs = c == "N"
            fp_unmatched = unmatched_alerts
        else:
            hit = predicted == target
            fp_refs = (c == "N") | (c == other_fp)
            pred_unmatched = np.asarray([p or "" for p in test_class], dtype="<U1")
            fp_unmatched = int(np.count_nonzero((pred_unmatched == target) & test_scored_unmatched))
        is_target = c == target
        return Detection(
            tp=int(np.count_nonzero(is_target & hit)),
            fn=int(np.count_nonzero(is_target & ~hit)),
            fp=int(np.count_nonzero(fp_refs & hit)) + fp_unmatched,
        )

    is_paced = paced if paced is not None else name in PACED_RECORDS
    return RecordResult(
        name=name,
        paced=is_paced,
        scored_s=max(0.0, (n_samples - start) / fs_hz),
        qrs=qrs,
        veb=detection("V", "S"),
        sveb=detection("S", "V"),
        class_counts={k: int(np.count_nonzero(c == k)) for k in CLASSES},
        alerted_counts={k: int(np.count_nonzero((c == k) & alerted)) for k in CLASSES},
        false_alerts=int(np.count_nonzero((c == "N") & alerted)) + unmatched_alerts,
        unmatched_test=int(np.count_nonzero(test_scored_unmatched)),
        scores_by_class={
            k: (scores[m[detected & (c == k)]] if test.size else np.zeros(0)) for k in CLASSES
        },
    )


def summarize(results: Sequence[RecordResult]) -> dict[str, Any]:
    """Gross (pooled) figures and per-record figures of a set of records, JSON-ready.

    QRS detection pools every record; the arrhythmia figures (VEB, SVEB, AUROC,
    false alerts, class counts) leave paced records out.
    """
    qrs, veb, sveb = Detection(), Detection(), Detection()
    counted = [r for r in results if not r.paced]
    for r in results:
        qrs += r.qrs
    for r in counted:
        veb += r.veb
        sveb += r.sveb
    pooled = {
        k: np.concatenate([r.scores_by_class[k] for r in counted]) if counted else np.zeros(0)
        for k in CLASSES
    }
    abnormal = np.concatenate([pooled[k] for k in ("S", "V", "F", "Q")])
    n_beats = sum(r.class_counts["N"] for r in counted)
    false_alerts = sum(r.false_alerts for r in counted)
    hours = sum(r.scored_s for r in counted) / 3600.0
    per_hour = [r.false_alerts_per_hour for r in counted if r.false_alerts_per_hour is not None]
    shares = [r.false_alert_share for r in counted if r.false_alert_share is not None]
    return {
        "conventions": {
            "match_window_s": MATCH_WINDOW_S,
            "skip_start_s": SKIP_START_S,
            "paced_excluded_from_arrhythmia": [r.name for r in results if r.paced],
        },
        "records": [r.name for r in results],
        "gross": {
            "qrs": qrs.to_dict(),
            "veb": veb.to_dict(),
            "sveb": sveb.to_dict(),
            "auroc_n_vs_v": auroc(pooled["N"], pooled["V"]),
            "auroc_n_vs_s": auroc(pooled["N"], pooled["S"]),
            "auroc_n_vs_abnormal": auroc(pooled["N"], abnormal),
            "class_counts": {k: sum(r.class_counts[k] for r in counted) for k in CLASSES},
            "alerted_counts": {k: sum(r.alerted_counts[k] for r in counted) for k in CLASSES},
            "false_alerts": false_alerts,
            "false_alerts_per_hour": false_alerts / hours if hours > 0 else None,
            "false_alert_share_of_n": _ratio(false_alerts, n_beats),
            "max_record_false_alert_share_of_n": max(shares) if shares else None,
            "median_record_false_alerts_per_hour": float(np.median(per_hour)) if per_hour else None,
        },
        "per_record": [r.to_dict() for r in results],
    }


def _pct(value: float | None) -> str:
    return "   -  " if value is None or math.isnan(value) else f"{100 * value:6.2f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "  -  " if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """A readable table of a :func:`summarize` report (percentages, AUROC, false alerts)."""
    lines = [
        f"{'record':>8} {'beats':>6} {'QRS Se':>6} {'QRS +P':>6} {'VEB Se':>6} {'VEB +P':>6} "
        f"{'SVEB Se':>7} {'SVEB +P':>7} {'AUC NV':>6} {'FA/h':>7} {'FA %N':>6}"
    ]

    def row(name: str, r: dict[str, Any], paced: bool) -> str:
        beats = sum(r["class_counts"].values())
        mark = "*" if paced else " "
        return (
            f"{name:>7}{mark} {beats:>6} {_pct(r['qrs']['se'])} {_pct(r['qrs']['ppv'])} "
            f"{_pct(r['veb']['se'])} {_pct(r['veb']['ppv'])} {_pct(r['sveb']['se']):>7} "
            f"{_pct(r['sveb']['ppv']):>7} {_num(r['auroc_n_vs_v']):>6} "
            f"{_num(r['false_alerts_per_hour'], 1):>7} {_pct(r['false_alert_share_of_n'])}"
        )

    for r in report["per_record"]:
        lines.append(row(r["record"], r, r["paced"]))
    g = report["gross"]
    lines.append(row("gross", g, False))
    lines.append(
        f"AUROC N vs V {_num(g['auroc_n_vs_v'])}, N vs S {_num(g['auroc_n_vs_s'])}, "
        f"N vs abnormal {_num(g['auroc_n_vs_abnormal'])}; class counts "
        + " ".join(f"{k} {v}" for k, v in g["class_counts"].items())
    )
    paced = report["conventions"]["paced_excluded_from_arrhythmia"]
    lines.append(
        "Se/+P in %; matched within 150 ms; first 5 min not scored"
        + (f"; * paced, QRS only: {' '.join(paced)}" if paced else "")
    )
    return "\n".join(lines)
