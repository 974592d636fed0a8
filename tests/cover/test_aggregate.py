"""Property tests of the block aggregation against a pixel-by-pixel reference."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from s2ecosg.cover.aggregate import CoverMapping, aggregate_block, open_sources
from s2ecosg.cover.cells import fractions, majority
from s2ecosg.io import write_raster
from s2ecosg.lonlat import snap_grid

LOOKUP = np.array([0, 17, 8, 13, 20, 2], dtype=np.uint8)  # class id → cover (ids 1..5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(5, 60),
    width=st.integers(5, 60),
    x0=st.floats(300000, 700000),
    y0=st.floats(5000000, 6500000),
    step=st.sampled_from([1 / 3600, 1 / 1800, 1 / 720]),
    block=st.sampled_from([3, 7, 256]),
)
def test_counts_equal_pixel_by_pixel(seed, height, width, x0, y0, step, block) -> None:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 6, size=(height, width), dtype=np.uint8)
    transform = Affine(10, 0, x0, 0, -10, y0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "classes.tif"
        write_raster(path, ids, crs="EPSG:32633", transform=transform)
        sources = open_sources([str(path)], [None])
        grid = snap_grid(sources[0].lonlat, step)
        mapping = CoverMapping(LOOKUP, LOOKUP, LOOKUP, mode="temperate")
        counts = np.zeros((grid.rows, grid.cols, 34), dtype=np.int64)
        for piece in grid.blocks(block):
            row, column, rows, columns = piece
            counts[row : row + rows, column : column + columns] = aggregate_block(sources, grid, piece, mapping).counts
    rows_index, cols_index = np.nonzero(ids)
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        x0 + (cols_index + 0.5) * 10, y0 - (rows_index + 0.5) * 10
    )
    reference: dict[tuple[int, int], Counter] = {}
    for r, c, longitude, latitude in zip(rows_index, cols_index, lon, lat, strict=True):
        cell = (int((grid.north - latitude) // step), int((longitude - grid.west) // step))
        reference.setdefault(cell, Counter())[int(LOOKUP[ids[r, c]])] += 1
    assert counts.sum() == np.count_nonzero(ids)
    for (row, column), counter in reference.items():
        assert {k: v for k, v in enumerate(counts[row, column]) if v} == dict(counter)
    cover = majority(counts)
    share = fractions(counts)
    for (row, column), counter in reference.items():
        most = max(counter.values())
        assert cover[row, column] == min(k for k, v in counter.items() if v == most)
        assert np.isclose(share[:, row, column].sum(), 1.0)
    assert (cover > 0).sum() == len(reference)
