"""Evaluate: agreement of the prediction with the reference labels, on the validation blocks and overall.

Inputs: ``predict/{tile}.tif``, ``labels/{tile}.tif``, ``shards/split.geojson`` (validation blocks),
``model/bundle.json`` (legend), ``stage/{tile}.tif`` (for the picture).
Outputs (``evaluate/``): ``metrics.json``, ``metrics.md`` and ``panels.png`` (RGB | reference | prediction), and
``reliability.png`` (the bundle's calibration on the validation pixels, before and after its temperature).
Scores at the legend's own classes and, where the legend has them, at CORINE levels 1, 2 and 3.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from s2ecosg.config import EvaluateConfig
from s2ecosg.errors import InputError
from s2ecosg.evaluate.plots import panels, reliability_diagram
from s2ecosg.evaluate.points import point_matrix
from s2ecosg.evaluate.reference import COMPARED_LEVELS, ecosg_on_tile, load_table, summary, tile_comparison
from s2ecosg.extents import extent_text, lonlat_extent, rasters_extent
from s2ecosg.io import atomic_path, open_raster, write_json
from s2ecosg.legend import LEVELS, Legend
from s2ecosg.metrics import collapse, confusion, scores
from s2ecosg.model.card import card_legend, read_card
from s2ecosg.shards.cut import read_split

LOG = logging.getLogger(__name__)


def validation_mask(split_path: str | None, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """True on pixels whose centre lies in a validation block (all False without a split file)."""
    from rasterio.features import rasterize  # 0.2 s to import: loaded where used

    if not split_path:
        return np.zeros(shape, dtype=bool)
    shapes = [(geometry, 1) for geometry in read_split(split_path)]
    if not shapes:
        return np.zeros(shape, dtype=bool)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)


def read_tile(prediction_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """(prediction, reference, transform, CRS) of one tile."""
    with open_raster(prediction_path) as source:
        prediction, transform, crs = source.read(1), source.transform, source.crs
    with open_raster(labels_path) as source:
        reference = source.read(1)
    return prediction, reference, transform, crs


def tile_confusions(
    prediction_path: str, labels_path: str, split_path: str | None, n_classes: int
) -> dict[str, np.ndarray]:
    """Confusion matrices of one tile: validation blocks and whole tile."""
    prediction, reference, transform, _ = read_tile(prediction_path, labels_path)
    inside = validation_mask(split_path, transform, reference.shape)
    return {
        "validation": confusion(reference[inside], prediction[inside], n_classes),
        "all": confusion(reference, prediction, n_classes),
    }


def ecosg_matrices(
    paths: tuple[str, str], split_path: str | None, legend: Legend, ecosg: str, tables: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
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
) -> dict[str, Any]:
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
    totals: dict[str, dict[str, np.ndarray]] = {}
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
) -> dict[str, np.ndarray]:
    """Confusion matrices summed over all tiles: validation blocks and whole area."""
    size = n_classes + 1
    matrices = {"validation": np.zeros((size, size), np.int64), "all": np.zeros((size, size), np.int64)}
    for tile in sorted(predictions):
        for area, matrix in tile_confusions(predictions[tile], labels[tile], split_path, n_classes).items():
            matrices[area] += matrix
    return matrices


def score_points(predictions: dict[str, str], legend: Legend, points: str, field: str = "code") -> dict[str, Any]:
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
    return summarise({"points": matrix}, legend)["points"] | counts


def level_mappings(legend: Legend) -> dict[str, np.ndarray]:
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


def summarise(matrices: dict[str, np.ndarray], legend: Legend) -> dict[str, Any]:
    """Scores per area (validation, all) and level, with the class names of the legend."""
    names = {str(class_id): row["name"] for class_id, row in legend.classes().items()}
    result: dict[str, Any] = {"legend": legend.source, "class_names": names}
    for area, matrix in matrices.items():
        result[area] = {}
        for level, mapping in level_mappings(legend).items():
            merged = matrix if level == "classes" else collapse(matrix, mapping)
            result[area][level] = scores(merged)
        result[area]["confusion"] = matrix.tolist()
    return result


def markdown(result: dict[str, Any]) -> str:
    """Metrics as a Markdown report: agreement per level, then per-class IoU and F1."""
    lines = [
        "# Agreement with the reference labels",
        "",
        "| area | level | pixels | agreement | mean IoU | mean F1 |",
        "|---|---|---|---|---|---|",
    ]
    for area, level, score in level_scores(result):
        lines.append(
            f"| {area} | {level} | {score['pixels']} | {percent(score['agreement'])} | "
            f"{percent(score['mean_iou'])} | {percent(score['mean_f1'])} |"
        )
    lines += [
        "",
        "## Per class (validation blocks)",
        "",
        "| id | class | IoU | F1 | reference pixels |",
        "|---|---|---|---|---|",
    ]
    for class_id, score in result["validation"]["classes"]["per_class"].items():
        lines.append(
            f"| {class_id} | {result['class_names'].get(class_id, '')} | {percent(score['iou'])} | "
            f"{percent(score['f1'])} | {score['reference_pixels']} |"
        )
    lines += calibration_markdown(result.get("calibration"))
    lines += ecosg_markdown(result.get("ecosg"))
    lines += baseline_markdown(result)
    if "points" in result:
        points = result["points"]
        lines += ["", f"## Point samples: {points['scored']} of {points['points']} points scored", ""]
        lines += [
            f"- {level}: agreement {percent(points[level]['agreement'])}"
            for level in points
            if level.startswith(("classes", "clc"))
        ]
    return "\n".join(lines) + "\n"


def calibration_markdown(calibration: dict[str, Any] | None) -> list[str]:
    """The bundle's calibration on the validation pixels: temperature, ECE, Brier and NLL before and after."""
    if not calibration:
        return ["", "## Calibration", "", "The bundle is not calibrated (temperature 1)."]
    lines = [
        "",
        f"## Calibration: temperature {calibration['temperature']:.3f} ({calibration['pixels']} validation pixels)",
        "",
        "| probabilities | ECE (15 bins) | Brier | NLL | accuracy |",
        "|---|---|---|---|---|",
    ]
    for key in ("before", "after"):
        scores = calibration[key]
        lines.append(
            f"| {key} | {percent(scores['ece'])} | {scores['brier']:.4f} | {scores['nll']:.4f} | "
            f"{percent(scores['accuracy'])} |"
        )
    return lines + ["", "Reliability diagram: `reliability.png`."]


def baseline_markdown(result: dict[str, Any]) -> list[str]:
    """CNN against the per-pixel LightGBM baseline, per area and level."""
    if "baseline" not in result:
        return []
    lines = [
        "",
        "## CNN and the per-pixel LightGBM baseline (same bands, same split)",
        "",
        "| area | level | CNN agreement | baseline agreement | CNN mean IoU | baseline mean IoU |",
        "|---|---|---|---|---|---|",
    ]
    for area, level, score in level_scores(result):
        other = result["baseline"][area][level]
        lines.append(
            f"| {area} | {level} | {percent(score['agreement'])} | {percent(other['agreement'])} | "
            f"{percent(score['mean_iou'])} | {percent(other['mean_iou'])} |"
        )
    return lines


def level_scores(result: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(area, level, scores) of the validation blocks, then of the whole area, level by level."""
    for area in ("validation", "all"):
        for level, score in result[area].items():
            if level != "confusion":
                yield area, level, score


def ecosg_markdown(comparison: dict[str, Any] | None) -> list[str]:
    """The table of Walsh et al. (2020): model and original ECOSG agreement with the reference at CLC L1/L2."""
    if not comparison:
        return []
    lines = [
        "",
        "## Model and the original ECOSG against the reference (same pixels)",
        "",
        "| area | level | pixels | model agreement | ECOSG agreement | model mean IoU | ECOSG mean IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for area, levels in comparison.items():
        for level, row in levels.items():
            lines.append(
                f"| {area} | {level} | {row['pixels']} | {percent(row['model_agreement'])} | "
                f"{percent(row['ecosg_agreement'])} | {percent(row['model_mean_iou'])} | {percent(row['ecosg_mean_iou'])} |"
            )
    return lines


def html(text: str) -> str:
    """The Markdown of :func:`markdown` (headings, tables, list items) as a small HTML page for the report."""
    body, table = [], False
    for line in text.splitlines():
        cells = [escape(cell.strip()) for cell in line.strip("|").split("|")] if line.startswith("|") else None
        if cells is not None and set(line) <= set("|- "):
            continue  # the Markdown separator row
        if cells is not None:
            body.append(
                ("<table>" if not table else "") + "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
            )
            table = True
            continue
        if table:
            body.append("</table>")
            table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<p>{escape(line[2:])}</p>")
    body.append("</table>" if table else "")
    style = "td{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(body)}</body></html>"


def percent(value: float | None) -> str:
    """0.1234 → ``12.3 %``; None → ``–``."""
    return "–" if value is None else f"{100 * value:.1f} %"


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


def run_evaluate(request: EvaluateRequest) -> dict[str, Any]:
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
    result = summarise(matrices, legend)
    if settings is not None and settings.ecosg:
        result["ecosg"] = compare_with_ecosg(
            predictions, labels, split_path, legend, settings.ecosg, settings.ecosg_table
        )
    if baseline:
        # The per-pixel LightGBM baseline, on the same areas and levels as the CNN.
        result["baseline"] = summarise(area_matrices(baseline, labels, split_path, legend.n_classes), legend)
    if settings is not None and settings.points:
        result["points"] = score_points(predictions, legend, settings.points, settings.points_field)
    result["calibration"] = card.calibration.model_dump() if card.calibration is not None else None
    write_json(Path(out) / "metrics.json", result)
    text = markdown(result)
    with atomic_path(Path(out) / "metrics.md") as temporary:
        temporary.write_text(text)
    with atomic_path(Path(out) / "metrics.html") as temporary:
        temporary.write_text(html(text))
    panels(images, labels, predictions, legend, Path(out) / "panels.png", getattr(settings, "ecosg", None))
    reliability_diagram(card.calibration, Path(out) / "reliability.png")
    LOG.info(
        "validation agreement %s, mean IoU %s",
        percent(result["validation"]["classes"]["agreement"]),
        percent(result["validation"]["classes"]["mean_iou"]),
    )
    return result
