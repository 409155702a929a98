"""Detection metrics with anomalies as the positive class (pure NumPy).

AUROC is the Mann-Whitney statistic (ties count one half); AUPRC is average
precision (step-wise, as scikit-learn's ``average_precision_score``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from beatwatch.data import ECG5000_CLASS_NAMES


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties 1/2)."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve as sum over thresholds of dR * P."""
    precision, recall, _ = pr_curve(scores, positive)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score threshold (descending)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, np.float64)[order]
    hits = np.asarray(positive, bool)[order]
    # Last index of each run of equal scores: thresholds between distinct values.
    ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    tp = np.cumsum(hits)[ends]
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / max(int(hits.sum()), 1)
    return precision, recall, sorted_scores[ends]


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct threshold, from (0, 0)."""
    _, recall, thresholds = pr_curve(scores, positive)
    positive = np.asarray(positive, bool)
    scores = np.asarray(scores, np.float64)
    fpr = np.array([(scores[~positive] >= t).mean() for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, recall]


def detection_metrics(
    scores: np.ndarray,
    threshold: float,
    normal: np.ndarray,
    classes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Evaluate alerts (``score > threshold``) against the truth.

    Args:
        scores: anomaly scores.
        threshold: the alert threshold.
        normal: True for normal beats.
        classes: ECG5000 class (1..5) per beat, for per-class detection rates.

    Returns:
        accuracy, precision, recall, f1, auroc, auprc, the confusion matrix,
        counts, per-class detection rates, and the course's figures (normal as
        the positive class, ``normal iff score < threshold``).
    """
    scores = np.asarray(scores, np.float64)
    positive = ~np.asarray(normal, bool)
    alert = scores > threshold
    tp = int((alert & positive).sum())
    fp = int((alert & ~positive).sum())
    tn = int((~alert & ~positive).sum())
    fn = int((~alert & positive).sum())
    n = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # The course predicts "normal" when loss < threshold and scores with normal
    # as the positive class (sklearn's accuracy/precision/recall on those).
    course_normal = scores < threshold
    truly_normal = ~positive
    course_tp = int((course_normal & truly_normal).sum())
    result: dict[str, Any] = {
        "n": n,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": auroc(scores, positive),
        "auprc": average_precision(scores, positive),
        "false_alarm_rate": fp / (fp + tn) if fp + tn else 0.0,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "course": {
            "accuracy": float((course_normal == truly_normal).mean()) if n else 0.0,
            "precision_normal": course_tp / max(int(course_normal.sum()), 1),
            "recall_normal": course_tp / max(int(truly_normal.sum()), 1),
        },
    }
    if classes is not None:
        per_class: dict[str, Any] = {}
        for label, name in ECG5000_CLASS_NAMES.items():
            members = np.asarray(classes) == label
            if members.any():
                per_class[str(label)] = {
                    "name": name,
                    "n": int(members.sum()),
                    # For class 1 (normal) this is the false-alarm rate.
                    "detection_rate": float(alert[members].mean()),
                }
        result["per_class"] = per_class
    return result
