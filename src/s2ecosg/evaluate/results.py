"""``evaluate/metrics.json``: the scores of an evaluation as typed records, and the one writer of the file.

Per area (``validation``: the shards' validation blocks, ``all``: every labelled pixel) the scores of each level
(``classes``: the legend's own, ``clc_l1`` … where the legend has CORINE levels) and the confusion matrix of the
legend's classes. Beside them, when asked for: the original ECOSG on the same pixels, the LightGBM baseline, point
samples, and the bundle's calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from s2ecosg.io import write_json
from s2ecosg.metrics import Scores
from s2ecosg.model.card import CalibrationFit

AREAS = ("validation", "all")


class EcosgScores(TypedDict):
    """The model and the original ECOSG against the reference at one CLC level, on the same pixels."""

    pixels: int
    model_agreement: float | None
    ecosg_agreement: float | None
    model_mean_iou: float | None
    ecosg_mean_iou: float | None


EcosgComparison = dict[str, dict[str, EcosgScores]]  # area → level → scores


@dataclass(frozen=True)
class AreaScores:
    """Scores of one area per level, and its (classes + 1)² confusion matrix of the legend's class ids."""

    levels: dict[str, Scores]
    confusion: list[list[int]]

    def stored(self) -> dict[str, object]:
        """As ``metrics.json`` holds it: the levels, then ``confusion``."""
        return {**self.levels, "confusion": self.confusion}


@dataclass(frozen=True)
class PointScores(AreaScores):
    """Scores against point samples: the points read, those scored, those outside every prediction."""

    points: int = 0
    scored: int = 0
    without_prediction: int = 0

    def stored(self) -> dict[str, object]:
        """The levels and ``confusion``, then the three counts."""
        counts = {"points": self.points, "scored": self.scored, "without_prediction": self.without_prediction}
        return super().stored() | counts


@dataclass
class Evaluation:
    """Everything ``metrics.json`` holds; ``areas`` and ``baseline`` by area (:data:`AREAS`)."""

    legend: str
    class_names: dict[str, str]  # class id → name
    areas: dict[str, AreaScores]
    ecosg: EcosgComparison | None = None
    baseline: dict[str, AreaScores] | None = None
    points: PointScores | None = None
    calibration: CalibrationFit | None = None

    def stored(self) -> dict[str, object]:
        """The JSON document, keys in the order the file has always had."""
        document: dict[str, object] = {"legend": self.legend, "class_names": self.class_names}
        document |= {area: scores.stored() for area, scores in self.areas.items()}
        if self.ecosg is not None:
            document["ecosg"] = self.ecosg
        if self.baseline is not None:
            document["baseline"] = {area: scores.stored() for area, scores in self.baseline.items()}
        if self.points is not None:
            document["points"] = self.points.stored()
        document["calibration"] = self.calibration.model_dump() if self.calibration is not None else None
        return document


def write_metrics(path: str | Path, evaluation: Evaluation) -> None:
    """Write ``metrics.json`` (atomically)."""
    write_json(path, evaluation.stored())
