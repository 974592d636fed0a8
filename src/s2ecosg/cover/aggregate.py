"""Aggregation of 10 m class rasters to the output lat/lon grid, block by block, in one pass.

Every valid pixel centre is placed in the output cell that contains it (as SURFEX places cover pixels in
model cells). Per cell we count pixels per ECOSG cover (for the majority and the 33 fractions) and sum
the model confidence. Work goes over blocks of output cells; for each block only the source windows
that can reach it are read, in chunks, so memory depends on the block and chunk sizes, never on the domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2ecosg.config import CLIMATES
from s2ecosg.io import open_raster
from s2ecosg.legend import N_COVERS, Legend
from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.warp import warp_classes

CHUNK = 1024  # source pixels per chunk edge


@dataclass(frozen=True)
class Source:
    """A class-id raster (and its confidence raster, if any) with its footprint in degrees."""

    path: str
    confidence: str | None
    crs: Any
    transform: Any
    height: int
    width: int
    lonlat: tuple[float, float, float, float]


def open_sources(paths: list[str], confidence: list[str | None]) -> list[Source]:
    """Read the headers of the class rasters: CRS, transform, size and lon/lat footprint."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    sources = []
    for path, confidence_path in zip(paths, confidence, strict=True):
        with open_raster(path) as raster:
            footprint = transform_bounds(raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21)
            sources.append(
                Source(path, confidence_path, raster.crs, raster.transform, raster.height, raster.width, footprint)
            )
    return sources


@dataclass(frozen=True)
class CoverMapping:
    """Class id → ECOSG cover, with the climate variant chosen per pixel.

    Attributes:
        temperate: uint8 lookup by class id (default covers).
        boreal: uint8 lookup for boreal pixels.
        mediterranean: uint8 lookup for Mediterranean pixels.
        mode: ``latitude`` (bands below), ``temperate``/``boreal``/``mediterranean`` (one variant
            everywhere) or ``zones`` (zone raster: 1 temperate, 2 boreal, 3 Mediterranean).
        boreal_latitude: |latitude| from which pixels are boreal (degrees).
        mediterranean_latitude: |latitude| up to which pixels are Mediterranean (degrees).
        zones: Zone raster path for ``mode == "zones"``.
    """

    temperate: np.ndarray
    boreal: np.ndarray
    mediterranean: np.ndarray
    mode: str = "latitude"
    boreal_latitude: float = 60.0
    mediterranean_latitude: float = 42.0
    zones: str | None = None

    @classmethod
    def from_legend(cls, legend: Legend, settings: Any) -> CoverMapping:
        """Lookups of a legend and the ``cover`` config section."""
        mode = settings.climate if settings.climate in CLIMATES else "zones"
        return cls(
            legend.ecosg_lookup("temperate"),
            legend.ecosg_lookup("boreal"),
            legend.ecosg_lookup("mediterranean"),
            mode,
            settings.boreal_latitude,
            settings.mediterranean_latitude,
            settings.climate if mode == "zones" else None,
        )

    def covers(self, ids: np.ndarray, lat: np.ndarray, zone: np.ndarray | None = None) -> np.ndarray:
        """Covers of pixels with class ``ids`` at latitudes ``lat`` (and climate ``zone`` values)."""
        ids = np.minimum(ids, len(self.temperate) - 1)
        if self.mode in ("temperate", "boreal", "mediterranean"):
            return getattr(self, self.mode)[ids]
        if self.mode == "zones":
            boreal, mediterranean = zone == 2, zone == 3
        else:
            boreal = np.abs(lat) >= self.boreal_latitude
            mediterranean = np.abs(lat) <= self.mediterranean_latitude
        return np.where(boreal, self.boreal[ids], np.where(mediterranean, self.mediterranean[ids], self.temperate[ids]))


@dataclass
class BlockCounts:
    """Accumulators of one output block: (rows, cols, 34) cover counts and (rows, cols) confidence sums."""

    counts: np.ndarray
    confidence_sum: np.ndarray
    confidence_pixels: np.ndarray

    @classmethod
    def empty(cls, rows: int, columns: int) -> BlockCounts:
        """Zeroed accumulators."""
        return cls(
            np.zeros((rows, columns, N_COVERS + 1), np.int64), np.zeros((rows, columns)), np.zeros((rows, columns))
        )


def chunk_windows(window: Any) -> list[Any]:
    """Split a rasterio window into chunks of at most CHUNK × CHUNK pixels."""
    from rasterio.windows import Window  # 0.2 s to import: loaded where used

    return [
        Window(
            window.col_off + column,
            window.row_off + row,
            min(CHUNK, window.width - column),
            min(CHUNK, window.height - row),
        )
        for row in range(0, int(window.height), CHUNK)
        for column in range(0, int(window.width), CHUNK)
    ]


def source_window(source: Source, bounds: tuple[float, float, float, float]) -> Any | None:
    """Pixel window of a source that covers a lon/lat box (rounded outwards), or None if disjoint."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used
    from rasterio.windows import Window, from_bounds  # 0.2 s to import: loaded where used

    box = transform_bounds("EPSG:4326", source.crs, *bounds, densify_pts=21)
    exact = from_bounds(*box, transform=source.transform)
    # One pixel of slack on every side: pixels outside the block are dropped later, missing ones would be lost.
    column, row = max(0, math.floor(exact.col_off) - 1), max(0, math.floor(exact.row_off) - 1)
    end_column = min(source.width, math.ceil(exact.col_off + exact.width) + 1)
    end_row = min(source.height, math.ceil(exact.row_off + exact.height) + 1)
    if end_column <= column or end_row <= row:
        return None
    return Window(column, row, end_column - column, end_row - row)


def pixel_lonlat(transform: Any, window: Any, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of the pixel centres of a window, (rows, cols) each."""
    from pyproj import Transformer  # 0.1 s to import: loaded where used

    columns = window.col_off + np.arange(window.width) + 0.5
    rows = window.row_off + np.arange(window.height) + 0.5
    x = transform.c + columns * transform.a
    y = transform.f + rows * transform.e
    x_grid, y_grid = np.meshgrid(x, y)
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x_grid, y_grid)


def read_chunk(
    source: Source, window: Any, mapping: CoverMapping
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    """Class ids, confidence and climate zones of a chunk (None when it has no valid pixel)."""
    with open_raster(source.path) as raster:
        ids = raster.read(1, window=window)
    if not ids.any():
        return None
    confidence = None
    if source.confidence:
        with open_raster(source.confidence) as raster:
            confidence = raster.read(1, window=window)
    zone = zones_on_window(mapping.zones, source, window) if mapping.zones else None
    return ids, confidence, zone


def zones_on_window(path: str, source: Source, window: Any) -> np.ndarray:
    """Climate zone raster sampled (nearest) on the pixels of a source window."""
    from rasterio.windows import transform as window_transform  # 0.2 s to import: loaded where used

    shape = (int(window.height), int(window.width))
    transform = window_transform(window, source.transform)
    return warp_classes(path, transform, shape, source.crs, fill=0, dtype=np.uint8)[0]


def accumulate_chunk(
    totals: BlockCounts, grid: LonLatGrid, block: Block, source: Source, window: Any, mapping: CoverMapping
) -> None:
    """Add the valid pixels of one source chunk that fall in ``block`` to its counts."""
    chunk = read_chunk(source, window, mapping)
    if chunk is None:
        return
    ids, confidence, zone = chunk
    lon, lat = pixel_lonlat(source.transform, window, source.crs)
    rows, columns = grid.cell_of(lon, lat)
    first_row, first_column, n_rows, n_columns = block
    rows, columns = rows - first_row, columns - first_column
    keep = (ids > 0) & (rows >= 0) & (rows < n_rows) & (columns >= 0) & (columns < n_columns)
    covers = mapping.covers(ids[keep], lat[keep], None if zone is None else zone[keep]).astype(np.int64)
    cells = rows[keep] * n_columns + columns[keep]
    size = n_rows * n_columns
    totals.counts += np.bincount(cells * (N_COVERS + 1) + covers, minlength=size * (N_COVERS + 1)).reshape(
        totals.counts.shape
    )
    if confidence is not None:
        totals.confidence_sum += np.bincount(cells, weights=confidence[keep] / 255.0, minlength=size).reshape(
            n_rows, n_columns
        )
        totals.confidence_pixels += np.bincount(cells, minlength=size).reshape(n_rows, n_columns)


def aggregate_block(sources: list[Source], grid: LonLatGrid, block: Block, mapping: CoverMapping) -> BlockCounts:
    """Cover counts of one output block from every source that reaches it."""
    totals = BlockCounts.empty(block[2], block[3])
    west, south, east, north = grid.block_bounds(block)
    for source in sources:
        s_west, s_south, s_east, s_north = source.lonlat
        if s_west >= east or s_east <= west or s_south >= north or s_north <= south:
            continue
        window = source_window(source, (west, south, east, north))
        for chunk in chunk_windows(window) if window is not None else []:
            accumulate_chunk(totals, grid, block, source, chunk, mapping)
    return totals


def majority(counts: np.ndarray) -> np.ndarray:
    """Most frequent cover per cell (ties: the lowest cover number); 0 where a cell has no pixel."""
    best = counts[..., 1:].argmax(axis=-1) + 1
    return np.where(counts[..., 1:].sum(axis=-1) > 0, best, 0).astype(np.uint8)


def fractions(counts: np.ndarray) -> np.ndarray:
    """(33, rows, cols) float32 share of each cover 1..33 among a cell's valid pixels (0 where none)."""
    total = counts[..., 1:].sum(axis=-1, keepdims=True)
    share = np.divide(counts[..., 1:], total, out=np.zeros(counts[..., 1:].shape, dtype=np.float64), where=total > 0)
    return np.moveaxis(share, -1, 0).astype(np.float32)
