"""Labels: put a categorical reference map onto a grid tile and map its codes to class ids.

Inputs: ``labels.path`` — a categorical raster (nearest-neighbour warp) or a vector file (rasterised
at pixel centres, later features over earlier ones), and the legend CSV (``labels.legend``).
Outputs: ``labels/{tile}.tif`` — uint8 class ids 1..K, 0 = no label.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.blocks import SIGNATURE_TAG, block_name, report, signature, up_to_date, write_manifest
from s2ecosg.config import LabelsConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.io import write_raster
from s2ecosg.layout import tile_file
from s2ecosg.legend import Legend, load_legend, map_codes
from s2ecosg.stage.scenes import file_stamp
from s2ecosg.vectors import is_vector, read_vector
from s2ecosg.warp import warp_classes

if TYPE_CHECKING:
    from rasterio.crs import CRS

LOG = logging.getLogger(__name__)


def raster_labels(
    path: str, legend: Legend, transform: Affine, shape: tuple[int, int], crs: CRS | str
) -> NDArray[np.uint8]:
    """Warp a categorical raster onto a window (nearest) and map its codes to class ids.

    Args:
        path: Categorical raster (e.g. CLC codes 111..523 or GRID_CODE 1..44).
        legend: Legend mapping its codes.
        transform: Target window transform.
        shape: Target window (rows, cols).
        crs: Target CRS.

    Returns:
        (rows, cols) uint8 class ids; pixels outside the source or at its nodata are 0.
    """
    # Why -1: code 0 may be a real class in some legends, so "no source pixel" needs its own value.
    codes, nodata = warp_classes(path, transform, shape, crs, fill=-1)
    return map_codes(codes, legend, path, nodata_codes={"-1"} | ({str(int(nodata))} if nodata is not None else set()))


def vector_labels(
    path: str, field: str | None, legend: Legend, transform: Affine, shape: tuple[int, int], crs: CRS | str
) -> NDArray[np.uint8]:
    """Rasterise polygons onto a window, burning the class id of their code (pixel-centre rule).

    Args:
        path: Vector file with a code attribute.
        field: Attribute holding the code (e.g. ``CODE_18`` for CLC, ``fclass`` for OSM).
        legend: Legend mapping the codes.
        transform: Target window transform.
        shape: Target window (rows, cols).
        crs: Target CRS.
    """
    import geopandas  # 0.7 s to import: loaded where used
    from rasterio.features import rasterize  # 0.2 s to import: loaded where used
    from rasterio.transform import array_bounds  # 0.2 s to import: loaded where used
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    frame = read_vector(path)
    if not field or field not in frame.columns:
        raise InputError(path, f"attribute {field!r} not found (labels.field); has {list(frame.columns)}")
    left, bottom, right, top = array_bounds(shape[0], shape[1], transform)
    box = transform_bounds(crs, frame.crs, left, bottom, right, top, densify_pts=21)
    frame = frame.cx[box[0] : box[2], box[1] : box[3]]
    if frame.empty:
        return np.zeros(shape, dtype=np.uint8)
    codes = frame[field].astype(str).str.replace(r"\.0$", "", regex=True).to_numpy()
    ids = map_codes(codes, legend, path)
    geometries = geopandas.GeoSeries(frame.geometry.to_numpy(), crs=frame.crs).to_crs(crs)
    shapes = [(geometry, int(value)) for geometry, value in zip(geometries, ids, strict=True) if value and geometry]
    if not shapes:
        return np.zeros(shape, dtype=np.uint8)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8")


def tile_labels(
    path: str, field: str | None, legend: Legend, transform: Affine, shape: tuple[int, int], crs: CRS | str
) -> NDArray[np.uint8]:
    """Class ids on a window from a raster or a vector reference."""
    if is_vector(path):
        return vector_labels(path, field, legend, transform, shape, crs)
    return raster_labels(path, legend, transform, shape, crs)


def run_labels(
    labels: LabelsConfig, tile: str, grid: TargetGrid, output: str, tags: dict[str, str] | None = None
) -> None:
    """Write ``labels/{tile}.tif`` for one grid tile from the ``labels`` section's reference map (``labels.path``)."""
    if labels.path is None:
        raise InputError("labels.path", "no reference map to put on the tiles (set labels.path)")
    legend = load_legend(labels.legend)
    transform = grid.tile_transform(tile)
    ids = tile_labels(labels.path, labels.field, legend, transform, (grid.tile_pixels, grid.tile_pixels), grid.crs)
    LOG.info("tile %s: %.1f %% labelled, classes %s", tile, 100 * (ids > 0).mean(), np.unique(ids[ids > 0]).tolist())
    write_raster(output, ids, crs=grid.crs, transform=transform, nodata=0, descriptions=["class_id"], tags=tags)


def run_labels_block(labels: LabelsConfig, tiles: list[str], grid: TargetGrid, folder: str, manifest: str) -> None:
    """Rasterise the reference onto the tiles of one job block, then write the block's manifest.

    Tiles already made from the same reference file (size and modification time), legend and grid are kept.
    """
    if labels.path is None:
        raise InputError("labels.path", "no reference map to put on the tiles (set labels.path)")
    grid_record = [grid.crs, grid.resolution, grid.tile_size]
    wanted = signature(labels.model_dump(mode="json"), file_stamp(labels.path), grid_record)
    entries, made, kept = {}, [], []
    for tile in tiles:
        output = tile_file(folder, "labels", "labels", tile)
        if up_to_date([output], wanted):
            kept.append(tile)
        else:
            run_labels(labels, tile, grid, output, tags={SIGNATURE_TAG: wanted})
            made.append(tile)
        entries[tile] = {"signature": wanted, "labels": output}
    report("labels", block_name(manifest), made, kept)
    write_manifest(manifest, block_name(manifest), entries)
