"""Shards: the training and validation patches of each grid tile, cut with one global spatial-block split.

Inputs: per job block, the stage and labels manifests (``stage/{tile}.tif`` composites, ``labels/{tile}.tif`` ids).
Outputs per tile with imagery and labels (``shards/``), written by one job per block:
- ``{tile}.images.npy`` (N, bands, P, P) uint16 and ``{tile}.labels.npy`` (N, P, P) uint8: uncompressed, C order,
  memory-mappable, the tile's patches in planning order (train and validation interleaved);
- ``{tile}.json``, the header (:data:`FORMAT`): bands, patch, stride, dtypes, legend digest, the tile's signature,
  each patch's place, split and class pixel counts, and exact integer band sums of valid pixels per split. It is
  written last, so it marks a complete tile: a killed job's rerun redoes the tiles without one (or with another
  signature) and keeps the rest;
- ``blocks/{block}.json``, the block's manifest. :mod:`s2ecosg.shards.index` merges the headers into ``index.json``,
  ``stats.json`` and ``split.geojson``; :class:`s2ecosg.train.data.ShardSet` reads the patches through the index.

The split is by square blocks of ``block_size`` metres aligned on the grid origin. A block is held out for
validation when the hash of (seed, block column, block row), read as a number in [0, 1), is below
``val_fraction``: the choice depends on the block and the seed alone, not on which tiles exist, so adding or
restaging a tile never moves a patch between training and validation. A patch is for validation when its
footprint lies inside validation blocks, and for training when its footprint grown by half a patch touches no
validation block, so overlapping patches (stride < patch) cannot leak validation pixels into training. Patches
that are neither are dropped.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from s2ecosg.arrays import Integers
from s2ecosg.blocks import block_name, read_manifests, report, signature, write_manifest
from s2ecosg.config import Config, ShardsConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid, window_starts
from s2ecosg.io import atomic_path, open_raster, read_json, read_record, write_json
from s2ecosg.layout import tile_file
from s2ecosg.legend import Legend, load_legend

LOG = logging.getLogger(__name__)
Block = tuple[int, int]
Box = tuple[float, float, float, float]  # left, bottom, right, top in the grid CRS (m)
FORMAT = 1  # version of the tile shard layout and header; a header of another version is refused
SPLITS = ("train", "val")


class SplitSums(BaseModel):
    """Running sums of one split's valid pixels: count, per-band sum and sum of squares (exact integers), classes."""

    model_config = ConfigDict(extra="forbid")

    pixels: int = 0
    sum: list[int]
    squares: list[int]
    classes: dict[str, int] = {}  # class id → labelled pixels


class ShardHeader(BaseModel):
    """``shards/{tile}.json``: what the tile's patches share, where each lies, and their exact sums per split."""

    model_config = ConfigDict(extra="forbid")

    format: int
    tile: str
    signature: str
    bands: list[str]
    patch: int
    stride: int
    dtype: dict[str, str]
    legend: str  # the legend's digest
    legend_name: str
    sources: dict[str, str]  # ``image`` and ``labels`` the tile was cut from
    images: str | None = None  # array file names (relative to ``shards/``); None without patches
    labels: str | None = None
    classes: list[list[list[int]]] = []  # per patch, its [class id, pixels] pairs
    patches: list[tuple[int, int, str]] = []  # per patch, (row, column, split)
    sums: dict[str, SplitSums] = {}
    labelled_blocks: list[tuple[int, int]] = []  # split blocks holding a label of the tile


@dataclass(frozen=True)
class ShardLayout:
    """What the patches of a tile shard share: bands, patch edge and stride (px), sources, labelled blocks."""

    bands: list[str]
    patch: int
    stride: int
    sources: dict[str, str]
    labelled_blocks: set[Block]


Cut = Callable[[int], tuple[NDArray[np.uint16], NDArray[np.uint8]]]  # patch number → (image, class ids)


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


@functools.lru_cache(maxsize=65536)
def is_validation_block(block: Block, fraction: float, seed: int) -> bool:
    """Whether a split block is held out: sha256 of (seed, column, row) as a uniform number below ``fraction``."""
    digest = hashlib.sha256(f"{seed}:{block[0]}:{block[1]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def validation_blocks(blocks: set[Block], fraction: float, seed: int) -> set[Block]:
    """The held-out blocks among ``blocks`` (each decided on its own, :func:`is_validation_block`)."""
    return {block for block in blocks if is_validation_block(block, fraction, seed)}


def patch_box(grid: TargetGrid, tile: str, row: int, column: int, size: int, grow: float = 0.0) -> Box:
    """Footprint (left, bottom, right, top) of a patch in CRS units, grown by ``grow`` on every side."""
    left, _, _, top = grid.tile_bounds(tile)
    x0, y1 = left + column * grid.resolution, top - row * grid.resolution
    extent = size * grid.resolution
    return x0 - grow, y1 - extent - grow, x0 + extent + grow, y1 + grow


def assign_split(box: Box, grown: Box, settings: ShardsConfig) -> str | None:
    """``val`` when the footprint is all in validation blocks, ``train`` when the grown one touches none."""
    held_out = functools.partial(is_validation_block, fraction=settings.val_fraction, seed=settings.seed)
    if all(held_out(block) for block in blocks_touching(*box, settings.block_size)):
        return "val"
    if not any(held_out(block) for block in blocks_touching(*grown, settings.block_size)):
        return "train"
    return None


def labelled_blocks(ids: Integers, grid: TargetGrid, tile: str, block_size: float) -> set[Block]:
    """Blocks that contain at least one labelled pixel of a tile's (n, n) class ids."""
    rows, columns = np.nonzero(ids)
    left, _, _, top = grid.tile_bounds(tile)
    block_columns = np.floor((left + (columns + 0.5) * grid.resolution) / block_size).astype(np.int64)
    block_rows = np.floor((top - (rows + 0.5) * grid.resolution) / block_size).astype(np.int64)
    unique = np.unique(np.stack([block_columns, block_rows], axis=1), axis=0)
    return {(int(column), int(row)) for column, row in unique}


def plan_patches(tile: str, ids: Integers, grid: TargetGrid, settings: ShardsConfig) -> list[Patch]:
    """Patches of one tile with enough labelled pixels, each assigned to a split.

    Args:
        tile: Tile name.
        ids: (n, n) uint8 class ids of the tile.
        grid: The target grid.
        settings: ``ShardsConfig`` (patch, stride, min_labelled, block_size, val_fraction, seed).
    """
    patches = []
    size, half = settings.patch, settings.patch * grid.resolution / 2
    for row in window_starts(ids.shape[0], size, settings.stride):
        for column in window_starts(ids.shape[1], size, settings.stride):
            if (ids[row : row + size, column : column + size] > 0).mean() < settings.min_labelled:
                continue
            box = patch_box(grid, tile, row, column, size)
            split = assign_split(box, patch_box(grid, tile, row, column, size, half), settings)
            if split:
                patches.append(Patch(tile, row, column, split))
    return patches


def read_split(path: str | Path) -> list[dict[str, object]]:
    """The validation blocks' geometries of ``shards/split.geojson`` (as :func:`split_geojson` writes them)."""
    return [feature["geometry"] for feature in read_json(path)["features"]]


def split_geojson(validation: set[Block], block_size: float, crs: str) -> dict[str, object]:
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


def empty_sums(bands: int) -> SplitSums:
    """Running sums of one split with nothing added."""
    return SplitSums(sum=[0] * bands, squares=[0] * bands)


def accumulate(sums: SplitSums, image: NDArray[np.uint16], ids: NDArray[np.uint8]) -> list[list[int]]:
    """Add one patch's valid pixels to ``sums`` (exactly, in integers); return its [class id, pixels] pairs."""
    valid = (image > 0).all(axis=0)
    pixels = image[:, valid].astype(np.int64)
    sums.pixels += int(valid.sum())
    sums.sum = [total + int(value) for total, value in zip(sums.sum, pixels.sum(axis=1), strict=True)]
    squares = (pixels * pixels).sum(axis=1)
    sums.squares = [total + int(value) for total, value in zip(sums.squares, squares, strict=True)]
    found, counts = np.unique(ids[ids > 0], return_counts=True)
    classes = [[int(class_id), int(count)] for class_id, count in zip(found, counts, strict=True)]
    for class_id, count in classes:
        sums.classes[str(class_id)] = sums.classes.get(str(class_id), 0) + count
    return classes


def write_tile_shard(
    tile: str,
    sources: dict[str, str],
    grid: TargetGrid,
    settings: ShardsConfig,
    legend: Legend,
    folder: str,
    wanted: str,
) -> ShardHeader:
    """Cut one tile's patches into ``{tile}.images.npy`` / ``{tile}.labels.npy``, then write its header.

    Args:
        tile: Tile name.
        sources: ``image`` (staged composite) and ``labels`` (class ids) of the tile.
        grid: The target grid.
        settings: ``ShardsConfig``.
        legend: The run's :class:`~s2ecosg.legend.Legend` (its digest goes into the header).
        folder: The shards folder.
        wanted: The tile's signature.

    Returns:
        The header (also written to ``{tile}.json``).
    """
    with open_raster(sources["labels"]) as source:
        ids = source.read(1)
    with open_raster(sources["image"]) as source:
        image, bands = source.read(), list(source.descriptions)
    patches, size = plan_patches(tile, ids, grid, settings), settings.patch

    def cut(index: int) -> tuple[NDArray[np.uint16], NDArray[np.uint8]]:
        window = np.s_[
            patches[index].row : patches[index].row + size, patches[index].column : patches[index].column + size
        ]
        return image[(slice(None), *window)], ids[window]

    places = [(patch.row, patch.column, patch.split) for patch in patches]
    blocks = labelled_blocks(ids, grid, tile, settings.block_size)
    layout = ShardLayout(bands, size, settings.stride, sources, blocks)
    return write_shard(folder, tile, places, cut, layout, legend, wanted)


def header_start(tile: str, layout: ShardLayout, legend: Legend, wanted: str) -> ShardHeader:
    """The fields of a tile's header that the loader checks, and where the tile was cut from."""
    return ShardHeader(
        format=FORMAT,
        tile=tile,
        signature=wanted,
        bands=layout.bands,
        patch=layout.patch,
        stride=layout.stride,
        dtype={"images": "uint16", "labels": "uint8"},
        legend=legend.digest,
        legend_name=legend.source,
        sources=layout.sources,
    )


def write_shard(
    folder: str | Path,
    tile: str,
    places: list[tuple[int, int, str]],
    cut: Cut,
    layout: ShardLayout,
    legend: Legend,
    wanted: str,
) -> ShardHeader:
    """Write a tile shard, returning its header: the patches streamed into the two ``.npy`` arrays, the header last.

    Args:
        folder: The shards folder.
        tile: Tile name (the files' stem).
        places: (row, column, split) of each patch in the tile.
        cut: Patch number → ((bands, P, P) uint16 image, (P, P) uint8 class ids).
        layout: Bands, patch, stride, sources (files cut from) and labelled blocks (split blocks holding a label of
            the tile).
        legend: The run's legend (its digest and name go into the header).
        wanted: The tile's signature.
    """
    bands, size = layout.bands, layout.patch
    sums = {split: empty_sums(len(bands)) for split in SPLITS}
    header = header_start(tile, layout, legend, wanted)
    if places:
        header.images = Path(tile_file(folder, "shards", "images", tile)).name
        header.labels = Path(tile_file(folder, "shards", "labels", tile)).name
        with (
            atomic_path(Path(folder) / header.images) as images,
            atomic_path(Path(folder) / header.labels) as labels,
        ):
            image_array = open_memmap(images, mode="w+", dtype=np.uint16, shape=(len(places), len(bands), size, size))
            label_array = open_memmap(labels, mode="w+", dtype=np.uint8, shape=(len(places), size, size))
            for index, place in enumerate(places):
                image_array[index], label_array[index] = cut(index)
                header.classes.append(accumulate(sums[place[2]], image_array[index], label_array[index]))
            image_array.flush()
            label_array.flush()
            del image_array, label_array
    header.patches, header.sums = places, sums
    header.labelled_blocks = sorted(layout.labelled_blocks)
    write_json(tile_file(folder, "shards", "header", tile), header.model_dump(mode="json"))
    counts = {split: sum(place[2] == split for place in places) for split in SPLITS}
    LOG.info("tile %s: %d training and %d validation patches", tile, counts["train"], counts["val"])
    return header


def read_header(path: str | Path) -> ShardHeader:
    """A tile shard's header (``shards/<tile>.json``; checked against its index by the readers)."""
    return read_record(Path(path), ShardHeader)


def shard_up_to_date(folder: str, tile: str, wanted: str) -> bool:
    """Whether the tile's header carries ``wanted`` and the arrays it names exist."""
    try:
        header = read_header(tile_file(folder, "shards", "header", tile))
    except InputError:
        return False
    arrays = (header.images, header.labels)
    return header.signature == wanted and all(name is None or (Path(folder) / name).is_file() for name in arrays)


def run_shards_block(settings: Config, stage_manifest: str, labels_manifest: str, folder: str, manifest: str) -> None:
    """Cut the shards of the tiles of one job block, then write the block's manifest.

    Tiles whose header carries the signature of the same staged tile, label tile, shards settings, grid and legend
    are kept.
    """
    grid = TargetGrid(settings.grid.crs, settings.grid.resolution, settings.grid.tile_size)
    legend = load_legend(settings.labels.legend)
    staged, labelled = read_manifests([stage_manifest]), read_manifests([labels_manifest])
    grid_record = [grid.crs, grid.resolution, grid.tile_size]
    shards_record = settings.shards.model_dump(mode="json")
    entries, made, kept = {}, [], []
    for tile in sorted(set(staged) & set(labelled)):
        parts = [staged[tile]["signature"], labelled[tile]["signature"]]
        wanted = signature(FORMAT, shards_record, grid_record, legend.digest, *parts)
        if shard_up_to_date(folder, tile, wanted):
            kept.append(tile)
        else:
            sources = {"image": staged[tile]["image"], "labels": labelled[tile]["labels"]}
            write_tile_shard(tile, sources, grid, settings.shards, legend, folder, wanted)
            made.append(tile)
        entries[tile] = {"signature": wanted, "header": tile_file(folder, "shards", "header", tile)}
    report("shards", block_name(manifest), made, kept)
    write_manifest(manifest, block_name(manifest), entries)
