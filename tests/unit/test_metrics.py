"""Detection metrics against hand-computed values (anomaly = positive)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.metrics import auroc, average_precision, detection_metrics, roc_curve

# 4 normal, 4 abnormal; threshold 0.5 -> alerts at 0.6, 0.7, 0.8, 0.9
SCORES = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
NORMAL = np.array([True, True, True, True, False, False, False, False])


def test_confusion_and_rates() -> None:
    m = detection_metrics(SCORES, 0.5, NORMAL)
    assert m["confusion"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert m["accuracy"] == 0.75
    assert m["precision"] == 0.75 and m["recall"] == 0.75 and m["f1"] == 0.75
    assert m["false_alarm_rate"] == 0.25
    # Course: normal iff score < threshold, normal positive.
    assert m["course"] == {"accuracy": 0.75, "precision_normal": 0.75, "recall_normal": 0.75}


def test_auroc_hand_computed_with_ties() -> None:
    # Pairs (pos, neg): positives 0.4,0.7,0.8,0.9 vs negatives 0.1,0.2,0.3,0.6.
    # 0.4 beats 3 of 4; the others beat all 4 -> 15/16.
    assert auroc(SCORES, ~NORMAL) == pytest.approx(15 / 16)
    assert auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert auroc(np.array([0.0, 1.0]), np.array([True, False])) == 0.0


def test_average_precision_hand_computed() -> None:
    # Descending: 0.9+,0.8+,0.7+,0.6-,0.4+,... -> AP = (1 + 1 + 1 + 4/5) / 4
    assert average_precision(SCORES, ~NORMAL) == pytest.approx(3.8 / 4)


def test_roc_curve_endpoints() -> None:
    fpr, tpr = roc_curve(SCORES, ~NORMAL)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)


def test_per_class_detection_rate() -> None:
    classes = np.array([1, 1, 1, 1, 3, 2, 2, 5])
    per_class = detection_metrics(SCORES, 0.5, NORMAL, classes)["per_class"]
    assert per_class["1"] == {"name": "normal", "n": 4, "detection_rate": 0.25}
    assert per_class["2"]["detection_rate"] == 1.0 and per_class["3"]["detection_rate"] == 0.0
    assert per_class["5"] == {"name": "unclassified", "n": 1, "detection_rate": 1.0}
    assert "4" not in per_class
