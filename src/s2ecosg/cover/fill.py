"""Gap filling of output cells without a predicted pixel: original ECOSG cover, else sea from a land–sea mask.

``cover.fill``: an ECOSG cover as a DIRECT pair (``<base>.dir`` + ``.hdr``, any regular lat/lon grid) or a
GeoTIFF, sampled at the output cell centres (nearest). ``cover.sea_mask``: a raster whose pixels equal to
``cover.sea_value`` are sea, or a vector file whose polygons are sea; cells whose centre is sea get cover 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2ecosg.errors import InputError
from s2ecosg.extents import lonlat_extent
from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.surfex import direct_base, is_direct, open_cover
from s2ecosg.validate import check_direct
from s2ecosg.vectors import is_vector, read_vector
from s2ecosg.warp import warp_classes

FLAG_NONE, FLAG_PREDICTED, FLAG_ECOSG, FLAG_SEA = 0, 1, 2, 3
SEA = 1


def sample_direct(path: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Values of a DIRECT uint8 file at points (nearest: the cell containing each point; 0 outside).

    The pair goes through the format checks of ``validate-cover`` first (values are checked as they are sampled).
    """
    base = direct_base(path)
    check_direct(base)
    data, header = open_cover(base)
    rows, cols = data.shape
    step_lat = (header["north"] - header["south"]) / rows
    step_lon = (header["east"] - header["west"]) / cols
    row = np.floor((header["north"] - lat) / step_lat).astype(np.int64)
    column = np.floor(((lon - header["west"]) % 360.0) / step_lon).astype(np.int64)
    inside = (row >= 0) & (row < rows) & (column >= 0) & (column < cols)
    values = np.zeros(lon.shape, dtype=np.uint8)
    values[inside] = data[row[inside], column[inside]]
    nodata = int(header.get("nodata", 0))
    values[values == nodata] = 0
    return values


def check_overlap(path: str, key: str, bounds: tuple[float, float, float, float]) -> None:
    """Refuse a fill, sea-mask or zone file that lies wholly outside the output grid, naming both extents."""
    extent = lonlat_extent(path)
    if extent[0] >= bounds[2] or extent[2] <= bounds[0] or extent[1] >= bounds[3] or extent[3] <= bounds[1]:
        raise InputError(
            path,
            "{} extent W {:.4f} S {:.4f} E {:.4f} N {:.4f} does not overlap the output grid "
            "W {:.4f} S {:.4f} E {:.4f} N {:.4f} (wrong file or wrong CRS?)".format(key, *extent, *bounds),
        )


def sample_raster(path: str, grid: LonLatGrid, block: Block) -> np.ndarray:
    """A raster warped (nearest) onto a block of the output grid: float64, 0 outside it or at its nodata."""
    return warp_classes(path, grid.block_transform(block), block[2:], "EPSG:4326", fill=0, dtype=np.float64)[0]


@dataclass
class GapFiller:
    """Sources for cells without predicted pixels (see the module docstring)."""

    ecosg: str | None = None
    sea_mask: str | None = None
    sea_value: float = 1
    _sea_polygons: Any = field(default=None, repr=False)

    def check(self, grid: LonLatGrid) -> None:
        """Refuse fill and sea-mask files that are broken or lie outside the output grid (before any block)."""
        if self.ecosg:
            check_overlap(self.ecosg, "cover.fill", grid.bounds)
        if self.sea_mask:
            check_overlap(self.sea_mask, "cover.sea_mask", grid.bounds)

    def ecosg_covers(self, grid: LonLatGrid, block: Block) -> np.ndarray:
        """ECOSG covers of the block's cell centres (0 where the fill file has none or no file is set)."""
        if not self.ecosg:
            return np.zeros(block[2:], dtype=np.uint8)

        if is_direct(self.ecosg):
            lon, lat = grid.centres(block)
            values = sample_direct(self.ecosg, lon, lat)
        else:
            values = sample_raster(self.ecosg, grid, block).astype(np.int64)
        if values.max(initial=0) > 33 or values.min(initial=0) < 0:
            raise InputError(self.ecosg, f"fill file holds values outside 0..33 (max {values.max()})")
        return values.astype(np.uint8)

    def sea(self, grid: LonLatGrid, block: Block) -> np.ndarray:
        """True for cells whose centre is sea in the land–sea mask (all False without one)."""
        if not self.sea_mask:
            return np.zeros(block[2:], dtype=bool)

        if not is_vector(self.sea_mask):
            return sample_raster(self.sea_mask, grid, block) == self.sea_value
        from rasterio.features import rasterize  # 0.2 s to import: loaded where used
        from shapely.geometry import box  # 0.1 s to import: loaded where used

        polygons = self.sea_polygons()
        chosen = polygons.iloc[polygons.sindex.query(box(*grid.block_bounds(block)))]
        if chosen.empty:
            return np.zeros(block[2:], dtype=bool)
        burnt = rasterize(
            [(geometry, 1) for geometry in chosen.geometry],
            out_shape=block[2:],
            transform=grid.block_transform(block),
            fill=0,
            dtype="uint8",
        )
        return burnt.astype(bool)

    def sea_polygons(self) -> Any:
        """The sea polygons in EPSG:4326 (read once)."""
        if self._sea_polygons is None and self.sea_mask is not None:
            self._sea_polygons = read_vector(self.sea_mask).to_crs("EPSG:4326")
        return self._sea_polygons

    def fill(self, cover: np.ndarray, grid: LonLatGrid, block: Block) -> tuple[np.ndarray, np.ndarray]:
        """Fill the zeros of a block's majority cover; return (cover, source flag per cell)."""
        flags = np.where(cover > 0, FLAG_PREDICTED, FLAG_NONE).astype(np.uint8)
        empty = cover == 0
        if empty.any() and self.ecosg:
            original = self.ecosg_covers(grid, block)
            use = empty & (original > 0)
            cover, flags = np.where(use, original, cover), np.where(use, FLAG_ECOSG, flags)
            empty &= ~use
        if empty.any() and self.sea_mask:
            use = empty & self.sea(grid, block)
            cover, flags = np.where(use, SEA, cover), np.where(use, FLAG_SEA, flags)
        return cover.astype(np.uint8), flags.astype(np.uint8)
