"""Agreement metrics on a hand-made confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from s2ecosg.metrics import collapse, confusion, scores


def test_confusion_counts_pairs_and_drops_zero() -> None:
    reference = np.array([1, 1, 2, 2, 2, 0, 3])
    prediction = np.array([1, 2, 2, 2, 0, 1, 3])
    matrix = confusion(reference, prediction, 3)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[1, 1], expected[1, 2], expected[2, 2], expected[3, 3] = 1, 1, 2, 1
    np.testing.assert_array_equal(matrix, expected)


def test_scores_by_hand() -> None:
    # reference rows, prediction columns; class 1: 50 right, 10 taken as 2; class 2: 30 right, 10 taken as 1.
    matrix = np.zeros((3, 3), dtype=np.int64)
    matrix[1, 1], matrix[1, 2], matrix[2, 1], matrix[2, 2] = 50, 10, 10, 30
    result = scores(matrix)
    assert result["pixels"] == 100
    assert result["agreement"] == pytest.approx(0.8)
    # IoU_1 = 50 / (60 + 60 - 50) = 50/70; IoU_2 = 30 / (40 + 40 - 30) = 30/50.
    assert result["per_class"]["1"]["iou"] == pytest.approx(50 / 70)
    assert result["per_class"]["2"]["iou"] == pytest.approx(0.6)
    assert result["mean_iou"] == pytest.approx((50 / 70 + 0.6) / 2)
    # F1_1 = 2·50 / (60 + 60); precision_2 = 30 / 40.
    assert result["per_class"]["1"]["f1"] == pytest.approx(100 / 120)
    assert result["per_class"]["2"]["precision"] == pytest.approx(0.75)


def test_collapse_to_level_one() -> None:
    # Classes 1, 2 are both "artificial" (L1 = 1), class 3 is "forest" (L1 = 2): 1↔2 confusions become agreement.
    matrix = np.zeros((4, 4), dtype=np.int64)
    matrix[1, 2], matrix[2, 1], matrix[3, 3], matrix[3, 1] = 5, 5, 20, 10
    merged = collapse(matrix, np.array([0, 1, 1, 2]))
    np.testing.assert_array_equal(merged, [[0, 0, 0], [0, 10, 0], [0, 10, 20]])
    assert scores(merged)["agreement"] == pytest.approx(30 / 40)
