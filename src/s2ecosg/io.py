"""File I/O shared by the stages: atomic writes, GeoTIFF profiles, JSON, bundle files."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
from collections.abc import Callable, Iterator
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


# Temporaries of the atomic writes in progress, in every thread: a SIGTERM removes them at once
# (:func:`s2ecosg.log.exit_on_sigterm`), even one a writer thread holds while the main thread exits.
TEMPORARIES: set[Path] = set()

# Errors of a write that the user (or the site) can fix: full disk or quota, file size limit, read-only target.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    A crash or a SLURM preemption therefore never leaves a half-written output behind: the temporary is removed
    on any error (and on SIGTERM, which the command line turns into an exit), and temporaries a killed process
    (``kill -9``) left for the same output are removed when the output is next written: only one job at a time
    writes a given output. A full disk or a read-only folder is one :class:`InputError` naming the output.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(final.parent, f"cannot create the folder ({error.strerror})") from None
    for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp*"):
        stale.unlink(missing_ok=True)
    temporary = final.with_name(f".{final.name}.tmp{os.getpid()}")
    TEMPORARIES.add(temporary)
    try:
        yield temporary
        os.replace(temporary, final)
    except OSError as error:
        if error.errno not in WRITE_ERRORS:
            raise
        raise InputError(final, f"cannot write ({error.strerror})") from None
    finally:
        TEMPORARIES.discard(temporary)
        temporary.unlink(missing_ok=True)


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


class Raster:
    """An open rasterio dataset whose reads stop with one line naming the file when GDAL fails to decode.

    Attributes other than :meth:`read` are the dataset's own; ``dataset`` is the rasterio dataset itself (for
    ``rasterio.band`` and the warper).
    """

    def __init__(self, dataset: Any, path: str | Path, options: dict[str, str]) -> None:
        self.dataset, self.path, self.options = dataset, str(path), options

    def read(self, indexes: Any = None, **keywords: Any) -> np.ndarray:
        """``rasterio``'s read, with GDAL's errors (those of its decoder threads too) as :class:`InputError`."""
        from s2ecosg.gdal_errors import checked_read

        what = f"band {indexes}" if isinstance(indexes, int) else "bands"

        def reread() -> np.ndarray:
            with open_raster(self.path, **self.options) as fresh:
                return fresh.dataset.read(indexes, **keywords)

        return checked_read(lambda: self.dataset.read(indexes, **keywords), reread, self.path, what)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exception: object) -> None:
        self.dataset.close()

    def close(self) -> None:
        """Close the dataset."""
        self.dataset.close()


def open_raster(path: str | Path, **options: str) -> Raster:
    """Open a raster with rasterio, turning GDAL's errors into a one-line :class:`InputError`.

    Args:
        path: Raster file.
        **options: GDAL open options, e.g. ``NUM_THREADS="ALL_CPUS"`` to decompress GeoTIFF blocks in parallel.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    from s2ecosg.gdal_errors import gdal_message

    if not Path(path).exists() and "://" not in str(path) and not str(path).startswith("/vsi"):
        raise InputError(path, "no such file")
    try:
        return Raster(rasterio.open(path, **options), path, options)
    except RasterioIOError as error:
        raise InputError(path, f"not a readable raster ({gdal_message(error)})") from None


def checked_warp(source: Raster, run: Callable[[Any], Any], what: str = "band 1") -> Any:
    """Run ``run(dataset)`` (a ``reproject`` reading ``source``); GDAL's errors become one line naming the file.

    A read again after a failure in GDAL's threads opens the file afresh: the first dataset caches failed blocks.
    """
    from s2ecosg.gdal_errors import checked_read

    def reread() -> Any:
        with open_raster(source.path, **source.options) as fresh:
            return run(fresh.dataset)

    return checked_read(lambda: run(source.dataset), reread, source.path, what)


def lonlat_extent(path: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of a DIRECT pair, a raster (which must have a CRS) or a vector file."""
    from rasterio.warp import transform_bounds

    from s2ecosg.fill import check_direct
    from s2ecosg.labels import is_vector, read_vector
    from s2ecosg.surfex import direct_base, is_direct, parse_header

    if is_direct(path):
        check_direct(direct_base(path))
        header = parse_header(f"{direct_base(path)}.hdr")
        return header["west"], header["south"], header["east"], header["north"]
    if is_vector(path):
        return tuple(read_vector(path).to_crs("EPSG:4326").total_bounds)
    with open_raster(path) as raster:
        if raster.crs is None:
            raise InputError(path, "raster has no CRS: where it lies is unknown")
        return transform_bounds(raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21)


def rasters_extent(paths: list[str]) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees around a set of rasters (e.g. the predicted tiles)."""
    boxes = [lonlat_extent(path) for path in paths]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def extent_text(box: tuple[float, float, float, float]) -> str:
    """``W -7.1234 S 52.0000 E -6.0000 N 53.0000`` (degrees)."""
    return "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(*box)


def write_raster(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: Any,
    transform: Any,
    nodata: float | None = 0,
    descriptions: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array as a tiled, compressed GeoTIFF, atomically.

    Args:
        path: Output file.
        array: Pixel values; dtype is kept.
        crs: Coordinate reference system of ``transform``.
        transform: Affine transform of the upper-left corner, in CRS units.
        nodata: Nodata value recorded in the file.
        descriptions: Band names, one per band.
        tags: Dataset metadata items (e.g. the signature of a block job's tile, :mod:`s2ecosg.blocks`).
    """
    import rasterio

    data = array[np.newaxis] if array.ndim == 2 else array
    profile = dict(GEOTIFF_PROFILE, count=data.shape[0], height=data.shape[1], width=data.shape[2])
    profile.update(dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata)
    if data.dtype.kind in "ui" and data.dtype.itemsize > 1:
        profile["predictor"] = 2
    from rasterio.errors import RasterioError

    from s2ecosg.gdal_errors import gdal_message

    with atomic_path(path) as temporary:
        try:
            with rasterio.open(temporary, "w", **profile) as destination:
                destination.write(data)
                for index, name in enumerate(descriptions or [], start=1):
                    destination.set_band_description(index, name)
                if tags:
                    destination.update_tags(**tags)
        except RasterioError as error:
            raise InputError(path, f"cannot write ({gdal_message(error)})") from None


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
        if index > source.count:
            raise InputError(path, f"has {source.count} band(s), band {index} was asked for")
        try:
            if resampling in ("bilinear", "nearest") and is_north_up(source.transform):
                destination = sample(source, index, (transform, shape, crs), part, resampling)
            else:
                destination = gdal_warp(source, index, transform, part, crs, resampling)
        except rasterio.errors.RasterioError as error:
            from s2ecosg.gdal_errors import gdal_message

            raise InputError(path, f"cannot read band {index} ({gdal_message(error)})") from None
    if resampling == "bilinear":
        unusable_to_nan(destination)
    return destination


def warp_classes(
    path: str | Path, transform: Any, shape: tuple[int, int], crs: Any, fill: float, dtype: Any = np.int64
) -> tuple[np.ndarray, Any]:
    """Band 1 of a categorical raster on a target window (nearest): ``dtype``, ``fill`` outside it or at its nodata.

    Returns:
        The (rows, cols) codes and the source's nodata value (None when it has none).
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

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
    source: Any, index: int, transform: Any, part: tuple[slice, slice], crs: str, resampling: str
) -> np.ndarray:
    """GDAL's warp of one band of an open dataset onto ``part`` of a target tile: float32, NaN = no data."""
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    rows, columns = part
    destination = np.full((rows.stop - rows.start, columns.stop - columns.start), np.nan, dtype=np.float32)
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


def decode_band(path: str, index: int, bounds: tuple[float, float, float, float], crs: str) -> Any:
    """One band decoded once over the part of a raster that ``bounds`` (in ``crs``) reaches, with 2 px of slack.

    Returns a :class:`~s2ecosg.resample.Decoded` that every tile of a block samples from (so each JPEG 2000 tile
    of the file is decoded once per job), or None where the raster is not north-up or ``bounds`` miss it (the
    caller then warps tile by tile with :func:`warp`).
    """
    import math

    import rasterio
    from rasterio.warp import transform_bounds

    from s2ecosg.resample import Decoded, grid_key, is_north_up

    with open_raster(path) as source:
        if index > source.count:
            raise InputError(path, f"has {source.count} band(s), band {index} was asked for")
        if source.crs is None or not is_north_up(source.transform):
            return None
        left, bottom, right, top = transform_bounds(crs, source.crs, *bounds, densify_pts=21)
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
            from s2ecosg.gdal_errors import gdal_message

            raise InputError(path, f"cannot read band {index} ({gdal_message(error)})") from None
        grid = grid_key(source.transform, source.shape, source.crs)
        return Decoded(values, (rows, columns), grid, source.nodata)


def warp_decoded(
    decoded: Any,
    path: str,
    index: int,
    tile: tuple[Any, tuple[int, int], str],
    part: tuple[slice, slice],
    resampling: str = "bilinear",
) -> np.ndarray:
    """:func:`warp` of part of a tile from a band decoded by :func:`decode_band` (read afresh where it cannot)."""
    from s2ecosg.resample import sample_decoded

    values = None if decoded is None else sample_decoded(decoded, tile, part, resampling)
    if values is None:
        return warp(path, index, *tile, resampling=resampling, part=part)
    if resampling == "bilinear":
        unusable_to_nan(values)
    return values


def unusable_to_nan(values: np.ndarray) -> None:
    """Mark reflectance samples that are no data (≤ 0) or saturated as NaN, in place."""
    values[(values <= 0) | (values >= SATURATED - 0.5)] = np.nan
