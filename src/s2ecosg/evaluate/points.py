"""Agreement with point samples (LUCAS-style): coordinates plus a class code, read at the predicted pixel.

CORINE's 25 ha units are not truth at 10 m; field points are. ``evaluate.points`` names a CSV with ``lon``,
``lat`` (degrees, EPSG:4326) and a code column, or any vector file of points (GeoPackage, shapefile) in its own
CRS; ``evaluate.points_field`` names the code column, in the codes of the run's legend (e.g. CLC 311). Points
outside the predicted tiles or on pixels without a prediction are counted as such and left out of the scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Values
from s2ecosg.errors import InputError
from s2ecosg.io import open_raster
from s2ecosg.legend import Legend, map_codes
from s2ecosg.metrics import confusion


def read_points(path: str, field: str, crs: str) -> tuple[NDArray[np.float64], NDArray[np.float64], Values]:
    """(x, y) in ``crs`` and the code of every point of a CSV (lon/lat) or vector file."""
    import geopandas  # 0.7 s to import: loaded where used

    try:
        if Path(path).suffix.lower() == ".csv":
            import pandas  # 0.4 s to import: loaded where used

            table = pandas.read_csv(path)
            frame = geopandas.GeoDataFrame(
                table, geometry=geopandas.points_from_xy(table["lon"], table["lat"]), crs=4326
            )
        else:
            frame = geopandas.read_file(path)
    except (OSError, KeyError, ValueError) as error:
        raise InputError(path, f"not a point file with lon/lat or point geometries ({error})") from error
    if field not in frame.columns:
        raise InputError(
            path, f"no column {field!r} (evaluate.points_field); columns: {', '.join(map(str, frame.columns))}"
        )
    if frame.crs is None:
        raise InputError(path, "points have no CRS")
    frame = frame.to_crs(crs)
    return frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy(), frame[field].to_numpy()


def sample_tiles(predictions: dict[str, str], x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.uint8]:
    """Predicted class id at each point (0 where no tile or no prediction)."""
    ids = np.zeros(x.shape, dtype=np.uint8)
    for path in predictions.values():
        with open_raster(path) as source:
            inverse = ~source.transform
            column = np.floor(inverse.a * x + inverse.b * y + inverse.c).astype(np.int64)
            row = np.floor(inverse.d * x + inverse.e * y + inverse.f).astype(np.int64)
            inside = (row >= 0) & (row < source.height) & (column >= 0) & (column < source.width)
            if inside.any():
                ids[inside] = source.read(1)[row[inside], column[inside]]
    return ids


def point_matrix(
    predictions: dict[str, str], points: str, field: str, legend: Legend, crs: str
) -> tuple[NDArray[np.int64], dict[str, int]]:
    """Confusion matrix (reference ids × predicted ids) of the points, and counts of points used and left out."""
    x, y, codes = read_points(points, field, crs)
    reference = map_codes(np.asarray(codes).astype(str), legend, points)
    predicted = sample_tiles(predictions, x, y)
    counts = {
        "points": int(len(codes)),
        "scored": int(((reference > 0) & (predicted > 0)).sum()),
        "without_prediction": int((predicted == 0).sum()),
    }
    return confusion(reference, predicted, legend.n_classes), counts
