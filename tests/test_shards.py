"""Spatial-block split: no training patch comes near a validation block."""

from __future__ import annotations

import numpy as np
from shapely.geometry import box, shape

from s2ecosg.config import ShardsConfig
from s2ecosg.grid import TargetGrid
from s2ecosg.shards import (
    blocks_touching,
    choose_validation_blocks,
    labelled_blocks,
    patch_box,
    plan_patches,
    split_geojson,
)


def test_no_training_patch_within_half_a_patch_of_validation() -> None:
    grid = TargetGrid("EPSG:3035", 10.0, 2000.0)
    settings = ShardsConfig(patch=32, stride=12, val_fraction=0.3, block_size=640, min_labelled=0.0, seed=3)
    tiles = {"E4000N3000": np.ones((200, 200), np.uint8), "E4002N3000": np.ones((200, 200), np.uint8)}
    blocks = set().union(*(labelled_blocks(ids, grid, tile, settings.block_size) for tile, ids in tiles.items()))
    validation = choose_validation_blocks(blocks, settings.val_fraction, settings.seed)
    assert 0 < len(validation) < len(blocks)
    patches = [p for tile, ids in tiles.items() for p in plan_patches(tile, ids, grid, settings, validation)]
    geojson = split_geojson(validation, settings.block_size, grid.crs)
    held_out = [shape(feature["geometry"]) for feature in geojson["features"]]
    half = settings.patch * grid.resolution / 2
    train = [p for p in patches if p.split == "train"]
    val = [p for p in patches if p.split == "val"]
    assert len(train) > 10 and len(val) > 0
    for patch in train:
        footprint = box(*patch_box(grid, patch.tile, patch.row, patch.column, settings.patch))
        assert all(footprint.distance(block) >= half - 1e-6 for block in held_out), patch
    for patch in val:
        footprint = box(*patch_box(grid, patch.tile, patch.row, patch.column, settings.patch))
        assert sum(footprint.intersection(block).area for block in held_out) == footprint.area


def test_validation_choice_is_deterministic_and_seeded() -> None:
    blocks = {(column, row) for column in range(5) for row in range(4)}
    first = choose_validation_blocks(blocks, 0.25, seed=0)
    assert first == choose_validation_blocks(blocks, 0.25, seed=0)
    assert len(first) == 5
    assert first != choose_validation_blocks(blocks, 0.25, seed=1)


def test_blocks_touching_needs_positive_overlap() -> None:
    assert blocks_touching(0, 0, 100, 100, 100) == {(0, 0)}
    assert blocks_touching(50, 50, 150, 100, 100) == {(0, 0), (1, 0)}
