"""The lattice placement of pixel centres against the exact transform of every pixel (the brute-force reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from s2ecosg.cover.aggregate import Source, chunk_windows
from s2ecosg.cover.pixels import build_lattice, interpolate, place_pixels
from s2ecosg.lonlat import Block, LonLatGrid, snap_grid

DATA = Path(__file__).resolve().parents[1] / "data"


def synthetic(crs: str, x0: float, y0: float, height: int, width: int, pixel: float = 10.0) -> Source:
    """A raster header (no file needed: placement only reads the CRS and the transform)."""
    return Source(
        "synthetic",
        None,
        CRS.from_user_input(crs),
        Affine(pixel, 0, x0, 0, -pixel, y0),
        height,
        width,
        (0.0, 0.0, 0.0, 0.0),
    )


def reference(source: Source, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Exact longitude and latitude of every pixel centre of a window, the way the aggregation used to do it."""
    columns = window.col_off + np.arange(window.width) + 0.5
    rows = window.row_off + np.arange(window.height) + 0.5
    x, y = np.meshgrid(
        source.transform.c + columns * source.transform.a, source.transform.f + rows * source.transform.e
    )
    return Transformer.from_crs(source.crs, "EPSG:4326", always_xy=True).transform(x, y)


def whole_grid(source: Source, step: float) -> LonLatGrid:
    """The output grid around every finite pixel centre of a source."""
    lon, lat = reference(source, Window(0, 0, source.width, source.height))
    return snap_grid((np.nanmin(lon), np.nanmin(lat), np.nanmax(lon), np.nanmax(lat)), step)


def assert_exact(
    source: Source, grid: LonLatGrid, latitudes: tuple[float, ...] = (), block: Block | None = None
) -> int:
    """Every chunk's placement equals the per-pixel reference (cells and climate sides); return exact pixels.

    With a block, pixels may be left out, but only pixels outside it: every pixel the reference puts in the
    block is placed, in the same cell.
    """
    exact = 0
    for window in chunk_windows(Window(0, 0, source.width, source.height)):
        lon, lat = reference(source, window)
        rows, columns = grid.cell_of(lon, lat)
        valid = np.ones(rows.shape, dtype=bool)
        placement = place_pixels(source, window, grid, valid, latitudes, block)
        if block is None:
            assert placement.selected.all()
        else:
            first_row, first_column, n_rows, n_columns = block
            inside = (rows >= first_row) & (rows < first_row + n_rows)
            inside &= (columns >= first_column) & (columns < first_column + n_columns)
            assert not (inside & ~placement.selected).any()
        assert np.array_equal(placement.rows, rows[placement.selected])
        assert np.array_equal(placement.columns, columns[placement.selected])
        for limit in latitudes:
            assert placement.latitude is not None
            assert np.array_equal(np.abs(placement.latitude) >= limit, np.abs(lat[placement.selected]) >= limit)
        exact += placement.exact
    return exact


def test_lanjaron_corine_excerpt_lands_in_the_exact_cells() -> None:
    with rasterio.open(DATA / "lanjaron" / "clc.tif") as raster:
        source = Source("clc", None, raster.crs, raster.transform, raster.height, raster.width, (0, 0, 0, 0))
    # 1/3600° cells (≈ 3 px of 25 m) make many pixels fall near an edge; the 37° latitude cuts the excerpt.
    grid = whole_grid(source, 1 / 3600)
    exact = assert_exact(source, grid, latitudes=(37.0,))
    assert 0 < exact < 0.05 * source.height * source.width


def test_pixels_left_out_for_a_block_are_all_outside_it() -> None:
    with rasterio.open(DATA / "lanjaron" / "clc.tif") as raster:
        source = Source("clc", None, raster.crs, raster.transform, raster.height, raster.width, (0, 0, 0, 0))
    grid = whole_grid(source, 1 / 3600)
    block = (grid.rows // 3, grid.cols // 4, grid.rows // 3, grid.cols // 2)  # the middle of the excerpt
    assert_exact(source, grid, latitudes=(37.0,), block=block)
    # Around the block, placement skips most of the chunk: the pixels it keeps are the block's and a cell more.
    window = Window(0, 0, source.width, source.height)
    placement = place_pixels(source, window, grid, np.ones((source.height, source.width), bool), (), block)
    assert placement.selected.sum() < 0.3 * source.height * source.width


def test_raster_across_a_utm_zone_edge() -> None:
    # Zone 30 (central meridian −3°) raster from 5.8° W to 6.2° W: across the zone 29/30 edge at 6° W, in Ireland.
    source = synthetic("EPSG:32630", 290000, 5950000, 1500, 2600)
    grid = whole_grid(source, 1 / 1800)
    assert grid.west < -6 < grid.west + grid.cols * grid.step
    assert_exact(source, grid, latitudes=(53.6,))


@pytest.mark.parametrize(
    ("crs", "x0", "y0", "pixel", "step"),
    [
        ("EPSG:3413", -5120.0, 5120.0, 10.0, 1 / 100),  # the North Pole inside the raster
        ("EPSG:3031", -20000.0, 200000.0, 40.0, 1 / 50),  # 200 km from the South Pole, longitudes change fast
        ("EPSG:3413", 300000.0, -1000000.0, 10.0, 1 / 1800),  # Greenland, polar stereographic
    ],
)
def test_polar_stereographic_domains(crs: str, x0: float, y0: float, pixel: float, step: float) -> None:
    source = synthetic(crs, x0, y0, 1024, 1024, pixel)
    assert_exact(source, whole_grid(source, step), latitudes=(89.97, 80.0, 60.0))


def test_antimeridian_in_the_raster() -> None:
    # Zone 60 east of its central meridian reaches 180°: the longitude jumps from +180 to −180 inside the raster.
    source = synthetic("EPSG:32660", 632000, 7300000, 1024, 1024)
    lon, _ = reference(source, Window(0, 0, 1024, 1024))
    assert lon.max() > 179 and lon.min() < -179
    grid = LonLatGrid(-180.0, 66.0, 1 / 1800, 1800, 648000)
    assert_exact(source, grid)


@pytest.mark.parametrize(
    ("crs", "x0", "y0", "pixel", "largest_median"),
    [
        ("EPSG:32629", 300000, 6100000, 10.0, 0.001),  # Ireland, zone 29
        ("EPSG:3035", 3000000, 3300000, 10.0, 0.001),  # LAEA Europe
        ("EPSG:3413", 300000, -1000000, 20.0, 0.05),  # Greenland: longitude bends faster
        ("EPSG:3413", 20000, -30000, 10.0, np.inf),  # 36 km from the pole: most pixels redone, but never wrong
    ],
)
def test_the_bound_holds_for_every_pixel(crs: str, x0: float, y0: float, pixel: float, largest_median: float) -> None:
    """The measured-error bound covers the true interpolation error of every pixel, not only at the probes."""
    source = synthetic(crs, x0, y0, 1024, 1024, pixel)
    grid = whole_grid(source, 1 / 1800)
    window = Window(0, 0, 1024, 1024)
    u, v, bound = interpolate(build_lattice(source, window, grid), 1024, 1024)
    lon, lat = reference(source, window)
    u_exact, v_exact = (lon - grid.west) / grid.step, (grid.north - lat) / grid.step
    error = np.maximum(np.abs(u - u_exact), np.abs(v - v_exact))
    bound = np.broadcast_to(bound, error.shape)
    finite = np.isfinite(bound)
    assert (error[finite] <= bound[finite]).all()
    # Away from a pole the bound is tight enough to be worth it: a small share of pixels is near an edge.
    assert np.median(bound) < largest_median
