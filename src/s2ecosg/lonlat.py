"""The output grid: a regular EPSG:4326 grid whose edges are multiples of the cell size (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.arrays import Floats

Block = tuple[int, int, int, int]  # first row, first column, rows, columns
EARTH_RADIUS = 6371007.2  # m, radius of the sphere of the ellipsoid's area (GRS80/WGS84 authalic radius)


@dataclass(frozen=True)
class LonLatGrid:
    """Regular lat/lon grid, row 0 = north, column 0 = west (as SURFEX reads a DIRECT file).

    Attributes:
        west: West edge, degrees, in −180..180.
        north: North edge, degrees.
        step: Cell size, degrees.
        rows: Number of rows.
        cols: Number of columns.
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

    @property
    def transform(self) -> Affine:
        """Affine transform of the grid (upper-left origin)."""
        return Affine(self.step, 0.0, self.west, 0.0, -self.step, self.north)

    def block_bounds(self, block: Block) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a block of cells."""
        row, column, rows, columns = block
        west, north = self.west + column * self.step, self.north - row * self.step
        return west, north - rows * self.step, west + columns * self.step, north

    def block_transform(self, block: Block) -> Affine:
        """Affine transform of a block of cells."""
        west, _, _, north = self.block_bounds(block)
        return Affine(self.step, 0.0, west, 0.0, -self.step, north)

    def blocks(self, size: int) -> Iterator[Block]:
        """Blocks of at most ``size`` × ``size`` cells covering the grid, row by row from the north-west."""
        for row in range(0, self.rows, size):
            for column in range(0, self.cols, size):
                yield row, column, min(size, self.rows - row), min(size, self.cols - column)

    def cell_areas(self, block: Block) -> NDArray[np.float64]:
        """(rows, 1) area in m² of a cell of each row of a block, on the authalic sphere (within 0.3 % of WGS84)."""
        _, _, _, north = self.block_bounds(block)
        edges = np.radians(north - np.arange(block[2] + 1) * self.step)
        return (EARTH_RADIUS**2 * math.radians(self.step) * (np.sin(edges[:-1]) - np.sin(edges[1:])))[:, None]

    def cell_of(self, lon: Floats, lat: Floats) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(row, column) of the cells containing points; −1 for points outside the grid."""
        rows = np.floor((self.north - lat) / self.step).astype(np.int64)
        columns = np.floor((lon - self.west) / self.step).astype(np.int64)
        outside = (rows < 0) | (rows >= self.rows) | (columns < 0) | (columns >= self.cols) | ~np.isfinite(lat)
        rows[outside], columns[outside] = -1, -1
        return rows, columns

    def centres(self, block: Block) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(rows, cols) arrays of cell-centre longitude and latitude of a block."""
        row, column, rows, columns = block
        lon = self.west + (column + np.arange(columns) + 0.5) * self.step
        lat = self.north - (row + np.arange(rows) + 0.5) * self.step
        return np.meshgrid(lon, lat)


def snap_grid(bounds: tuple[float, float, float, float], step: float) -> LonLatGrid:
    """Smallest grid with edges on multiples of ``step`` that contains (west, south, east, north).

    Longitudes are brought into −180..180 first (SURFEX's LONLAT REG reader loses pixels otherwise).
    """
    west, south, east, north = bounds
    if west >= 180:
        west, east = west - 360, east - 360
    first_column, last_column = math.floor(west / step + 1e-9), math.ceil(east / step - 1e-9)
    first_row, last_row = math.floor(south / step + 1e-9), math.ceil(north / step - 1e-9)
    last_column = min(last_column, round(180 / step))
    first_column = max(first_column, -round(180 / step))
    return LonLatGrid(first_column * step, last_row * step, step, last_row - first_row, last_column - first_column)
