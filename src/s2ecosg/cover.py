"""Cover: class ids → ECOSG covers → majority per cell of a regular lat/lon grid → SURFEX DIRECT file.

Inputs: ``predict/{tile}.tif`` (class ids, target CRS) and the bundle's legend (``model/bundle.json``).
Outputs (``cover/``): ``{BASENAME}.dir`` + ``.hdr`` (uint8, nodata 0, covers 1..33, row 1 north),
``{BASENAME}.nam`` (PGD namelist fragment), ``validation.txt`` (result of the format rules).

Each 10 m pixel centre is placed in the output cell that contains it (as SURFEX itself places the
cover pixels in model cells), and the cell takes the most frequent cover; ties go to the lower cover
number. The grid is processed in bands of output rows so memory does not grow with the extent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2ecosg.legend import N_COVERS

LOG = logging.getLogger(__name__)
BAND_ROWS = 512


@dataclass(frozen=True)
class LonLatGrid:
    """Regular EPSG:4326 grid with edges on multiples of the cell size.

    Attributes:
        west: West edge, degrees (−180..180).
        north: North edge, degrees.
        step: Cell size, degrees.
        rows: Number of rows (row 0 = north).
        cols: Number of columns (column 0 = west).
    """

    west: float
    north: float
    step: float
    rows: int
    cols: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) outer edges."""
        return self.west, self.north - self.rows * self.step, self.west + self.cols * self.step, self.north


def snap_grid(bounds: tuple[float, float, float, float], step: float) -> LonLatGrid:
    """Smallest grid with edges on multiples of ``step`` containing (west, south, east, north)."""
    west, south, east, north = bounds
    first_column, last_column = math.floor(west / step + 1e-9), math.ceil(east / step - 1e-9)
    first_row, last_row = math.floor(south / step + 1e-9), math.ceil(north / step - 1e-9)
    return LonLatGrid(first_column * step, last_row * step, step, last_row - first_row, last_column - first_column)


def cell_indices(xs: np.ndarray, ys: np.ndarray, crs: Any, grid: LonLatGrid) -> tuple[np.ndarray, np.ndarray]:
    """Output (row, column) of points given in ``crs``; −1 where outside the grid."""
    from pyproj import Transformer

    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(xs, ys)
    rows = np.floor((grid.north - lat) / grid.step).astype(np.int64)
    columns = np.floor((lon - grid.west) / grid.step).astype(np.int64)
    outside = (rows < 0) | (rows >= grid.rows) | (columns < 0) | (columns >= grid.cols)
    rows[outside], columns[outside] = -1, -1
    return rows, columns


def count_covers(
    covers: np.ndarray, rows: np.ndarray, columns: np.ndarray, first_row: int, n_rows: int, n_cols: int
) -> np.ndarray:
    """(n_rows, n_cols, 34) pixel counts per cover for points whose row lies in [first_row, first_row + n_rows)."""
    keep = (covers > 0) & (rows >= first_row) & (rows < first_row + n_rows) & (columns >= 0)
    index = ((rows[keep] - first_row) * n_cols + columns[keep]) * (N_COVERS + 1) + covers[keep]
    counts = np.bincount(index, minlength=n_rows * n_cols * (N_COVERS + 1))
    return counts.reshape(n_rows, n_cols, N_COVERS + 1)


def majority(counts: np.ndarray) -> np.ndarray:
    """Most frequent cover per cell (ties: lowest cover number); 0 where a cell has no pixel."""
    best = counts[..., 1:].argmax(axis=-1) + 1
    return np.where(counts[..., 1:].sum(axis=-1) > 0, best, 0).astype(np.uint8)


def tile_points(path: str, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Covers and pixel-centre coordinates (target CRS) of the valid pixels of one predicted tile."""
    from s2ecosg.io import open_raster

    with open_raster(path) as source:
        ids, transform, crs = source.read(1), source.transform, source.crs
    pixel_rows, pixel_columns = np.nonzero(ids)
    xs = transform.c + (pixel_columns + 0.5) * transform.a
    ys = transform.f + (pixel_rows + 0.5) * transform.e
    covers = lookup[np.minimum(ids[pixel_rows, pixel_columns], len(lookup) - 1)].astype(np.int64)
    return covers, xs, ys, crs


def aggregate(tiles: list[str], lookup: np.ndarray, grid: LonLatGrid) -> np.ndarray:
    """Majority cover on ``grid`` from predicted tiles, one band of output rows at a time.

    Tiles are scanned once per band of ``BAND_ROWS`` output rows, so peak memory is one tile plus one
    band of counts, whatever the extent.
    """
    from tqdm import tqdm

    cover = np.zeros((grid.rows, grid.cols), dtype=np.uint8)
    for first_row in tqdm(range(0, grid.rows, BAND_ROWS), desc="cover", unit="band", mininterval=10):
        n_rows = min(BAND_ROWS, grid.rows - first_row)
        counts = np.zeros((n_rows, grid.cols, N_COVERS + 1), dtype=np.int64)
        for path in tiles:
            covers, xs, ys, crs = tile_points(path, lookup)
            rows, columns = cell_indices(xs, ys, crs, grid)
            counts += count_covers(covers, rows, columns, first_row, n_rows, grid.cols)
        cover[first_row : first_row + n_rows] = majority(counts)
    return cover


def data_bounds(ids: np.ndarray, transform: Any) -> tuple[float, float, float, float] | None:
    """(left, bottom, right, top) in CRS units of the pixels of ``ids`` that are not 0; None if none."""
    rows, columns = np.nonzero(ids.any(axis=1))[0], np.nonzero(ids.any(axis=0))[0]
    if rows.size == 0:
        return None
    left, top = transform * (columns[0], rows[0])
    right, bottom = transform * (columns[-1] + 1, rows[-1] + 1)
    return left, bottom, right, top


def tiles_extent(tiles: list[str]) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees around the predicted pixels of all tiles."""
    from rasterio.warp import transform_bounds

    from s2ecosg.errors import InputError
    from s2ecosg.io import open_raster

    boxes = []
    for path in tiles:
        with open_raster(path) as source:
            box = data_bounds(source.read(1), source.transform)
            if box:
                boxes.append(transform_bounds(source.crs, "EPSG:4326", *box, densify_pts=21))
    if not boxes:
        raise InputError(tiles[0], "no predicted pixel in any tile; nothing to write")
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def namelist(basename: str) -> str:
    """PGD namelist fragment that makes SURFEX read the cover file as ECOSG covers."""
    return f"&NAM_FRAC LECOSG=.TRUE. /\n&NAM_COVER YCOVER='{basename}', YCOVERFILETYPE='DIRECT' /\n"


def run_cover(
    tiles: list[str], bundle: str, settings: Any, bbox: tuple[float, ...] | None, output_basename: str, provenance: str
) -> None:
    """Aggregate the predicted tiles and write the cover pair, the namelist and the validation report."""
    from pathlib import Path

    from s2ecosg.config import degrees
    from s2ecosg.io import atomic_path, read_json
    from s2ecosg.legend import legend_from_records
    from s2ecosg.surfex import check_basename, write_cover
    from s2ecosg.validate import validate_cover

    check_basename(output_basename)
    legend = legend_from_records(read_json(Path(bundle) / "bundle.json")["legend"], f"{bundle}/bundle.json")
    grid = snap_grid(tuple(bbox) if bbox else tiles_extent(tiles), degrees(settings.resolution_deg))
    LOG.info("output grid: %d rows × %d cols, edges %s", grid.rows, grid.cols, grid.bounds)
    cover = aggregate(tiles, legend.ecosg_lookup(settings.climate), grid)
    write_cover(output_basename, cover, grid.bounds, provenance)
    with atomic_path(f"{output_basename}.nam") as temporary:
        temporary.write_text(namelist(Path(output_basename).name))
    problems = validate_cover(output_basename)
    with atomic_path(Path(output_basename).parent / "validation.txt") as temporary:
        temporary.write_text("\n".join(problems or ["ok"]) + "\n")
    if problems:
        raise RuntimeError(f"{output_basename}: written cover breaks the format rules: {problems[0]}")
    LOG.info("cover %s: %.1f %% of cells have a cover", output_basename, 100 * (cover > 0).mean())
