"""File I/O shared by the stages: atomic writes, GeoTIFF profiles, JSON, bundle files."""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
from collections.abc import Callable, Iterator
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from affine import Affine
from pydantic import TypeAdapter, ValidationError

from s2ecosg.errors import InputError
from s2ecosg.gdal_env import gdal_ready
from s2ecosg.gdal_errors import checked_read, gdal_message

if TYPE_CHECKING:
    from rasterio.crs import CRS

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

# Readers of band names that are not GDAL paths, by prefix: each answers what :class:`Raster` answers (``crs``,
# ``transform``, ``shape``, ``count``, ``nodata``, ``read(index, window=...)``). A module registers its own on import,
# as :mod:`s2ecosg.stage.eopf` does for ``eopf:`` names.
BAND_READERS: dict[str, Callable[[str], Any]] = {}

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


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` at disk speed, keeping its holes (``cp --sparse=auto`` does the same).

    Only the data extents are copied (``SEEK_DATA``/``SEEK_HOLE``), each by ``copy_file_range`` (in the kernel,
    a reflink where the file system has them); the holes of a sparse file stay holes. ``target`` is the caller's
    temporary (:func:`atomic_path`).
    """
    size = os.path.getsize(source)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        writer.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(reader.fileno(), offset, os.SEEK_DATA)
                end = os.lseek(reader.fileno(), start, os.SEEK_HOLE)
            except OSError as error:
                if error.errno == errno.ENXIO:  # no data after offset: the rest is a hole
                    break
                if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                start, end = offset, size  # no hole detection on this file system: copy it all
            copy_range(reader.fileno(), writer.fileno(), start, end - start)
            offset = end


def copy_range(reader: int, writer: int, start: int, length: int) -> None:
    """Copy ``length`` bytes at ``start`` from one file to the same place of another."""
    done = 0
    while done < length:
        count = min(length - done, 1 << 30)
        try:
            copied = os.copy_file_range(reader, writer, count, start + done, start + done)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            data = os.pread(reader, min(count, 1 << 24), start + done)
            copied = os.pwrite(writer, data, start + done)
        if copied == 0:
            raise OSError(errno.EIO, "the source ended before its size")
        done += copied


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


Record = TypeVar("Record")


def read_record(path: str | Path, kind: type[Record], note: str = "written by another version of s2ecosg?") -> Record:
    """A JSON file read as ``kind`` (a pydantic model or a TypedDict), checked.

    A missing, broken or foreign file is one line naming the file, the field at fault and ``note``.
    """
    try:
        return TypeAdapter(kind).validate_python(read_json(path))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(path, f"{field}: {first['msg']} ({note})") from None


class Raster:
    """An open rasterio dataset whose reads stop with one line naming the file when GDAL fails to decode.

    Attributes other than :meth:`read` are the dataset's own; ``dataset`` is the rasterio dataset itself (for
    ``rasterio.band`` and the warper).
    """

    def __init__(self, dataset: Any, path: str | Path, options: dict[str, str]) -> None:
        self.dataset, self.path, self.options = dataset, str(path), options

    def read(self, indexes: Any = None, **keywords: Any) -> np.ndarray:
        """``rasterio``'s read, with GDAL's errors (those of its decoder threads too) as :class:`InputError`."""
        what = f"band {indexes}" if isinstance(indexes, int) else "bands"
        return checked_read(lambda: self.dataset.read(indexes, **keywords), self.path, what)

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
    import rasterio  # 0.2 s to import: loaded where used
    from rasterio.errors import RasterioIOError  # 0.2 s to import: loaded where used

    for prefix, opener in BAND_READERS.items():  # a band that GDAL does not read (an EOPF Zarr product's)
        if str(path).startswith(prefix):
            return opener(str(path))
    if not Path(path).exists() and "://" not in str(path) and not str(path).startswith("/vsi"):
        raise InputError(path, "no such file")
    gdal_ready()
    try:
        return Raster(rasterio.open(path, **options), path, options)
    except RasterioIOError as error:
        raise InputError(path, f"not a readable raster ({gdal_message(error)})") from None


def checked_warp(source: Raster, run: Callable[[Any], Any], what: str = "band 1") -> Any:
    """Run ``run(dataset)`` (a ``reproject`` reading ``source``); GDAL's errors become one line naming the file."""
    return checked_read(lambda: run(source.dataset), source.path, what)


def write_raster(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: CRS | str,
    transform: Affine,
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
    import rasterio  # 0.2 s to import: loaded where used

    data = array[np.newaxis] if array.ndim == 2 else array
    profile = dict(GEOTIFF_PROFILE, count=data.shape[0], height=data.shape[1], width=data.shape[2])
    profile.update(dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata)
    if data.dtype.kind in "ui" and data.dtype.itemsize > 1:
        profile["predictor"] = 2
    from rasterio.errors import RasterioError  # 0.2 s to import: loaded where used

    gdal_ready()
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


def open_text(path: Path | Traversable) -> io.StringIO:
    """A text file (a path, or a file shipped in the package) as a stream for the csv module (newlines kept)."""
    return io.StringIO(path.read_text(encoding="utf-8"), newline="")


def package_csv(name: str) -> io.StringIO:
    """A CSV table shipped in ``s2ecosg/data`` (e.g. ``domains.csv``), ready for :class:`csv.DictReader`."""
    return open_text(resources.files("s2ecosg") / "data" / name)
