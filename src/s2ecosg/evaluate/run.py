"""Evaluate: agreement of the prediction with the reference labels, on the validation blocks and overall.

Inputs: ``predict/{tile}.tif``, ``labels/{tile}.tif``, ``shards/split.geojson`` (validation blocks),
``model/bundle.json`` (legend), ``stage/{tile}.tif`` (for the picture).
Outputs (``evaluate/``): ``metrics.json``, ``metrics.md`` and ``panels.png`` (RGB | reference | prediction), and
``reliability.png`` (the bundle's calibration on the validation pixels, before and after its temperature).
Scores at the legend's own classes and, where the legend has them, at CORINE levels 1, 2 and 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.arrays import Mask
from s2ecosg.config import EvaluateConfig
from s2ecosg.errors import InputError
from s2ecosg.evaluate.plots import panels, reliability_diagram
from s2ecosg.evaluate.points import point_matrix
from s2ecosg.evaluate.reference import COMPARED_LEVELS, ecosg_on_tile, load_table, summary, tile_comparison
from s2ecosg.evaluate.report import html, markdown, percent
from s2ecosg.evaluate.results import AreaScores, EcosgComparison, Evaluation, PointScores, write_metrics
from s2ecosg.extents import extent_text, lonlat_extent, rasters_extent
from s2ecosg.io import atomic_path, open_raster
from s2ecosg.legend import LEVELS, Legend
from s2ecosg.metrics import collapse, confusion, scores
from s2ecosg.model.card import card_legend, read_card
from s2ecosg.shards.cut import read_split

if TYPE_CHECKING:
    from rasterio.crs import CRS

LOG = logging.getLogger(__name__)


def validation_mask(split_path: str | None, transform: Affine, shape: tuple[int, int]) -> Mask:
    """True on pixels whose centre lies in a validation block (all False without a split file)."""
    from rasterio.features import rasterize  # 0.2 s to import: loaded where used

    if not split_path:
        return np.zeros(shape, dtype=bool)
    shapes = [(geometry, 1) for geometry in read_split(split_path)]
    if not shapes:
        return np.zeros(shape, dtype=bool)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)


def read_tile(prediction_path: str, labels_path: str) -> tuple[NDArray[np.uint8], NDArray[np.uint8], Affine, CRS]:
    """(prediction, reference, transform, CRS) of one tile."""
    with open_raster(prediction_path) as source:
        prediction, transform, crs = source.read(1), source.transform, source.crs
    with open_raster(labels_path) as source:
        reference = source.read(1)
    return prediction, reference, transform, crs


def tile_confusions(
    prediction_path: str, labels_path: str, split_path: str | None, n_classes: int
) -> dict[str, NDArray[np.int64]]:
    """Confusion matrices of one tile: validation blocks and whole tile."""
    prediction, reference, transform, _ = read_tile(prediction_path, labels_path)
    inside = validation_mask(split_path, transform, reference.shape)
    return {
        "validation": confusion(reference[inside], prediction[inside], n_classes),
        "all": confusion(reference, prediction, n_classes),
    }


def ecosg_matrices(
    paths: tuple[str, str], split_path: str | None, legend: Legend, ecosg: str, tables: dict[str, NDArray[np.int64]]
) -> dict[str, dict[str, NDArray[np.int64]]]:
    """Model and ECOSG confusion matrices at CLC L1/L2 of one tile, on validation blocks and the whole tile."""
    prediction, reference, transform, crs = read_tile(*paths)
    covers = ecosg_on_tile(ecosg, transform, reference.shape, crs)
    inside = validation_mask(split_path, transform, reference.shape)
    return {
        "validation": tile_comparison(reference[inside], prediction[inside], covers[inside], legend, tables),
        "all": tile_comparison(reference, prediction, covers, legend, tables),
    }


def compare_with_ecosg(
    predictions: dict[str, str],
    labels: dict[str, str],
    split_path: str | None,
    legend: Legend,
    ecosg: str,
    ecosg_table: str | None = None,
) -> EcosgComparison:
    """Side-by-side scores of the model and the original ECOSG over all tiles.

    Args:
        predictions: Tile id → prediction GeoTIFF.
        labels: Tile id → label GeoTIFF on the same grid.
        split_path: The shards' split (validation blocks), or None for the whole area only.
        legend: The label legend; needs the CLC levels L1 and L2.
        ecosg: The original cover (``evaluate.ecosg``): DIRECT base name or GeoTIFF.
        ecosg_table: ECOSG → CLC table (``evaluate.ecosg_table``); None: the shipped one.
    """
    if not all(legend.has_level(level) for level in COMPARED_LEVELS):
        raise InputError(ecosg, f"evaluate.ecosg needs a legend with CLC levels; {legend.source} has none")
    tables = load_table(ecosg_table)
    totals: dict[str, dict[str, NDArray[np.int64]]] = {}
    for tile in sorted(predictions):
        for area, levels in ecosg_matrices(
            (predictions[tile], labels[tile]), split_path, legend, ecosg, tables
        ).items():
            for level, stack in levels.items():
                totals.setdefault(area, {}).setdefault(level, np.zeros_like(stack))
                totals[area][level] += stack
    return {area: summary(levels) for area, levels in totals.items()}


def area_matrices(
    predictions: dict[str, str], labels: dict[str, str], split_path: str | None, n_classes: int
) -> dict[str, NDArray[np.int64]]:
    """Confusion matrices summed over all tiles: validation blocks and whole area."""
    size = n_classes + 1
    matrices = {"validation": np.zeros((size, size), np.int64), "all": np.zeros((size, size), np.int64)}
    for tile in sorted(predictions):
        for area, matrix in tile_confusions(predictions[tile], labels[tile], split_path, n_classes).items():
            matrices[area] += matrix
    return matrices


def score_points(predictions: dict[str, str], legend: Legend, points: str, field: str = "code") -> PointScores:
    """Scores against point samples, per level, with the point counts.

    Args:
        predictions: Tile id → prediction GeoTIFF.
        legend: The label legend of the predictions.
        points: The samples (``evaluate.points``): CSV with lon, lat and ``field``, or a vector file of points.
        field: Column holding the legend's class codes (``evaluate.points_field``).
    """
    with open_raster(next(iter(predictions.values()))) as source:
        crs = source.crs.to_string()
    matrix, counts = point_matrix(predictions, points, field, legend, crs)
    scored = area_scores(matrix, legend)
    return PointScores(
        scored.levels, scored.confusion, counts["points"], counts["scored"], counts["without_prediction"]
    )


def level_mappings(legend: Legend) -> dict[str, NDArray[np.int64]]:
    """Class id → dense index per level: ``classes`` itself and each CORINE level the legend has."""
    mappings = {"classes": np.arange(legend.n_classes + 1)}
    for level in LEVELS:
        if legend.has_level(level):
            codes = sorted({row[level] for row in legend.classes().values()})
            mapping = np.zeros(legend.n_classes + 1, dtype=np.int64)
            for class_id, row in legend.classes().items():
                mapping[class_id] = codes.index(row[level]) + 1
            mappings[level] = mapping
    return mappings


def area_scores(matrix: NDArray[np.int64], legend: Legend) -> AreaScores:
    """Scores of a confusion matrix of the legend's classes at each level the legend has."""
    levels = {}
    for level, mapping in level_mappings(legend).items():
        levels[level] = scores(matrix if level == "classes" else collapse(matrix, mapping))
    return AreaScores(levels, matrix.tolist())


def summarise(matrices: dict[str, NDArray[np.int64]], legend: Legend) -> dict[str, AreaScores]:
    """Scores per area (validation, all) and level."""
    return {area: area_scores(matrix, legend) for area, matrix in matrices.items()}


def no_overlap(labels_source: str | None, predictions: dict[str, str]) -> str:
    """The message when no predicted pixel has a reference label, with both extents where they are known."""
    imagery = extent_text(rasters_extent(list(predictions.values())))
    if labels_source is None:
        return f"no predicted pixel has a reference label (prediction {imagery})"
    return (
        f"no predicted pixel has a reference label: labels.path {extent_text(lonlat_extent(labels_source))} does "
        f"not overlap the prediction {imagery} (wrong CRS, wrong file, or another area?)"
    )


@dataclass(frozen=True)
class EvaluateRequest:
    """What an evaluation scores and where its reports go.

    Attributes:
        predictions: Tile → predicted class raster.
        labels: Tile → label raster.
        images: Tile → staged image (the panels' RGB).
        bundle: The bundle folder (legend, calibration).
        split_path: ``shards/split.geojson`` (validation blocks), or None.
        out: The ``evaluate/`` folder.
        settings: The ``evaluate`` section (ECOSG and point references), or None.
        baseline: Tile → the LightGBM baseline's class raster, or None.
        labels_source: ``labels.path`` (named when no pixel has both a label and a prediction).
    """

    predictions: dict[str, str]
    labels: dict[str, str]
    images: dict[str, str]
    bundle: str
    split_path: str | None
    out: str
    settings: EvaluateConfig | None = None
    baseline: dict[str, str] | None = None
    labels_source: str | None = None


def run_evaluate(request: EvaluateRequest) -> Evaluation:
    """Accumulate confusion matrices over all tiles and write metrics and the picture.

    No pixel with both a label and a prediction is an error naming ``labels.path`` and both extents: a reference
    in a wrong CRS would otherwise score 0 pixels and pass.
    """
    predictions, labels, images, bundle = request.predictions, request.labels, request.images, request.bundle
    split_path, out, settings, baseline = request.split_path, request.out, request.settings, request.baseline
    labels_source = request.labels_source
    card = read_card(bundle)
    legend = card_legend(card, bundle)
    matrices = area_matrices(predictions, labels, split_path, legend.n_classes)
    if not matrices["all"].any():
        raise InputError(labels_source or next(iter(labels.values())), no_overlap(labels_source, predictions))
    names = {str(class_id): row["name"] for class_id, row in legend.classes().items()}
    result = Evaluation(legend.source, names, summarise(matrices, legend), calibration=card.calibration)
    if settings is not None and settings.ecosg:
        result.ecosg = compare_with_ecosg(predictions, labels, split_path, legend, settings.ecosg, settings.ecosg_table)
    if baseline:
        # The per-pixel LightGBM baseline, on the same areas and levels as the CNN.
        result.baseline = summarise(area_matrices(baseline, labels, split_path, legend.n_classes), legend)
    if settings is not None and settings.points:
        result.points = score_points(predictions, legend, settings.points, settings.points_field)
    write_metrics(Path(out) / "metrics.json", result)
    text = markdown(result)
    with atomic_path(Path(out) / "metrics.md") as temporary:
        temporary.write_text(text)
    with atomic_path(Path(out) / "metrics.html") as temporary:
        temporary.write_text(html(text))
    panels(
        images, labels, predictions, legend, Path(out) / "panels.png", settings.ecosg if settings is not None else None
    )
    reliability_diagram(card.calibration, Path(out) / "reliability.png")
    LOG.info(
        "validation agreement %s, mean IoU %s",
        percent(result.areas["validation"].levels["classes"]["agreement"]),
        percent(result.areas["validation"].levels["classes"]["mean_iou"]),
    )
    return result
