"""Where an input file lies, in lon/lat degrees: for one-line messages that compare two extents."""

from __future__ import annotations

from s2ecosg.errors import InputError
from s2ecosg.io import open_raster
from s2ecosg.surfex import direct_base, is_direct, parse_header
from s2ecosg.validate import check_direct
from s2ecosg.vectors import is_vector, read_vector


def lonlat_extent(path: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of a DIRECT pair, a raster (which must have a CRS) or a vector file."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

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
