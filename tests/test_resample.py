"""The shared-mapping resampler against exact projections, GDAL's warper and hand-made rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from conftest import DEMO
from pyproj import Transformer

from s2ecosg.grid import TargetGrid
from s2ecosg.io import open_raster
from s2ecosg.resample import (
    PLAN_BYTES_PER_SAMPLE,
    PlanCache,
    between_nodes,
    bilinear,
    grid_key,
    lattice,
    plan,
    target_in_source,
)
from s2ecosg.warp import gdal_warp, warp

BAND = DEMO / "IMG_DATA" / "T33UUU_20170216T102101_B02.jp2"


def test_lattice_interpolation_reproduces_linear_functions() -> None:
    rows, lower, fraction = lattice(37, 16)
    assert rows.tolist() == [0, 16, 32, 36]
    assert lower[[0, 15, 16, 33, 36]].tolist() == [0, 0, 1, 2, 2] and fraction[[8, 34, 36]].tolist() == [0.5, 0.5, 1.0]
    columns, *column_steps = lattice(21, 16)  # nodes 0, 16, 20
    plane = 3.0 * rows[:, None] + 2.0 * columns[None, :] + 1.0  # a plane given on the nodes only
    expected = 3.0 * np.arange(37)[:, None] + 2.0 * np.arange(21)[None, :] + 1.0
    np.testing.assert_allclose(between_nodes(plane, (lower, fraction), tuple(column_steps)), expected)
    assert lattice(1, 16)[0].tolist() == [0] and between_nodes(
        np.ones((1, 1)), lattice(1, 16)[1:], lattice(1, 16)[1:]
    ).shape == (1, 1)


def test_lattice_mapping_is_exact_to_a_millimetre() -> None:
    """Pixel centres of a 10 km EPSG:3035 tile in UTM 33N: lattice + linear interpolation vs pyproj for every pixel."""
    transform = Affine(10.0, 0.0, 4490000.0, 0.0, -10.0, 3270000.0)
    x, y = target_in_source(tuple(transform)[:6], (1000, 1000), "EPSG:3035", "EPSG:32633")
    columns, rows = np.meshgrid(np.arange(1000) + 0.5, np.arange(1000) + 0.5)
    exact_x, exact_y = Transformer.from_crs("EPSG:3035", "EPSG:32633", always_xy=True).transform(
        4490000.0 + 10.0 * columns, 3270000.0 - 10.0 * rows
    )
    assert np.abs(x - exact_x).max() < 1e-3 and np.abs(y - exact_y).max() < 1e-3


def test_real_band_agrees_with_gdal_warp() -> None:
    """Bilinear: GDAL's approximate transformer (0.125 px) differs by ~1 DN on average; nearest: same pixel."""
    grid = TargetGrid()
    tile = (grid.tile_transform("E4490N3260"), (1000, 1000), grid.crs)
    part = (slice(0, 1000), slice(0, 1000))
    ours = warp(str(BAND), 1, *tile)
    with open_raster(BAND) as source:
        gdal = gdal_warp(source, 1, tile[0], part, grid.crs, "bilinear")
    both = np.isfinite(ours) & np.isfinite(gdal)
    assert both.sum() > 500_000 and abs(int(np.isfinite(ours).sum()) - int(np.isfinite(gdal).sum())) < 100
    assert np.abs(ours - gdal)[both].mean() < 3.0
    nearest = warp(str(BAND), 1, *tile, resampling="nearest")
    with open_raster(BAND) as source:
        gdal_nearest = gdal_warp(source, 1, tile[0], part, grid.crs, "nearest")
    same = np.isfinite(nearest) & np.isfinite(gdal_nearest)
    assert (nearest == gdal_nearest)[same].mean() > 0.99


def test_nodata_neighbours_are_left_out(tmp_path: Path) -> None:
    """A 2 × 2 source upsampled ×2: hand-computed bilinear weights; a nodata pixel drops out, others renormalise."""
    path = tmp_path / "small.tif"
    values = np.array([[100, 200], [300, 0]], dtype=np.uint16)
    profile = dict(driver="GTiff", width=2, height=2, count=1, dtype="uint16", crs="EPSG:32633", nodata=0)
    with rasterio.open(path, "w", transform=Affine(20.0, 0, 0, 0, -20.0, 40.0), **profile) as destination:
        destination.write(values, 1)
    # Target 10 m pixels: centres at 5, 15, 25, 35 m → source columns -0.25, 0.25, 0.75, 1.25 (clamped at edges).
    result = warp(str(path), 1, Affine(10.0, 0, 0, 0, -10.0, 40.0), (4, 4), "EPSG:32633")
    assert result[0, 0] == 100 and result[0, 3] == 200 and result[3, 0] == 300
    assert np.isnan(result[3, 3])  # only the nodata pixel is reached
    # Row 0.25, column 0.25: weights 0.5625, 0.1875, 0.1875, (0.0625 on nodata) → renormalised over 0.9375.
    assert abs(result[1, 1] - (0.5625 * 100 + 0.1875 * 200 + 0.1875 * 300) / 0.9375) < 1e-3


def test_packed_uint16_path_equals_the_generic_path() -> None:
    """The one-gather uint16 bilinear gives what four float gathers give, with and without nodata neighbours."""
    grid = TargetGrid()
    with open_raster(BAND) as source:
        values = source.read(1)
        source_key = grid_key(source.transform, source.shape, source.crs)
    tile = (tuple(grid.tile_transform("E4490N3260"))[:6], (300, 400), grid.crs)
    sampling = plan(tile, ((0, 300), (0, 400)), source_key)
    assert sampling is not None
    (row0, row1), (column0, column1) = sampling.window
    window = values[row0:row1, column0:column1].copy()
    window[::7, ::5] = 0  # nodata holes: their neighbours renormalise
    valid = window != 0
    packed, generic = bilinear(window, sampling, valid), bilinear(window.astype(np.float32), sampling, valid)
    np.testing.assert_array_equal(np.isnan(packed), np.isnan(generic))
    np.testing.assert_allclose(packed, generic, rtol=1e-5, equal_nan=True)
    assert np.isfinite(packed).mean() > 0.8  # the 3 × 4 km part lies mostly inside the scene
    whole = bilinear(values[row0:row1, column0:column1], sampling, None)
    np.testing.assert_allclose(
        whole,
        bilinear(values[row0:row1, column0:column1].astype(np.float32), sampling, None),
        rtol=1e-5,
        equal_nan=True,
    )


def test_plans_are_made_once_per_job_within_their_budget() -> None:
    """A block's tiles are asked for in a cycle: kept plans are the same objects; past the budget they are made anew."""
    grid = TargetGrid()
    with open_raster(BAND) as source:
        source_key = grid_key(source.transform, source.shape, source.crs)
    tile = (tuple(grid.tile_transform("E4490N3260"))[:6], (300, 400), grid.crs)
    keys = [(tile, ((rows, rows + 100), (0, 400)), source_key) for rows in (0, 100, 200)]  # three parts of a tile
    one_plan = 100 * 400 * PLAN_BYTES_PER_SAMPLE
    plans = PlanCache(budget=2 * one_plan)  # room for two of the three
    first = [plans.get(key) for key in keys]
    again = [plans.get(key) for key in keys * 2][-3:]
    assert again[0] is first[0] and again[1] is first[1]  # kept: the first two made
    assert again[2] is not first[2] and plans.held == 2 * one_plan  # the third is made each time, never kept
    made = plan(*keys[2])
    assert made is not None and again[2] is not None
    np.testing.assert_array_equal(again[2].index, made.index) and np.testing.assert_array_equal(
        again[2].weights, made.weights
    )
    assert again[2].index.dtype == np.int32 and again[2].nearest_index.dtype == np.int32
    plans.clear()
    assert plans.held == 0 and plans.get(keys[0]) is not first[0]


def test_reprojected_boxes_are_computed_once_and_equal_gdal() -> None:
    from rasterio.warp import transform_bounds

    from s2ecosg.warp import bounds_in

    box = (4490000.0, 3250000.0, 4510000.0, 3270000.0)
    bounds_in.cache_clear()
    once = bounds_in(box, "EPSG:3035", "EPSG:32633")
    assert once == tuple(transform_bounds("EPSG:3035", "EPSG:32633", *box, densify_pts=21))
    assert bounds_in(box, "EPSG:3035", "EPSG:32633") is once and bounds_in.cache_info().hits == 1
