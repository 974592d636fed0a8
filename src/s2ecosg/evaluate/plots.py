"""Quick-look pictures: RGB | reference | ECOSG | prediction | confidence over all tiles, decimated to a bounded size."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from s2ecosg.evaluate.reference import ecosg_on_tile
from s2ecosg.io import atomic_path, open_raster, package_csv
from s2ecosg.legend import Legend
from s2ecosg.model.card import CalibrationFit

MAX_PIXELS = 1200


def mosaic(
    paths: dict[str, str], bands: list[int], step: int, extent: tuple[float, ...], resolution: float
) -> np.ndarray:
    """Decimated mosaic (bands, rows, cols) of tiles in one CRS, reading only every ``step``-th pixel."""
    from rasterio.enums import Resampling  # 0.2 s to import: loaded where used

    left, bottom, right, top = extent
    rows, cols = int(round((top - bottom) / resolution / step)), int(round((right - left) / resolution / step))
    canvas = np.zeros((len(bands), rows, cols), dtype=np.float32)
    for path in paths.values():
        with open_raster(path) as source:
            shape = (len(bands), source.height // step, source.width // step)
            data = source.read(bands, out_shape=shape, resampling=Resampling.nearest)
            row, col = (
                int(round((top - source.bounds.top) / resolution / step)),
                int(round((source.bounds.left - left) / resolution / step)),
            )
            canvas[:, row : row + shape[1], col : col + shape[2]] = data[:, : rows - row, : cols - col]
    return canvas


def extent_of(paths: dict[str, str]) -> tuple[tuple[float, float, float, float], float]:
    """Union bounds of tiles and their pixel size."""
    boxes = []
    for path in paths.values():
        with open_raster(path) as source:
            boxes.append(source.bounds)
            resolution = source.res[0]
    return (
        min(b.left for b in boxes),
        min(b.bottom for b in boxes),
        max(b.right for b in boxes),
        max(b.top for b in boxes),
    ), resolution


def rgb_bands(path: str) -> list[int]:
    """1-based indices of B04, B03, B02 (first three bands when absent)."""
    with open_raster(path) as source:
        names = list(source.descriptions)
    return [names.index(band) + 1 if band in names else index + 1 for index, band in enumerate(("B04", "B03", "B02"))]


def stretch(rgb: np.ndarray) -> np.ndarray:
    """2–98 % stretch of a (3, rows, cols) reflectance array to (rows, cols, 3) in 0..1 (white: no data)."""
    inside = rgb.sum(axis=0) > 0
    if not inside.any():
        return np.ones((*rgb.shape[1:], 3))
    valid = rgb[:, inside]
    low, high = np.percentile(valid, 2, axis=1), np.percentile(valid, 98, axis=1)
    picture = np.clip((rgb - low[:, None, None]) / np.maximum(high - low, 1)[:, None, None], 0, 1)
    picture[:, ~inside] = 1.0  # white outside the imagery, like the class panels
    return picture.transpose(1, 2, 0)


def ecosg_colours() -> Any:
    """Matplotlib colour map of the 33 ECOSG covers (0 white), from ``data/ecosg_covers.csv``."""
    from matplotlib.colors import ListedColormap  # 0.6 s to import: loaded where used

    with package_csv("ecosg_covers.csv") as handle:
        colours = ["#ffffff"] + [row["colour"] for row in csv.DictReader(handle)]
    return ListedColormap(colours)


def panel_data(
    images: dict[str, str], labels: dict[str, str], predictions: dict[str, str], ecosg: str | None
) -> list[tuple[str, np.ndarray, str]]:
    """(title, decimated array, kind) per panel: RGB | reference | ECOSG | prediction | confidence."""
    from rasterio.crs import CRS  # 0.2 s to import: loaded where used

    extent, resolution = extent_of(images)
    step = max(1, int(np.ceil(max(extent[2] - extent[0], extent[3] - extent[1]) / resolution / MAX_PIXELS)))
    rgb = stretch(mosaic(images, rgb_bands(next(iter(images.values()))), step, extent, resolution))
    result = [
        ("Sentinel-2 RGB", rgb, "rgb"),
        ("reference", mosaic(labels, [1], step, extent, resolution)[0], "classes"),
    ]
    if ecosg:
        with open_raster(next(iter(images.values()))) as source:
            crs = CRS.from_user_input(source.crs)
        transform = Affine(resolution * step, 0, extent[0], 0, -resolution * step, extent[3])
        result.append(("original ECOSG", ecosg_on_tile(ecosg, transform, rgb.shape[:2], crs), "ecosg"))
    result.append(("prediction", mosaic(predictions, [1], step, extent, resolution)[0], "classes"))
    confidence = {tile: path.replace(".tif", ".conf.tif") for tile, path in predictions.items()}
    if all(Path(path).exists() for path in confidence.values()):
        result.append(("confidence", mosaic(confidence, [1], step, extent, resolution)[0] / 255, "confidence"))
    return result


def panels(
    images: dict[str, str],
    labels: dict[str, str],
    predictions: dict[str, str],
    legend: Legend,
    output: Path,
    ecosg: str | None = None,
) -> None:
    """Write a PNG with RGB | reference | (ECOSG) | prediction | confidence side by side, with a class legend."""
    import matplotlib  # 0.6 s to import: loaded where used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used
    from matplotlib.colors import ListedColormap  # 0.6 s to import: loaded where used

    colours = plt.get_cmap("tab20", max(legend.n_classes, 2))
    cmap = ListedColormap([(1, 1, 1, 1)] + [colours(i) for i in range(legend.n_classes)])
    data = panel_data(images, labels, predictions, ecosg)
    figure, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 5.5), constrained_layout=True)
    for axis, (title, values, kind) in zip(axes, data, strict=True):
        if kind == "rgb":
            axis.imshow(values)
        elif kind == "ecosg":
            axis.imshow(values, cmap=ecosg_colours(), vmin=-0.5, vmax=33.5, interpolation="nearest")
        elif kind == "confidence":
            axis.imshow(np.ma.masked_equal(values, 0), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        else:
            axis.imshow(values, cmap=cmap, vmin=-0.5, vmax=legend.n_classes + 0.5, interpolation="nearest")
        axis.set_title(title)
        axis.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(class_id)) for class_id in legend.classes()]
    names = [f"{i} {row['name']}" for i, row in legend.classes().items()]
    figure.legend(
        handles, names, loc="lower center", ncol=min(6, len(handles)), fontsize=8, bbox_to_anchor=(0.5, -0.08)
    )
    with atomic_path(output) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def reliability_diagram(calibration: CalibrationFit | None, output: Path) -> None:
    """Write the reliability diagram of the bundle's calibration (an empty frame saying so when uncalibrated).

    Accuracy against confidence per bin, before and after the temperature, and the diagonal of perfect calibration.
    """
    import matplotlib  # 0.6 s to import: loaded where used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used

    figure, axis = plt.subplots(figsize=(5.5, 5.5), constrained_layout=True)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    if calibration is None:
        axis.text(0.5, 0.5, "bundle not calibrated\n(no validation pixels)", ha="center", va="center")
    else:
        for key, scores, colour in (
            ("before", calibration.before, "tab:red"),
            ("after", calibration.after, "tab:blue"),
        ):
            label = f"{key} (ECE {100 * scores.ece:.1f} %, Brier {scores.brier:.3f})"
            confidences, accuracies = [row.confidence for row in scores.bins], [row.accuracy for row in scores.bins]
            axis.plot(confidences, accuracies, "o-", color=colour, label=label)
        axis.set_title(f"Validation pixels: {calibration.pixels}, temperature {calibration.temperature:.2f}")
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy")
    axis.legend(loc="upper left", fontsize=8)
    with atomic_path(output) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
