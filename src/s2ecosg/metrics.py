"""Agreement metrics on confusion matrices (numpy, pure).

Convention: ``matrix[reference, prediction]`` counts pixels; index 0 is "no label" and is left out of
every score (a pixel with reference 0 or prediction 0 is not compared).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers, Numbers


def confusion(reference: Integers, prediction: Integers, n_classes: int) -> NDArray[np.int64]:
    """(n_classes + 1)² int64 confusion matrix of two id arrays (ids 0..n_classes), 0s excluded."""
    keep = (reference > 0) & (prediction > 0)
    pairs = reference[keep].astype(np.int64) * (n_classes + 1) + prediction[keep].astype(np.int64)
    counts = np.bincount(pairs, minlength=(n_classes + 1) ** 2)
    return counts.reshape(n_classes + 1, n_classes + 1)


def collapse(matrix: Integers, mapping: Integers) -> NDArray[np.int64]:
    """Merge classes: ``mapping[id]`` is the new id (0 drops the class), e.g. CLC L3 → L1."""
    size = int(mapping.max()) + 1
    merged = np.zeros((size, size), dtype=np.int64)
    np.add.at(merged, (mapping[:, None], mapping[None, :]), matrix)
    merged[0, :] = 0
    merged[:, 0] = 0
    return merged


class ClassScores(TypedDict):
    """One class's scores (None where undefined: the class is absent from reference or prediction)."""

    iou: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    reference_pixels: int


class Scores(TypedDict):
    """Scores of a confusion matrix, as ``metrics.json`` holds them (None where no pixel or class is compared)."""

    pixels: int
    agreement: float | None
    mean_iou: float | None
    mean_f1: float | None
    per_class: dict[str, ClassScores]


def scores(matrix: Numbers) -> Scores:
    """Overall agreement, per-class IoU / F1 / precision / recall and their means over present classes.

    A class is "present" when it occurs in the reference or the prediction; absent classes get None.
    """
    core = matrix[1:, 1:].astype(np.float64)
    true_positive = np.diag(core)
    reference_total, predicted_total = core.sum(axis=1), core.sum(axis=0)
    union = reference_total + predicted_total - true_positive
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, true_positive / union, np.nan)
        precision = np.where(predicted_total > 0, true_positive / predicted_total, np.nan)
        recall = np.where(reference_total > 0, true_positive / reference_total, np.nan)
        f1 = np.where(present, 2 * true_positive / (reference_total + predicted_total), np.nan)
    total = core.sum()
    return {
        "pixels": int(total),
        "agreement": float(true_positive.sum() / total) if total else None,
        "mean_iou": float(np.nanmean(iou)) if present.any() else None,
        "mean_f1": float(np.nanmean(f1)) if present.any() else None,
        "per_class": {
            str(index + 1): {
                "iou": nan_none(iou[index]),
                "f1": nan_none(f1[index]),
                "precision": nan_none(precision[index]),
                "recall": nan_none(recall[index]),
                "reference_pixels": int(reference_total[index]),
            }
            for index in range(len(core))
            if present[index]
        },
    }


def nan_none(value: float) -> float | None:
    """NaN → None (JSON null)."""
    return None if np.isnan(value) else float(value)
