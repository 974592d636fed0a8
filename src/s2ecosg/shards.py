"""Shards: cut training/validation patches from the staged tiles with a spatial-block split.

Inputs: ``stage/{tile}.tif`` composites and ``labels/{tile}.tif`` class ids, for every tile.
Outputs (``shards/``): ``{train,val}_images.npy`` (N, bands, P, P) uint16, ``{train,val}_labels.npy``
(N, P, P) uint8, ``split.geojson`` (validation blocks, target CRS), ``stats.json`` (per-band mean and
standard deviation of valid training pixels, class pixel counts, patch counts).

The split is by square blocks of ``block_size`` metres aligned on the grid origin. A patch is for
validation when its footprint lies inside validation blocks, and for training when its footprint grown
by half a patch touches no validation block, so overlapping patches (stride < patch) cannot leak
validation pixels into training. Patches that are neither are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2ecosg.grid import TargetGrid, window_starts

LOG = logging.getLogger(__name__)
Block = tuple[int, int]


@dataclass(frozen=True)
class Patch:
    """A patch: its tile, pixel offset in the tile and split (``train`` or ``val``)."""

    tile: str
    row: int
    column: int
    split: str


def blocks_touching(left: float, bottom: float, right: float, top: float, block_size: float) -> set[Block]:
    """Indices (column, row) of the split blocks a box (CRS units) overlaps with positive area."""
    columns = range(math.floor(left / block_size), math.ceil(right / block_size))
    rows = range(math.floor(bottom / block_size), math.ceil(top / block_size))
    return {(column, row) for column in columns for row in rows}


def choose_validation_blocks(blocks: set[Block], fraction: float, seed: int) -> set[Block]:
    """Deterministic choice of ``round(fraction × n)`` blocks (at least one when two or more exist)."""
    if fraction <= 0 or len(blocks) < 2:
        return set()
    wanted = min(len(blocks) - 1, max(1, round(fraction * len(blocks))))

    def rank(block: Block) -> str:
        return hashlib.sha256(f"{seed}:{block[0]}:{block[1]}".encode()).hexdigest()

    return set(sorted(blocks, key=rank)[:wanted])


def patch_box(grid: TargetGrid, tile: str, row: int, column: int, size: int, grow: float = 0.0) -> tuple[float, ...]:
    """Footprint (left, bottom, right, top) of a patch in CRS units, grown by ``grow`` on every side."""
    left, _, _, top = grid.tile_bounds(tile)
    x0, y1 = left + column * grid.resolution, top - row * grid.resolution
    extent = size * grid.resolution
    return x0 - grow, y1 - extent - grow, x0 + extent + grow, y1 + grow


def assign_split(
    box: tuple[float, ...], grown: tuple[float, ...], validation: set[Block], block_size: float
) -> str | None:
    """``val`` when the footprint is all in validation blocks, ``train`` when the grown one touches none."""
    if blocks_touching(*box, block_size) <= validation:
        return "val"
    if not blocks_touching(*grown, block_size) & validation:
        return "train"
    return None


def labelled_blocks(ids: np.ndarray, grid: TargetGrid, tile: str, block_size: float) -> set[Block]:
    """Blocks that contain at least one labelled pixel of a tile's (n, n) class ids."""
    rows, columns = np.nonzero(ids)
    left, _, _, top = grid.tile_bounds(tile)
    block_columns = np.floor((left + (columns + 0.5) * grid.resolution) / block_size).astype(np.int64)
    block_rows = np.floor((top - (rows + 0.5) * grid.resolution) / block_size).astype(np.int64)
    unique = np.unique(np.stack([block_columns, block_rows], axis=1), axis=0)
    return {(int(column), int(row)) for column, row in unique}


def plan_patches(tile: str, ids: np.ndarray, grid: TargetGrid, settings: Any, validation: set[Block]) -> list[Patch]:
    """Patches of one tile with enough labelled pixels, each assigned to a split.

    Args:
        tile: Tile name.
        ids: (n, n) uint8 class ids of the tile.
        grid: The target grid.
        settings: ``ShardsConfig`` (patch, stride, min_labelled, block_size).
        validation: Validation block indices.
    """
    patches = []
    size, half = settings.patch, settings.patch * grid.resolution / 2
    for row in window_starts(ids.shape[0], size, settings.stride):
        for column in window_starts(ids.shape[1], size, settings.stride):
            if (ids[row : row + size, column : column + size] > 0).mean() < settings.min_labelled:
                continue
            box = patch_box(grid, tile, row, column, size)
            split = assign_split(box, patch_box(grid, tile, row, column, size, half), validation, settings.block_size)
            if split:
                patches.append(Patch(tile, row, column, split))
    return patches


def split_geojson(validation: set[Block], block_size: float, crs: str) -> dict[str, Any]:
    """Validation blocks as a GeoJSON FeatureCollection in the target CRS (named in ``crs``)."""
    features = []
    for column, row in sorted(validation):
        x0, y0 = column * block_size, row * block_size
        ring = [[x0, y0], [x0 + block_size, y0], [x0 + block_size, y0 + block_size], [x0, y0 + block_size], [x0, y0]]
        features.append(
            {
                "type": "Feature",
                "properties": {"split": "val", "block": [column, row]},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    epsg = crs.split(":")[-1]
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": features,
    }


def read_band_one(path: str) -> np.ndarray:
    """First band of a raster as an array."""
    from s2ecosg.io import open_raster

    with open_raster(path) as source:
        return source.read(1)


def write_split(
    patches: list[Patch], split: str, images: dict[str, str], labels: dict[str, str], out: str, size: int
) -> dict[str, Any]:
    """Fill ``{split}_images.npy``/``{split}_labels.npy`` patch by patch; return band sums for stats."""
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    from s2ecosg.io import atomic_path, open_raster

    chosen = [patch for patch in patches if patch.split == split]
    with open_raster(next(iter(images.values()))) as source:
        n_bands = source.count
    sums = {"sum": np.zeros(n_bands), "squares": np.zeros(n_bands), "pixels": 0, "classes": {}}
    with atomic_path(f"{out}/{split}_images.npy") as image_tmp, atomic_path(f"{out}/{split}_labels.npy") as label_tmp:
        image_array = open_memmap(image_tmp, mode="w+", dtype=np.uint16, shape=(len(chosen), n_bands, size, size))
        label_array = open_memmap(label_tmp, mode="w+", dtype=np.uint8, shape=(len(chosen), size, size))
        for tile in tqdm(sorted({patch.tile for patch in chosen}), desc=f"shards {split}", unit="tile", mininterval=10):
            with open_raster(images[tile]) as source:
                image = source.read()
            ids = read_band_one(labels[tile])
            for index, patch in enumerate(chosen):
                if patch.tile != tile:
                    continue
                window = np.s_[patch.row : patch.row + size, patch.column : patch.column + size]
                image_array[index], label_array[index] = image[(slice(None), *window)], ids[window]
                accumulate(sums, image_array[index], label_array[index])
        image_array.flush(), label_array.flush()
        del image_array, label_array
    LOG.info("%s: %d patches", split, len(chosen))
    return sums


def accumulate(sums: dict[str, Any], image: np.ndarray, ids: np.ndarray) -> None:
    """Add one patch's valid pixels to the running band sums and class counts."""
    valid = (image > 0).all(axis=0)
    pixels = image[:, valid].astype(np.float64)
    sums["sum"] += pixels.sum(axis=1)
    sums["squares"] += (pixels**2).sum(axis=1)
    sums["pixels"] += int(valid.sum())
    for class_id, count in zip(*np.unique(ids[ids > 0], return_counts=True), strict=True):
        sums["classes"][int(class_id)] = sums["classes"].get(int(class_id), 0) + int(count)


def band_statistics(sums: dict[str, Any], bands: list[str]) -> dict[str, Any]:
    """Mean and standard deviation per band (reflectance × 10000) from running sums."""
    pixels = max(sums["pixels"], 1)
    mean = sums["sum"] / pixels
    std = np.sqrt(np.maximum(sums["squares"] / pixels - mean**2, 1.0))
    return {"bands": bands, "mean": mean.round(4).tolist(), "std": std.round(4).tolist(), "pixels": sums["pixels"]}


def run_shards(
    images: dict[str, str],
    labels: dict[str, str],
    grid: TargetGrid,
    settings: Any,
    out: str,
    labels_source: str | None = None,
) -> None:
    """Plan the split, write the patch arrays, ``split.geojson`` and ``stats.json`` into ``out``.

    Tiles without a single label are an error naming ``labels_source`` (``labels.path``) and both extents.
    """
    from s2ecosg.errors import InputError
    from s2ecosg.io import extent_text, lonlat_extent, open_raster, rasters_extent, write_json

    blocks: set[Block] = set()
    for tile, path in labels.items():
        blocks |= labelled_blocks(read_band_one(path), grid, tile, settings.block_size)
    if not blocks and labels_source:
        raise InputError(
            labels_source,
            f"no labelled pixel on any staged tile: labels.path {extent_text(lonlat_extent(labels_source))} does "
            f"not overlap the imagery {extent_text(rasters_extent(list(images.values())))} (wrong CRS or file?)",
        )
    validation = choose_validation_blocks(blocks, settings.val_fraction, settings.seed)
    patches = [
        patch
        for tile, path in sorted(labels.items())
        for patch in plan_patches(tile, read_band_one(path), grid, settings, validation)
    ]
    if not any(patch.split == "train" for patch in patches):
        raise InputError(
            next(iter(labels.values())), "no training patch has enough labelled pixels (shards.min_labelled)"
        )
    with open_raster(next(iter(images.values()))) as source:
        bands = list(source.descriptions)
    train_sums = write_split(patches, "train", images, labels, out, settings.patch)
    val_sums = write_split(patches, "val", images, labels, out, settings.patch)
    write_json(f"{out}/split.geojson", split_geojson(validation, settings.block_size, grid.crs))
    stats = band_statistics(train_sums, bands)
    stats.update(
        patches={"train": sum(p.split == "train" for p in patches), "val": sum(p.split == "val" for p in patches)},
        class_pixels={"train": train_sums["classes"], "val": val_sums["classes"]},
        patch=settings.patch,
        stride=settings.stride,
        validation_blocks=len(validation),
        blocks=len(blocks),
    )
    write_json(f"{out}/stats.json", stats)
    LOG.info("shards: %s", stats["patches"])
