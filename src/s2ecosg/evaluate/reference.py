"""The original ECOCLIMAP-SG side by side: its covers degraded to CORINE levels 1 and 2, scored like the model.

Inputs: ``evaluate.ecosg`` (an ECOSG cover: DIRECT pair or GeoTIFF in any CRS), the table
``data/ecosg_to_clc.csv`` (or ``evaluate.ecosg_table``: columns ``cover, clc_l1, clc_l2``), the label and
prediction tiles. Every scored pixel has a reference label, a prediction and an ECOSG cover, so the model and
ECOSG are compared on exactly the same pixels, as in Walsh, Bessardon & Gleeson (2020): agreement with CLC at
L1 and L2 (model 92.6 % / 87.3 % vs ECOSG 89.8 % / 82.4 % over Ireland).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.arrays import Integers
from s2ecosg.cover.fill import sample_direct
from s2ecosg.errors import InputError
from s2ecosg.evaluate.results import EcosgScores
from s2ecosg.io import open_text
from s2ecosg.legend import Legend
from s2ecosg.metrics import confusion, scores
from s2ecosg.surfex import is_direct
from s2ecosg.warp import warp_classes

if TYPE_CHECKING:
    from rasterio.crs import CRS

COMPARED_LEVELS = ("clc_l1", "clc_l2")


def load_table(path: str | None) -> dict[str, NDArray[np.int64]]:
    """Per level, a lookup array ECOSG cover (0..33) → CLC code (0 = no data)."""
    source: Any = Path(path) if path else resources.files("s2ecosg") / "data" / "ecosg_to_clc.csv"
    lookups = {level: np.zeros(34, dtype=np.int64) for level in COMPARED_LEVELS}
    try:
        with open_text(source) as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                cover = int(row["cover"])
                if not 1 <= cover <= 33:
                    raise InputError(source, f"row {number}: cover {cover} is not an ECOSG cover (1..33)")
                for level in COMPARED_LEVELS:
                    lookups[level][cover] = int(row[level])
    except (OSError, KeyError, ValueError) as error:
        raise InputError(source, f"not an ECOSG→CLC table with cover, clc_l1, clc_l2 ({error})") from error
    return lookups


def ecosg_on_tile(path: str, transform: Affine, shape: tuple[int, int], crs: CRS | str) -> NDArray[np.uint8]:
    """ECOSG covers at the pixel centres of a tile (nearest; 0 outside the file)."""
    if is_direct(path):
        from pyproj import Transformer  # 0.1 s to import: loaded where used

        rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
        x = transform.c + columns * transform.a + rows * transform.b
        y = transform.f + columns * transform.d + rows * transform.e
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
        return sample_direct(path, np.asarray(lon), np.asarray(lat))

    return np.clip(warp_classes(path, transform, shape, crs, fill=0)[0], 0, 33).astype(np.uint8)


def level_codes(legend: Legend, level: str) -> NDArray[np.int64]:
    """Class id → CLC code of ``level`` (0 for id 0)."""
    lookup = np.zeros(legend.n_classes + 1, dtype=np.int64)
    for class_id, row in legend.classes().items():
        lookup[class_id] = int(row[level])
    return lookup


def tile_comparison(
    reference: Integers, prediction: Integers, covers: Integers, legend: Legend, tables: dict[str, NDArray[np.int64]]
) -> dict[str, NDArray[np.int64]]:
    """Per level, a (2, 100, 100) stack of confusion matrices (model, ECOSG) over CLC codes, on common pixels."""
    common = (reference > 0) & (prediction > 0) & (tables[COMPARED_LEVELS[0]][covers] > 0)
    result = {}
    for level in COMPARED_LEVELS:
        codes = level_codes(legend, level)
        truth = codes[reference[common]]
        model = codes[prediction[common]]
        ecosg = tables[level][covers[common]]
        result[level] = np.stack([confusion(truth, model, 99), confusion(truth, ecosg, 99)])
    return result


def summary(matrices: dict[str, NDArray[np.int64]]) -> dict[str, EcosgScores]:
    """Agreement, mean IoU and pixels of the model and of ECOSG per level."""
    result = {}
    for level, (model, ecosg) in matrices.items():
        model_scores, ecosg_scores = scores(model), scores(ecosg)
        result[level] = EcosgScores(
            pixels=model_scores["pixels"],
            model_agreement=model_scores["agreement"],
            ecosg_agreement=ecosg_scores["agreement"],
            model_mean_iou=model_scores["mean_iou"],
            ecosg_mean_iou=ecosg_scores["mean_iou"],
        )
    return result
