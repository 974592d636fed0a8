"""Aggregation of 10 m class rasters to the output lat/lon grid, block by block, in one pass.

Every valid pixel centre is placed in the output cell that contains it (as SURFEX places cover pixels in
model cells). Per cell we count pixels per ECOSG cover (for the majority and the 33 fractions) and sum
the model confidence. Work goes over blocks of output cells; for each block only the source windows
that can reach it are read, in chunks, so memory depends on the block and chunk sizes, never on the domain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from s2ecosg.config import CLIMATES
from s2ecosg.config_output import CoverConfig
from s2ecosg.cover.pixels import place_pixels
from s2ecosg.cover.readers import MostLikely, PixelClasses
from s2ecosg.io import open_raster
from s2ecosg.layout import NEWEST_BAND
from s2ecosg.legend import N_COVERS, Legend
from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.warp import warp_classes

if TYPE_CHECKING:
    from rasterio.crs import CRS
    from rasterio.windows import Window

CHUNK = 1024  # source pixels per chunk edge
MOST_LIKELY = MostLikely()


@dataclass(frozen=True)
class Source:
    """A class-id raster (its confidence raster and the stage's observation counts, if any) and its footprint.

    ``observations`` is the tile's ``stage/<tile>.count.tif`` (valid observations per pixel, a band per season,
    and last the day of the newest one), on the same pixels as the prediction.
    """

    path: str
    confidence: str | None
    crs: CRS | str
    transform: Affine
    height: int
    width: int
    lonlat: tuple[float, float, float, float]
    observations: str | None = None


def pixel_area(sources: list[Source]) -> float:
    """Area in m² of one predicted pixel (every predicted tile is on the run's grid); 100 m² with no source."""
    if not sources:
        return 100.0
    transform = sources[0].transform
    return abs(transform.a * transform.e)


def open_sources(
    paths: list[str], confidence: list[str | None], observations: list[str | None] | None = None
) -> list[Source]:
    """Read the headers of the class rasters: CRS, transform, size and lon/lat footprint."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    sources = []
    counts = observations if observations is not None else [None] * len(paths)
    for path, confidence_path, count_path in zip(paths, confidence, counts, strict=True):
        with open_raster(path) as raster:
            footprint = transform_bounds(raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21)
            shape = (raster.crs, raster.transform, raster.height, raster.width, footprint)
            sources.append(Source(path, confidence_path, *shape, observations=count_path))
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
    def from_legend(cls, legend: Legend, settings: CoverConfig) -> CoverMapping:
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

    def uniform_lookup(self, bounds: tuple[float, float, float, float]) -> np.ndarray | None:
        """The one lookup of every pixel inside a (west, south, east, north) box, or None if it depends on the pixel.

        Only the latitude bands can be uniform over a box: strictly on one side of each limit (a limit on the
        box's edge leaves the pixel decision to :meth:`covers`).
        """
        if self.mode in ("temperate", "boreal", "mediterranean"):
            return getattr(self, self.mode)
        if self.mode != "latitude":
            return None
        south, north = bounds[1], bounds[3]
        nearest, farthest = (0.0 if south < 0 < north else min(abs(south), abs(north))), max(abs(south), abs(north))
        for limit in (self.boreal_latitude, self.mediterranean_latitude):
            if nearest <= limit <= farthest:
                return None
        if nearest > self.boreal_latitude:
            return self.boreal
        return self.mediterranean if farthest < self.mediterranean_latitude else self.temperate

    @property
    def latitude_limits(self) -> tuple[float, ...]:
        """|latitude| limits (degrees) that decide a pixel's variant: none unless bands go by latitude."""
        return (self.boreal_latitude, self.mediterranean_latitude) if self.mode == "latitude" else ()

    def covers(self, ids: np.ndarray, lat: np.ndarray | None, zone: np.ndarray | None = None) -> np.ndarray:
        """Covers of pixels with class ``ids`` at latitudes ``lat`` (and climate ``zone`` values)."""
        ids = np.minimum(ids, len(self.temperate) - 1)
        if self.mode in ("temperate", "boreal", "mediterranean"):
            return getattr(self, self.mode)[ids]
        if self.mode == "zones":
            boreal, mediterranean = zone == 2, zone == 3
        else:
            if lat is None:
                raise ValueError("climate bands by latitude need the pixels' latitudes")
            boreal = np.abs(lat) >= self.boreal_latitude
            mediterranean = np.abs(lat) <= self.mediterranean_latitude
        return np.where(boreal, self.boreal[ids], np.where(mediterranean, self.mediterranean[ids], self.temperate[ids]))


@dataclass
class BlockCounts:
    """Accumulators of one output block: (rows, cols, 34) cover counts and (rows, cols) sums over its pixels.

    ``confidence_sum`` and ``confidence_pixels`` add the pixels' top probabilities; ``observation_sum`` adds their
    valid observations (pixels of tiles without a count raster add none) and ``newest_day`` keeps the latest day
    (since 1970-01-01) a pixel of the cell was observed clear, 0 where unknown.
    """

    counts: np.ndarray
    confidence_sum: np.ndarray
    confidence_pixels: np.ndarray
    observation_sum: np.ndarray | None = None
    newest_day: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = self.confidence_sum.shape
        if self.observation_sum is None:
            self.observation_sum = np.zeros(shape)
        if self.newest_day is None:
            self.newest_day = np.zeros(shape, np.int32)

    @classmethod
    def empty(cls, rows: int, columns: int, dtype: type = np.int64) -> BlockCounts:
        """Zeroed accumulators (``dtype`` of the cover counts: float64 for weighted pixels)."""
        return cls(np.zeros((rows, columns, N_COVERS + 1), dtype), np.zeros((rows, columns)), np.zeros((rows, columns)))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every accumulator by name (what the block cache stores)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def __getstate__(self) -> tuple[Any, ...]:
        """Non-zero entries only: a block's counts go from worker to parent as ≈ 1 MB instead of 18 MB."""
        return tuple(sparse(array) for array in self.arrays().values())

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for field, part in zip(dataclasses.fields(self), state, strict=True):
            setattr(self, field.name, dense(*part))


def sparse(array: np.ndarray) -> tuple[tuple[int, ...], np.dtype[Any], np.ndarray, np.ndarray]:
    """(shape, dtype, flat positions, values) of an array's non-zero entries."""
    flat = array.ravel()
    positions = np.flatnonzero(flat)
    return array.shape, array.dtype, positions.astype(np.int32 if flat.size < 2**31 else np.int64), flat[positions]


def dense(shape: tuple[int, ...], dtype: np.dtype[Any], positions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The array that :func:`sparse` describes."""
    array = np.zeros(shape, dtype)
    array.ravel()[positions] = values
    return array


def chunk_windows(window: Window) -> list[Any]:
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


Rasters = tuple[Any, Any | None, Any | None]  # the open prediction, confidence and observation rasters


@dataclass(frozen=True)
class Chunk:
    """What a chunk of a tile gives: classes and weights, confidence, climate zones, observations."""

    classes: np.ndarray
    weights: np.ndarray | None
    confidence: np.ndarray | None
    zone: np.ndarray | None
    observations: np.ndarray | None  # (rows, cols) valid observations
    newest: np.ndarray | None  # (rows, cols) day of the newest valid observation


def read_chunk(
    rasters: Rasters, source: Source, window: Window, mapping: CoverMapping, reader: PixelClasses
) -> Chunk | None:
    """Classes and weights (``reader``), confidence, zones and observations of a chunk; None when it has no class.

    ``rasters``: the open prediction raster, and the confidence and observation rasters (or None).
    """
    classes, weights = reader.read(rasters[0], window, source.transform)
    if not classes[0].any():
        return None
    confidence = rasters[1].read(1, window=window) if rasters[1] is not None else None
    zone = zones_on_window(mapping.zones, source, window) if mapping.zones else None
    observations = newest = None
    if rasters[2] is not None:
        bands = rasters[2].read(window=window).astype(np.int32)
        dated = rasters[2].descriptions[-1] == NEWEST_BAND  # count rasters before the date band lack it
        observations = bands[:-1].sum(axis=0) if dated else bands.sum(axis=0)
        newest = bands[-1] if dated else None
    return Chunk(classes, weights, confidence, zone, observations, newest)


def zones_on_window(path: str, source: Source, window: Window) -> np.ndarray:
    """Climate zone raster sampled (nearest) on the pixels of a source window."""
    from rasterio.windows import transform as window_transform  # 0.2 s to import: loaded where used

    shape = (int(window.height), int(window.width))
    transform = window_transform(window, source.transform)
    return warp_classes(path, transform, shape, source.crs, fill=0, dtype=np.uint8)[0]


def accumulate_chunk(
    totals: BlockCounts,
    grid: LonLatGrid,
    block: Block,
    rasters: Rasters,
    source: Source,
    window: Window,
    mapping: CoverMapping,
    reader: PixelClasses,
) -> None:
    """Add the valid pixels of one source chunk (read from the open ``rasters``) that fall in ``block``."""
    chunk = read_chunk(rasters, source, window, mapping, reader)
    if chunk is None:
        return
    classes, weights, confidence, zone = chunk.classes, chunk.weights, chunk.confidence, chunk.zone
    lookup = mapping.uniform_lookup(grid.block_bounds(block))
    latitudes = () if lookup is not None else mapping.latitude_limits
    placement = place_pixels(source, window, grid, classes[0] > 0, latitudes, block)
    first_row, first_column, n_rows, n_columns = block
    rows, columns = placement.rows - first_row, placement.columns - first_column
    keep = (rows >= 0) & (rows < n_rows) & (columns >= 0) & (columns < n_columns)
    cells = rows[keep] * n_columns + columns[keep]
    latitude = None if placement.latitude is None else placement.latitude[keep]
    zones = None if zone is None else zone[placement.selected][keep]
    for rank, ranked in enumerate(classes):
        ids = ranked[placement.selected][keep]
        covers = (
            lookup[np.minimum(ids, len(lookup) - 1)] if lookup is not None else mapping.covers(ids, latitude, zones)
        )
        weight = None if weights is None else weights[rank][placement.selected][keep]
        add_counts(totals.counts.reshape(-1), cells * (N_COVERS + 1) + covers, weight)
    if confidence is not None:
        add_counts(totals.confidence_sum.reshape(-1), cells, confidence[placement.selected][keep] / 255.0)
        add_counts(totals.confidence_pixels.reshape(-1), cells)
    if chunk.observations is not None and totals.observation_sum is not None and totals.newest_day is not None:
        add_counts(totals.observation_sum.reshape(-1), cells, chunk.observations[placement.selected][keep])
    if chunk.newest is not None and totals.newest_day is not None:
        np.maximum.at(totals.newest_day.reshape(-1), cells, chunk.newest[placement.selected][keep])


def add_counts(target: np.ndarray, positions: np.ndarray, weights: np.ndarray | None = None) -> None:
    """``target[positions] += weights`` (or += 1), repeats added up; a bincount over the span of ``positions`` only."""
    if positions.size == 0:
        return
    first, last = int(positions.min()), int(positions.max())
    target[first : last + 1] += np.bincount(positions - first, weights=weights, minlength=last - first + 1)


def reaching(sources: list[Source], bounds: tuple[float, float, float, float]) -> list[Source]:
    """The sources whose lon/lat footprint overlaps a (west, south, east, north) box."""
    west, south, east, north = bounds
    return [
        source
        for source in sources
        if not (
            source.lonlat[0] >= east
            or source.lonlat[2] <= west
            or source.lonlat[1] >= north
            or source.lonlat[3] <= south
        )
    ]


def aggregate_block(
    sources: list[Source], grid: LonLatGrid, block: Block, mapping: CoverMapping, reader: PixelClasses = MOST_LIKELY
) -> BlockCounts:
    """Cover counts of one output block from every source that reaches it, pixels read as ``reader`` reads them.

    Counts are integers, or the sums of weights with a weighted reader (soft fractions).
    """
    totals = BlockCounts.empty(block[2], block[3], np.float64 if reader.weighted else np.int64)
    west, south, east, north = grid.block_bounds(block)
    for source in reaching(sources, (west, south, east, north)):
        window = source_window(source, (west, south, east, north))
        if window is None:
            continue
        with contextlib.ExitStack() as stack:
            classes = stack.enter_context(open_raster(source.path))
            confidence = stack.enter_context(open_raster(source.confidence)) if source.confidence else None
            counts = source.observations if reader is MOST_LIKELY else None  # the deterministic cover's data score
            counted = counts is not None and Path(counts).is_file()
            observations = stack.enter_context(open_raster(counts)) if counts is not None and counted else None
            for chunk in chunk_windows(window):
                accumulate_chunk(
                    totals, grid, block, (classes, confidence, observations), source, chunk, mapping, reader
                )
    return totals
