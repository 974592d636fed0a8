"""The target grid, its tiles and window arithmetic (pure; no file access).

Tiles are squares of ``tile_size`` metres of the target CRS, aligned on multiples of the tile size and
named from their lower-left corner in km, ``E{east_km}N{north_km}``, like the EEA reference grid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from affine import Affine

Bounds = tuple[float, float, float, float]  # left, bottom, right, top
TILE_PATTERN = re.compile(r"^E(-?\d+)N(-?\d+)$")


@dataclass(frozen=True)
class TargetGrid:
    """A regular grid in a projected CRS, cut into square tiles.

    Attributes:
        crs: CRS string understood by rasterio (e.g. ``"EPSG:3035"``).
        resolution: Pixel size in CRS units (m).
        tile_size: Tile edge in CRS units (m); a multiple of 1000 and of ``resolution``.
    """

    crs: str = "EPSG:3035"
    resolution: float = 10.0
    tile_size: float = 10000.0

    @property
    def tile_pixels(self) -> int:
        """Tile edge in pixels."""
        return round(self.tile_size / self.resolution)

    def tile_name(self, column: int, row: int) -> str:
        """Name of the tile whose lower-left corner is (column, row) × tile_size."""
        return f"E{round(column * self.tile_size / 1000)}N{round(row * self.tile_size / 1000)}"

    def tile_bounds(self, name: str) -> Bounds:
        """(left, bottom, right, top) of a tile, in CRS units."""
        match = TILE_PATTERN.match(name)
        if not match:
            raise ValueError(f"not a tile name: {name!r} (expected E<km>N<km>)")
        left, bottom = int(match[1]) * 1000.0, int(match[2]) * 1000.0
        return left, bottom, left + self.tile_size, bottom + self.tile_size

    def tile_transform(self, name: str) -> Affine:
        """Affine transform (upper-left origin, north up) of a tile."""
        left, _, _, top = self.tile_bounds(name)
        return Affine(self.resolution, 0.0, left, 0.0, -self.resolution, top)

    def tile_index(self, name: str) -> tuple[int, int]:
        """(column, row) of a tile: its lower-left corner / tile_size."""
        left, bottom, _, _ = self.tile_bounds(name)
        return round(left / self.tile_size), round(bottom / self.tile_size)

    def block_of(self, name: str, block_tiles: int) -> str:
        """The job block holding a tile: named like its lower-left tile; blocks are ``block_tiles`` tiles square.

        Blocks are aligned on multiples of ``block_tiles`` tiles, so a tile's block never depends on which other
        tiles have imagery (a new scene elsewhere never moves a tile to another job).
        """
        column, row = self.tile_index(name)
        return self.tile_name(column // block_tiles * block_tiles, row // block_tiles * block_tiles)

    def block_members(self, block: str, block_tiles: int) -> list[str]:
        """Every tile of a block (whether it has imagery or not), row by row from the south-west."""
        column, row = self.tile_index(block)
        return [
            self.tile_name(column + east, row + north) for north in range(block_tiles) for east in range(block_tiles)
        ]

    def neighbours(self, name: str) -> list[str]:
        """The 8 tiles around ``name`` (whether they have data or not)."""
        left, bottom, right, top = self.tile_bounds(name)
        half = self.tile_size / 2
        around = self.tiles_covering((left - half, bottom - half, right + half, top + half))
        return [tile for tile in around if tile != name]

    def tiles_covering(self, bounds: Bounds) -> list[str]:
        """Names of all tiles that intersect ``bounds`` (an open intersection: touching is not enough)."""
        left, bottom, right, top = bounds
        first_column, last_column = math.floor(left / self.tile_size), math.ceil(right / self.tile_size)
        first_row, last_row = math.floor(bottom / self.tile_size), math.ceil(top / self.tile_size)
        return [
            self.tile_name(column, row)
            for row in range(first_row, last_row)
            for column in range(first_column, last_column)
        ]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels every ``stride`` that cover ``length`` pixels.

    The last window is shifted back so it ends on the edge; nothing is padded. When ``window`` is
    larger than ``length`` a single window at 0 is returned (the caller clips it).
    """
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def intersect(first: Bounds, second: Bounds) -> Bounds | None:
    """Intersection of two (left, bottom, right, top) boxes, or None when they do not overlap."""
    left, bottom = max(first[0], second[0]), max(first[1], second[1])
    right, top = min(first[2], second[2]), min(first[3], second[3])
    if left >= right or bottom >= top:
        return None
    return left, bottom, right, top
