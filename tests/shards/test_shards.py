"""Shards: the spatial-block split, tile shards against all patches cut at once, the loader and its checks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import SNAKEMAKE, config_variant, crop_stack, jobs_run, run, write_shard_set
from shapely.geometry import box, shape

from s2ecosg.config import ShardsConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid, window_starts
from s2ecosg.legend import load_legend
from s2ecosg.shards.cut import (
    blocks_touching,
    is_validation_block,
    labelled_blocks,
    patch_box,
    plan_patches,
    split_geojson,
    validation_blocks,
)
from s2ecosg.shards.loader import ShardSet
from s2ecosg.train.data import EpochBatches


def test_no_training_patch_within_half_a_patch_of_validation() -> None:
    grid = TargetGrid("EPSG:3035", 10.0, 2000.0)
    settings = ShardsConfig(patch=32, stride=12, val_fraction=0.3, block_size=640, min_labelled=0.0, seed=3)
    tiles = {"E4000N3000": np.ones((200, 200), np.uint8), "E4002N3000": np.ones((200, 200), np.uint8)}
    blocks = set().union(*(labelled_blocks(ids, grid, tile, settings.block_size) for tile, ids in tiles.items()))
    validation = validation_blocks(blocks, settings.val_fraction, settings.seed)
    assert 0 < len(validation) < len(blocks)
    patches = [p for tile, ids in tiles.items() for p in plan_patches(tile, ids, grid, settings)]
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


def test_validation_choice_depends_on_each_block_and_the_seed_only() -> None:
    """Each block is decided alone: a block keeps its split whatever other blocks exist; the share follows the fraction."""
    blocks = {(column, row) for column in range(-50, 50) for row in range(-50, 50)}
    chosen = validation_blocks(blocks, 0.25, seed=0)
    assert abs(len(chosen) / len(blocks) - 0.25) < 0.02  # 10 000 blocks: 4 standard deviations is 0.017
    part = {block for block in blocks if block[0] < 0}
    assert validation_blocks(part, 0.25, seed=0) == chosen & part  # adding blocks moves none
    assert chosen != validation_blocks(blocks, 0.25, seed=1)
    assert not validation_blocks(blocks, 0.0, seed=0)
    assert is_validation_block((3, 4), 0.25, 0) == ((3, 4) in chosen)


def test_blocks_touching_needs_positive_overlap() -> None:
    assert blocks_touching(0, 0, 100, 100, 100) == {(0, 0)}
    assert blocks_touching(50, 50, 150, 100, 100) == {(0, 0), (1, 0)}


def patches_at_once(results: Path, settings: dict) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Every patch of a run cut in one pass over all tiles, as the single shards job of earlier versions did.

    Written independently of :func:`plan_patches`: the blocks a footprint overlaps are the blocks of its pixel
    centres (blocks are whole multiples of the 10 m pixels), and a patch grown by half a patch is P/2 more pixels on
    each side. Tiles in name order, patches in row-major order of their window starts.
    """
    size, stride, block = settings["patch"], settings["stride"], settings["block_size"]
    grid = TargetGrid("EPSG:3035", 10.0, 1000.0 if "slovenia" in str(results) else 10000.0)
    split: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "val": []}
    for path in sorted((results / "labels").glob("E*N*.tif")):
        with rasterio.open(path) as source:
            ids = source.read(1)
        with rasterio.open(results / "stage" / path.name) as source:
            image = source.read()
        left, _, _, top = grid.tile_bounds(path.stem)
        starts = window_starts(ids.shape[0], size, stride)
        for row in starts:
            for column in starts:
                if (ids[row : row + size, column : column + size] > 0).mean() < settings["min_labelled"]:
                    continue
                held = []
                for grow in (0, size // 2):
                    rows = np.arange(row - grow, row + size + grow) + 0.5
                    columns = np.arange(column - grow, column + size + grow) + 0.5
                    xs, ys = np.floor((left + columns * 10) / block), np.floor((top - rows * 10) / block)
                    blocks = {(int(x), int(y)) for x in xs for y in ys}
                    held.append([is_validation_block(b, settings["val_fraction"], settings["seed"]) for b in blocks])
                name = "val" if all(held[0]) else "train" if not any(held[1]) else None
                if name:
                    window = np.s_[row : row + size, column : column + size]
                    split[name].append((image[(slice(None), *window)], ids[window]))
    return split


def assert_shards_equal_patches_cut_at_once(results: Path, settings: dict) -> None:
    """Tile shards read through the index equal the all-at-once patches; stats equal float64 sums over them."""
    reference = patches_at_once(results, settings)
    stats = json.loads((results / "shards" / "stats.json").read_text())
    assert stats["patches"] == {name: len(patches) for name, patches in reference.items()}
    for name, patches in reference.items():
        shards = ShardSet(results / "shards", name)
        assert len(shards) == len(patches)
        for number, (image, ids) in enumerate(patches):
            read_image, read_ids = shards.read(number)
            np.testing.assert_array_equal(read_image, image)
            np.testing.assert_array_equal(read_ids, ids)
        classes, counts = np.unique(np.concatenate([ids.ravel() for _, ids in patches] or [[0]]), return_counts=True)
        assert stats["class_pixels"][name] == {str(c): int(n) for c, n in zip(classes, counts, strict=True) if c}
    pixels = np.concatenate([image[:, (image > 0).all(axis=0)] for image, _ in reference["train"]], axis=1)
    pixels = pixels.astype(np.float64)
    assert stats["pixels"] == pixels.shape[1]
    np.testing.assert_allclose(stats["mean"], pixels.mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(stats["std"], np.maximum(pixels.std(axis=1), 1.0), atol=1e-4)


@pytest.mark.xdist_group("slovenia-b")
def test_slovenia_tile_shards_equal_the_patches_cut_at_once(slovenia_run: Path) -> None:
    settings = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())["shards"]
    results = slovenia_run / "results" / "slovenia"
    assert_shards_equal_patches_cut_at_once(results, settings)
    stats = json.loads((results / "shards" / "stats.json").read_text())
    assert stats["patches"]["train"] > 0 and stats["patches"]["val"] > 0 and stats["validation_blocks"] > 0
    index = json.loads((results / "shards" / "index.json").read_text())
    assert [shard["tile"] for shard in index["shards"]] == sorted(shard["tile"] for shard in index["shards"])
    assert len(list((results / "shards" / "blocks").glob("*.json"))) == 4  # one job per block of 5 × 5 tiles


@pytest.mark.slow
def test_brandenburg_tile_shards_equal_the_patches_cut_at_once(demo: Path) -> None:
    from s2ecosg.config import ShardsConfig

    demo_shards = yaml.safe_load((demo / "config" / "demo.yaml").read_text()).get("shards", {})
    settings = ShardsConfig(**demo_shards).model_dump()
    assert_shards_equal_patches_cut_at_once(demo / "results" / "demo", settings)


def small_shard_set(folder: Path) -> dict:
    """Three classes over 12 training and 4 validation patches of 4 bands, 16² px, dealt to 3 tiles."""
    generator = np.random.default_rng(4)
    labels = np.ones((16, 16, 16), np.uint8)
    labels[:2] = 3  # class 3 is rare: 2 patches of 16
    labels[2:8, :, :8] = 2
    images = generator.integers(1, 5000, (16, 4, 16, 16)).astype(np.uint16)
    images[0, :, 0, 0] = 0  # one nodata pixel
    splits = {"train": (images[:12], labels[:12]), "val": (images[12:], labels[12:])}
    return write_shard_set(folder, splits, ["B02", "B03", "B04", "B08"], tiles=3) | {"arrays": splits}


def test_random_access_by_global_number_across_tile_files(tmp_path: Path) -> None:
    """Global patch i of a split is the i-th patch of the tiles in name order, each in its own order."""
    index = small_shard_set(tmp_path)
    images, labels = index["arrays"]["train"]
    order = [number for tile in range(3) for number in range(tile, 12, 3)]  # dealt to E0N0, E1N0, E2N0 in turn
    shards = ShardSet(tmp_path, "train")
    assert len(shards) == 12 and [shard["train"] for shard in index["shards"]] == [4, 4, 4]
    for number in np.random.default_rng(0).permutation(12):
        image, ids = shards.read(int(number))
        np.testing.assert_array_equal(image, images[order[number]])
        np.testing.assert_array_equal(ids, labels[order[number]])
    stats = json.loads((tmp_path / "stats.json").read_text())
    valid = (images > 0).all(axis=1)
    pixels = images.transpose(1, 0, 2, 3)[:, valid].astype(np.float64)
    np.testing.assert_allclose(stats["mean"], pixels.mean(axis=1), atol=1e-4)
    assert stats["pixels"] == 12 * 256 - 1 and stats["class_pixels"]["train"] == {"1": 1792, "2": 768, "3": 512}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("patch", 32, "shard patch 32 differs from the run's 16"),
        ("bands", ["B02", "B03", "B04", "B05"], "shard bands"),
        ("legend", "0123456789abcdef", "shard legend '0123456789abcdef' differs"),
        ("format", 0, "shard format 0 differs"),
    ],
)
def test_a_shard_of_another_config_is_refused_naming_file_and_field(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    small_shard_set(tmp_path)
    header = tmp_path / "E1N0.json"
    content = json.loads(header.read_text()) | {field: value}
    header.write_text(json.dumps(content))
    with pytest.raises(InputError, match=re.escape(f"{header}: {expected}")):
        ShardSet(tmp_path, "train")


def test_an_index_of_another_config_and_a_swapped_array_are_refused(tmp_path: Path) -> None:
    small_shard_set(tmp_path)
    with pytest.raises(
        InputError, match=re.escape(f"{tmp_path / 'index.json'}: shard patch 16 differs from the run's 128")
    ):
        ShardSet(tmp_path, "train", {"patch": 128})
    with pytest.raises(InputError, match="index.json: shard legend .* differs"):
        ShardSet(tmp_path, "train", {"legend": load_legend("clc").digest})
    labels = tmp_path / "E0N0.labels.npy"
    labels.write_bytes(labels.read_bytes()[:-100])  # a copy cut short
    with pytest.raises(InputError, match=re.escape(f"{labels}: truncated: ")):
        ShardSet(tmp_path, "train")
    small_shard_set(tmp_path)
    np.save(tmp_path / "E2N0.images.npy", np.zeros((2, 4, 16, 16), np.uint16))  # another tile's worth of patches
    with pytest.raises(
        InputError, match=re.escape("E2N0.images.npy: holds (2, 4, 16, 16) uint16, its header says (5, 4")
    ):
        ShardSet(tmp_path, "train")


def test_balanced_sampling_draws_patches_by_rare_class_content(tmp_path: Path) -> None:
    """Weights are the mean inverse class frequency of a patch's pixels; an epoch draws in proportion to them."""
    small_shard_set(tmp_path)
    shards = ShardSet(tmp_path, "train")
    weights = shards.balanced_weights()
    totals = {1: 1792, 2: 768, 3: 512}
    everything = sum(totals.values())
    for number in range(len(shards)):
        _, ids = shards.read(number)
        pixels = ids[ids > 0]
        assert weights[number] == pytest.approx(np.mean([everything / totals[int(c)] for c in pixels]))
    ranks = [EpochBatches(len(shards), 2, rank, 2, seed=3, shuffle=True, weights=weights) for rank in range(2)]
    drawn = []
    for epoch in range(2000):
        for batches in ranks:
            batches.set_epoch(epoch)
        assert list(ranks[0].order()) == list(ranks[1].order())  # every rank draws the same epoch
        drawn.append(ranks[0].order()[:12])
    frequency = np.bincount(np.concatenate(drawn), minlength=12) / (12 * 2000)
    np.testing.assert_allclose(frequency, weights / weights.sum(), atol=0.006)  # 24 000 draws: σ ≤ 0.002


@pytest.mark.xdist_group("slovenia-b")
def test_a_new_scene_on_one_tile_column_rewrites_only_those_tiles_shards(slovenia_run: Path) -> None:
    """A scene over the western tiles restages their block; only those tiles' shards are cut again.

    Once the inventory (a checkpoint) has seen the scene, the dry run shows the shards job of the block the scene
    reaches, the index and training; the shard files of the tile with patches in the other block keep their
    modification time.
    """
    archive = slovenia_run / "reshard-archive"
    archive.mkdir()
    for path in sorted((slovenia_run / "tests" / "data" / "slovenia").glob("S2L1C_*_13bands.tif")):
        shutil.copy2(path, archive)
    config = config_variant(
        slovenia_run, "reshard", {"run": {"name": "reshard"}, "imagery": {"paths": [f"{archive}/*.tif"]}}
    )
    command = [*SNAKEMAKE, "--configfile", config]
    run([*command, "--until", "shards_index"], cwd=slovenia_run, timeout=600)
    shards = slovenia_run / "results" / "reshard" / "shards"
    before = {path.name: path.stat().st_mtime_ns for path in shards.glob("E*")}
    assert {"E4674N2539.images.npy", "E4675N2539.images.npy"} <= set(before)

    crop_stack(archive / "S2L1C_2015-09-09_13bands.tif", archive / "S2L1C_2015-09-10_13bands.tif", columns=25)
    run([*command, "--until", "inventory"], cwd=slovenia_run, timeout=300)  # the checkpoint: then the DAG is known
    dry = run([*command, "-n"], cwd=slovenia_run, timeout=300)
    planned = jobs_run(dry.stdout + dry.stderr)
    assert [block for rule, block in planned if rule == "shards_block"] == ["E4670N2535"]
    assert ("shards_index", "") in planned and ("train", "") in planned
    run([*command, "--until", "shards_index"], cwd=slovenia_run, timeout=600)
    after = {path.name: path.stat().st_mtime_ns for path in shards.glob("E*")}
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == ["E4674N2538.json", "E4674N2539.images.npy", "E4674N2539.json", "E4674N2539.labels.npy"]
