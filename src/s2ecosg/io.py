"""File I/O shared by the stages: atomic writes, GeoTIFF profiles, JSON, bundle files."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.errors import InputError

# Tiled, compressed GeoTIFF (COG-like layout without overviews): readable window by window.
GEOTIFF_PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "ZLEVEL": 1,  # with the predictor on integers: 40 % faster than level 6, files no larger (a stage composite)
    "interleave": "band",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",  # GDAL compresses blocks in parallel (it counts the CPUs the job may use)
}

# GDAL settings for jobs that read many scene files window by window. VSI_CACHE buffers each open file, so the
# JPEG 2000 decoder's many small reads of a codestream (tens of thousands per band) do not each become a system
# call, which costs most on a parallel file system; EMPTY_DIR stops GDAL listing an archive folder of thousands of
# files for sidecar files at every open.
GDAL_READ_SETTINGS = {"VSI_CACHE": "TRUE", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def use_read_settings() -> None:
    """Apply :data:`GDAL_READ_SETTINGS` to this process (GDAL reads its environment); a user's own value wins."""
    for name, value in GDAL_READ_SETTINGS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    A crash or a SLURM preemption therefore never leaves a half-written output behind.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.tmp{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: str | Path, content: Any) -> None:
    """Write ``content`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with a one-line error naming the file if it is missing or broken."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot read JSON ({error})") from error


def open_raster(path: str | Path, **options: str) -> Any:
    """Open a raster with rasterio, turning GDAL's errors into a one-line :class:`InputError`.

    Args:
        path: Raster file.
        **options: GDAL open options, e.g. ``NUM_THREADS="ALL_CPUS"`` to decompress GeoTIFF blocks in parallel.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(path, **options)
    except RasterioIOError as error:
        raise InputError(path, f"not a readable raster ({str(error).splitlines()[0]})") from error


def write_raster(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: Any,
    transform: Any,
    nodata: float | None = 0,
    descriptions: list[str] | None = None,
) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array as a tiled, compressed GeoTIFF, atomically.

    Args:
        path: Output file.
        array: Pixel values; dtype is kept.
        crs: Coordinate reference system of ``transform``.
        transform: Affine transform of the upper-left corner, in CRS units.
        nodata: Nodata value recorded in the file.
        descriptions: Band names, one per band.
    """
    import rasterio

    data = array[np.newaxis] if array.ndim == 2 else array
    profile = dict(GEOTIFF_PROFILE, count=data.shape[0], height=data.shape[1], width=data.shape[2])
    profile.update(dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata)
    if data.dtype.kind in "ui" and data.dtype.itemsize > 1:
        profile["predictor"] = 2
    with atomic_path(path) as temporary:
        with rasterio.open(temporary, "w", **profile) as destination:
            destination.write(data)
            for index, name in enumerate(descriptions or [], start=1):
                destination.set_band_description(index, name)


SATURATED = 65535  # Sentinel-2 DN of saturated pixels


def warp(
    path: str,
    index: int,
    transform: Any,
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
    import rasterio

    from s2ecosg.resample import is_north_up, sample

    part = part or (slice(0, shape[0]), slice(0, shape[1]))
    with open_raster(path) as source:
        try:
            if resampling in ("bilinear", "nearest") and is_north_up(source.transform):
                destination = sample(source, index, (transform, shape, crs), part, resampling)
            else:
                destination = gdal_warp(source, index, transform, part, crs, resampling)
        except rasterio.errors.RasterioError as error:
            raise InputError(path, f"cannot read band {index} ({str(error).splitlines()[0]})") from error
    if resampling == "bilinear":
        destination[(destination <= 0) | (destination >= SATURATED - 0.5)] = np.nan
    return destination


def warp_classes(
    path: str | Path, transform: Any, shape: tuple[int, int], crs: Any, fill: int
) -> tuple[np.ndarray, Any]:
    """Band 1 of a categorical raster on a target window (nearest): int64, ``fill`` outside it or at its nodata.

    Returns:
        The (rows, cols) codes and the source's nodata value (None when it has none).
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    with open_raster(path) as source:
        nodata = source.nodata
        codes = np.full(shape, fill, dtype=np.int64)
        reproject(
            rasterio.band(source, 1),
            codes,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
            src_nodata=nodata,
            dst_nodata=fill,
        )
    return codes, nodata


def gdal_warp(
    source: Any, index: int, transform: Any, part: tuple[slice, slice], crs: str, resampling: str
) -> np.ndarray:
    """GDAL's warp of one band of an open dataset onto ``part`` of a target tile: float32, NaN = no data."""
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    rows, columns = part
    destination = np.full((rows.stop - rows.start, columns.stop - columns.start), np.nan, dtype=np.float32)
    reproject(
        rasterio.band(source, index),
        destination,
        src_nodata=source.nodata if source.nodata is not None else 0,
        dst_transform=transform @ Affine.translation(columns.start, rows.start),
        dst_crs=crs,
        dst_nodata=np.nan,
        resampling=Resampling[resampling],
    )
    return destination
