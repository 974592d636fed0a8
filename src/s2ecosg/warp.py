"""Warping rasters onto a target grid.

Reflectance (bilinear, saturated pixels unusable), classes (nearest), and decoded band windows sampled onto several
tiles (:mod:`s2ecosg.resample`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from s2ecosg.errors import InputError
from s2ecosg.gdal_errors import gdal_message
from s2ecosg.io import checked_warp, open_raster
from s2ecosg.resample import Decoded, grid_key, is_north_up, sample, sample_decoded

if TYPE_CHECKING:
    from rasterio.crs import CRS

SATURATED = 65535  # Sentinel-2 DN of saturated pixels


def warp(
    path: str,
    index: int,
    transform: Affine,
    shape: tuple[int, int],
    crs: str,
    resampling: str = "bilinear",
    part: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Warp one band of a raster onto a target window: float32, NaN where the source has no data.

    North-up sources are sampled through a pixel mapping shared by all bands on the same source CRS
    (:mod:`s2ecosg.resample`); other sources and ``average`` go through GDAL's warper.

    Args:
        path: Source raster (JP2 or GeoTIFF).
        index: 1-based band index in ``path``.
        transform: Target tile transform (upper-left origin).
        shape: Target tile (rows, cols).
        crs: Target CRS.
        resampling: ``bilinear`` (reflectance; values ≤ 0 or saturated become NaN), ``nearest`` (class rasters
            such as SCL) or ``average`` (downsampling).
        part: Rows and columns of the tile to fill (default: all); the result has this part's shape.
    """
    import rasterio  # 0.2 s to import: loaded where used

    part = part or (slice(0, shape[0]), slice(0, shape[1]))
    with open_raster(path) as source:
        if index > source.count:
            raise InputError(path, f"has {source.count} band(s), band {index} was asked for")
        try:
            if resampling in ("bilinear", "nearest") and is_north_up(source.transform):
                destination = sample(source, index, (transform, shape, crs), part, resampling)
            else:
                destination = gdal_warp(source, index, transform, part, crs, resampling)
        except rasterio.errors.RasterioError as error:
            raise InputError(path, f"cannot read band {index} ({gdal_message(error)})") from None
    if resampling == "bilinear":
        unusable_to_nan(destination)
    return destination


def warp_classes(
    path: str | Path, transform: Affine, shape: tuple[int, int], crs: CRS | str, fill: float, dtype: Any = np.int64
) -> tuple[np.ndarray, Any]:
    """Band 1 of a categorical raster on a target window (nearest): ``dtype``, ``fill`` outside it or at its nodata.

    Returns:
        The (rows, cols) codes and the source's nodata value (None when it has none).
    """
    import rasterio  # 0.2 s to import: loaded where used
    from rasterio.warp import Resampling, reproject  # 0.2 s to import: loaded where used

    with open_raster(path) as source:
        if source.crs is None:
            raise InputError(path, "raster has no CRS")
        nodata = source.nodata
        codes = np.full(shape, fill, dtype=dtype)
        checked_warp(
            source,
            lambda dataset: reproject(
                rasterio.band(dataset, 1),
                codes,
                dst_transform=transform,
                dst_crs=crs,
                resampling=Resampling.nearest,
                src_nodata=nodata,
                dst_nodata=fill,
            ),
        )
    return codes, nodata


def gdal_warp(
    source: Any, index: int, transform: Affine, part: tuple[slice, slice], crs: str, resampling: str
) -> np.ndarray:
    """GDAL's warp of one band of an open dataset onto ``part`` of a target tile: float32, NaN = no data."""
    import rasterio  # 0.2 s to import: loaded where used
    from rasterio.warp import Resampling, reproject  # 0.2 s to import: loaded where used

    rows, columns = part
    destination = np.full((rows.stop - rows.start, columns.stop - columns.start), np.nan, dtype=np.float32)
    if not hasattr(source, "dataset"):  # a band that is not a GDAL dataset (EOPF Zarr): warp its window's values
        return array_warp(
            source, index, transform @ Affine.translation(columns.start, rows.start), destination, crs, resampling
        )
    checked_warp(
        source,
        lambda dataset: reproject(
            rasterio.band(dataset, index),
            destination,
            src_nodata=source.nodata if source.nodata is not None else 0,
            dst_transform=transform @ Affine.translation(columns.start, rows.start),
            dst_crs=crs,
            dst_nodata=np.nan,
            resampling=Resampling[resampling],
        ),
        f"band {index}",
    )
    return destination


def array_warp(
    source: Any, index: int, transform: Affine, destination: np.ndarray, crs: str, resampling: str
) -> np.ndarray:
    """GDAL's warp onto ``destination`` (target ``transform``, ``crs``) from the values a source window holds."""
    from rasterio.warp import Resampling, reproject, transform_bounds  # 0.2 s to import: loaded where used

    height, width = destination.shape
    box = (transform.c, transform.f + height * transform.e, transform.c + width * transform.a, transform.f)
    left, bottom, right, top = transform_bounds(crs, source.crs, *box, densify_pts=21)
    origin = source.transform
    column0 = max(0, math.floor((left - origin.c) / origin.a) - 2)
    column1 = min(source.width, math.ceil((right - origin.c) / origin.a) + 2)
    row0 = max(0, math.floor((top - origin.f) / origin.e) - 2)
    row1 = min(source.height, math.ceil((bottom - origin.f) / origin.e) + 2)
    if row0 >= row1 or column0 >= column1:
        return destination
    values = source.read(index, window=((row0, row1), (column0, column1)))
    reproject(
        values,
        destination,
        src_transform=origin @ Affine.translation(column0, row0),
        src_crs=source.crs,
        src_nodata=source.nodata if source.nodata is not None else 0,
        dst_transform=transform,
        dst_crs=crs,
        dst_nodata=np.nan,
        resampling=Resampling[resampling],
    )
    return destination


def decode_band(path: str, index: int, bounds: tuple[float, float, float, float], crs: str) -> Any:
    """One band decoded once over the part of a raster that ``bounds`` (in ``crs``) reaches, with 2 px of slack.

    Returns a :class:`~s2ecosg.resample.Decoded` that every tile of a block samples from (so each JPEG 2000 tile
    of the file is decoded once per job), or None where the raster is not north-up or ``bounds`` miss it (the
    caller then warps tile by tile with :func:`warp`).
    """
    import rasterio  # 0.2 s to import: loaded where used

    with open_raster(path) as source:
        if index > source.count:
            raise InputError(path, f"has {source.count} band(s), band {index} was asked for")
        if source.crs is None or not is_north_up(source.transform):
            return None
        left, bottom, right, top = bounds_in(tuple(bounds), crs, source.crs.to_string())
        transform = source.transform  # north-up: pixel = (x - c) / a, (y - f) / e
        column0, column1 = (left - transform.c) / transform.a, (right - transform.c) / transform.a
        row0, row1 = (top - transform.f) / transform.e, (bottom - transform.f) / transform.e
        rows = max(0, math.floor(min(row0, row1)) - 2), min(source.height, math.ceil(max(row0, row1)) + 2)
        columns = max(0, math.floor(min(column0, column1)) - 2), min(source.width, math.ceil(max(column0, column1)) + 2)
        if rows[0] >= rows[1] or columns[0] >= columns[1]:
            return None
        try:
            values = source.read(index, window=(rows, columns))
        except rasterio.errors.RasterioError as error:
            raise InputError(path, f"cannot read band {index} ({gdal_message(error)})") from None
        grid = grid_key(source.transform, source.shape, source.crs)
        return Decoded(values, (rows, columns), grid, source.nodata)


@functools.lru_cache(maxsize=1024)
def bounds_in(bounds: tuple[float, float, float, float], crs: str, other_crs: str) -> tuple[float, ...]:
    """A box in ``crs`` as the box around it in ``other_crs`` (21 points a side), computed once per process.

    PROJ looks its operation up in its database at every call (20 ms, a fifth of a stage job's CPU when made per
    band, measured with ``perf``); the scenes of one MGRS tile in a block ask for the same box with every band.
    """
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    return tuple(transform_bounds(crs, other_crs, *bounds, densify_pts=21))


def warp_decoded(
    decoded: Any,
    path: str,
    index: int,
    tile: tuple[Any, tuple[int, int], str],
    part: tuple[slice, slice],
    resampling: str = "bilinear",
) -> np.ndarray:
    """:func:`warp` of part of a tile from a band decoded by :func:`decode_band` (read afresh where it cannot)."""
    values = None if decoded is None else sample_decoded(decoded, tile, part, resampling)
    if values is None:
        return warp(path, index, *tile, resampling=resampling, part=part)
    if resampling == "bilinear":
        unusable_to_nan(values)
    return values


def unusable_to_nan(values: np.ndarray) -> None:
    """Mark reflectance samples that are no data (≤ 0) or saturated as NaN, in place."""
    values[(values <= 0) | (values >= SATURATED - 0.5)] = np.nan
