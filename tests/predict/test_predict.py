"""Predict over job blocks: one region per block, each window computed once, tiles as if predicted one by one.

A seeded ResNet-18 bundle and 3 × 3 staged tiles of 100 px (1 km) of random reflectance with a nodata patch,
on EPSG:3035; windows of 64 px every 48 px, so windows straddle tile edges in both directions.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2ecosg.blocks import read_manifests, tile_signature_of
from s2ecosg.config_files import validate_sections
from s2ecosg.grid import TargetGrid
from s2ecosg.io import write_json, write_raster
from s2ecosg.model.bundle import save_bundle
from s2ecosg.model.card import BundleCard
from s2ecosg.model.network import UNet
from s2ecosg.predict.block import PredictRequest, run_predict, run_predict_block
from s2ecosg.predict.windows import aligned_starts

BANDS = ["B02", "B03", "B04", "B08"]
GRID = TargetGrid("EPSG:3035", 10.0, 1000.0)
PIXELS = 100
PREDICT = {"window": 64, "overlap": 16, "batch_size": 5, "device": "cpu", "top2": True}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle (model/), 3 × 3 staged tiles (stage/) and one stage manifest per tile column (blocks of 1 tile)."""
    root = tmp_path_factory.mktemp("blocks")
    torch.manual_seed(3)
    (root / "model").mkdir()
    network = UNet("resnet18", len(BANDS), 4)
    with torch.no_grad():  # an untrained head is dominated by its bias: make the classes follow the image
        network.head.bias.zero_()
        network.head.weight.mul_(20)
    card = BundleCard(encoder="resnet18", bands=BANDS, n_classes=4, mean=[2500.0] * 4, std=[1500.0] * 4)
    save_bundle(root / "model", network.state_dict(), card)
    generator = np.random.default_rng(5)
    smooth = generator.integers(500, 5000, (len(BANDS), 3 * PIXELS // 10, 3 * PIXELS // 10), dtype=np.uint16)
    scene = np.repeat(np.repeat(smooth, 10, axis=1), 10, axis=2)  # structure on 100 m: the classes vary
    scene[:, 100:130, 20:70] = 0  # nodata across a tile edge
    for row, column in itertools.product(range(3), range(3)):
        name = tile_of(row, column)
        image = scene[:, row * PIXELS : (row + 1) * PIXELS, column * PIXELS : (column + 1) * PIXELS]
        write_raster(
            root / "stage" / f"{name}.tif", image, crs=GRID.crs, transform=GRID.tile_transform(name), descriptions=BANDS
        )
    return root


def tile_of(row: int, column: int) -> str:
    """The tile at (row from the north, column) of the 3 × 3 test area."""
    return GRID.tile_name(4000 + column, 3002 - row)


def manifest(root: Path, tiles: list[str], name: str) -> str:
    """A stage manifest listing ``tiles`` (their signature: their name)."""
    entries = {tile: {"signature": tile, "image": str(root / "stage" / f"{tile}.tif")} for tile in tiles}
    path = root / "manifests" / f"{name}.json"
    write_json(path, {"block": name, "tiles": entries})
    return str(path)


def predicted(folder: Path, tile: str, suffix: str = ".top2.tif") -> np.ndarray:
    with rasterio.open(folder / f"{tile}{suffix}") as source:
        return source.read()


def one_by_one(staged: Path, folder: Path) -> dict[str, np.ndarray]:
    """Every tile predicted alone (``run_predict``) with its 8 neighbours as the halo."""
    settings = validate_sections({"predict": PREDICT}).predict
    tiles = [tile_of(row, column) for row, column in itertools.product(range(3), range(3))]
    for tile in tiles:
        around = [str(staged / "stage" / f"{other}.tif") for other in tiles if other != tile]
        outputs = [str(folder / f"{tile}{suffix}") for suffix in (".tif", ".conf.tif")]
        run_predict(
            PredictRequest(
                str(staged / "model"),
                str(staged / "stage" / f"{tile}.tif"),
                settings,
                *outputs,
                around,
                top2=str(folder / f"{tile}.top2.tif"),
            )
        )
    return {tile: predicted(folder, tile) for tile in tiles}


def assert_same_prediction(block: np.ndarray, alone: np.ndarray) -> None:
    """Equal up to float noise: confidence within 1/255, classes equal wherever the top-2 margin exceeds 2/255."""
    assert np.abs(block[1].astype(int) - alone[1]).max() <= 1
    clear = alone[1].astype(int) - alone[3] > 2
    np.testing.assert_array_equal(block[0][clear], alone[0][clear])
    assert (block == alone).mean() > 0.999


def windows_touching(tiles: list[str], size: int = 64, stride: int = 48) -> int:
    """Brute force: the grid-aligned windows (global pixel multiples of the stride) that touch any of ``tiles``."""
    places = set()
    for tile in tiles:
        transform = GRID.tile_transform(tile)
        top, left = round(-transform.f / 10), round(transform.c / 10)
        for row in range((top - size) // stride * stride, top + PIXELS, stride):
            for column in range((left - size) // stride * stride, left + PIXELS, stride):
                if row + size > top and column + size > left:
                    places.add((row, column))
    return len(places)


def test_a_block_predicts_like_its_tiles_one_by_one_and_runs_each_window_once(
    staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 3 × 3 tiles as one block equal the tiles predicted alone with their halo, seams and nodata included.

    The block runs each window touching it once (the tiles alone run the windows on their shared edges twice),
    and reading the block in chunks of a few rows changes nothing.
    """
    import s2ecosg.predict.windows

    alone = one_by_one(staged, tmp_path / "alone")
    tiles = sorted(alone)
    settings = validate_sections({"predict": PREDICT, "grid": {"tile_size": 1000}})
    own = manifest(staged, tiles, "all")
    folder = tmp_path / "block"
    windows = run_predict_block(str(staged / "model"), settings, [own], str(folder), str(folder / "blocks" / "a.json"))
    assert windows == windows_touching(tiles) < sum(windows_touching([tile]) for tile in tiles)
    classes = np.concatenate([predicted(folder, tile)[0] for tile in tiles])
    assert len(set(np.unique(classes)) - {0}) >= 2 and (classes == 0).sum() == 30 * 50  # the nodata patch
    for tile in tiles:
        assert_same_prediction(predicted(folder, tile), alone[tile])
        np.testing.assert_array_equal(predicted(folder, tile, ".tif")[0], predicted(folder, tile)[0])
    monkeypatch.setattr(s2ecosg.predict.windows, "CHUNK_ROWS", 40)  # one or two window rows per read
    chunked = tmp_path / "chunked"
    run_predict_block(str(staged / "model"), settings, [own], str(chunked), str(chunked / "blocks" / "a.json"))
    for tile in tiles:
        np.testing.assert_array_equal(predicted(chunked, tile), predicted(folder, tile))


def test_a_block_runs_only_the_windows_of_its_tiles_to_predict(staged: Path, tmp_path: Path) -> None:
    """Two diagonal tiles of a block to predict, the rest up to date: only windows reaching those two run.

    The halo comes from the neighbouring blocks' manifests (here one block per tile column).
    """
    settings = validate_sections({"predict": PREDICT, "grid": {"tile_size": 1000}})
    columns = [[tile_of(row, column) for row in range(3)] for column in range(3)]
    manifests = [manifest(staged, tiles, f"column{index}") for index, tiles in enumerate(columns)]
    folder = tmp_path / "block"
    first = str(folder / "blocks" / "column1.json")
    run_predict_block(str(staged / "model"), settings, [manifests[1], manifests[0], manifests[2]], str(folder), first)
    made = read_manifests([first])
    assert sorted(made) == sorted(columns[1])
    for tile in (columns[1][0], columns[1][2]):
        for suffix in (".tif", ".conf.tif", ".top2.tif"):
            (folder / f"{tile}{suffix}").unlink()
    kept = predicted(folder, columns[1][1])
    windows = run_predict_block(
        str(staged / "model"), settings, [manifests[1], manifests[0], manifests[2]], str(folder), first
    )
    assert windows == windows_touching([columns[1][0], columns[1][2]])
    np.testing.assert_array_equal(predicted(folder, columns[1][1]), kept)
    alone = one_by_one(staged, tmp_path / "alone")
    for tile in columns[1]:
        assert tile_signature_of(folder / f"{tile}.tif") == made[tile]["signature"]
        assert_same_prediction(predicted(folder, tile), alone[tile])


def test_aligned_starts_cover_the_kept_part_with_grid_windows() -> None:
    """Starts are stride multiples in global pixels when the halo allows, and always cover the kept part."""
    starts = aligned_starts(96 + 128, 64, 48, 936, (64, 160))  # a 96 px tile at global 1000 with a 64 px halo
    assert starts == [24, 72, 120] and all((936 + start) % 48 == 0 for start in starts)
    assert aligned_starts(96, 64, 48, 965, (0, 96)) == [0, 32]  # no halo: windows shifted inside the image


def test_the_bundle_temperature_rescales_the_confidence_and_keeps_the_classes(staged: Path, tmp_path: Path) -> None:
    settings = validate_sections({"predict": PREDICT}).predict
    tile = tile_of(1, 1)
    results = {}
    # The seeded network is unsure (≈ 0.26 over 4 classes): a temperature below 1 sharpens it, visibly.
    for temperature in (1.0, 0.25):
        bundle = tmp_path / f"model-{temperature}"
        shutil.copytree(staged / "model", bundle)
        card = json.loads((bundle / "bundle.json").read_text())
        (bundle / "bundle.json").write_text(json.dumps(card | {"temperature": temperature}))
        outputs = [str(tmp_path / f"{temperature}{suffix}") for suffix in (".tif", ".conf.tif")]
        run_predict(PredictRequest(str(bundle), str(staged / "stage" / f"{tile}.tif"), settings, *outputs, []))
        results[temperature] = [predicted(tmp_path, str(temperature), suffix)[0] for suffix in (".tif", ".conf.tif")]
    (classes, confidence), (sharp_classes, sharp_confidence) = results[1.0], results[0.25]
    valid = classes > 0
    # A window's argmax does not move with T; a blend of overlapping windows' probabilities may, where they disagree.
    assert (classes == sharp_classes)[valid].mean() > 0.99
    assert sharp_confidence[valid].mean() > confidence[valid].mean() + 8
    assert (sharp_confidence[valid] >= confidence[valid] - 1).mean() > 0.99


def test_top_k_probabilities_on_disk(staged: Path, tmp_path: Path) -> None:
    # K = 4 over a 4-class network: every class of every pixel, ranked; the first four bands are top2.tif's.
    settings = validate_sections({"predict": PREDICT | {"probabilities": 4}, "grid": {"tile_size": 1000}})
    tile = tile_of(0, 0)
    own = manifest(staged, [tile], "one")
    folder = tmp_path / "block"
    run_predict_block(str(staged / "model"), settings, [own], str(folder), str(folder / "blocks" / "a.json"))
    ranked = predicted(folder, tile, ".probs.tif")
    with rasterio.open(folder / f"{tile}.probs.tif") as source:
        assert source.count == 8 and source.descriptions[:2] == ("class_id_1", "probability_255_1")
    np.testing.assert_array_equal(ranked[:4], predicted(folder, tile))
    valid = ranked[0] > 0
    classes, codes = ranked[0::2][:, valid].astype(int), ranked[1::2][:, valid].astype(int)
    assert (np.sort(classes, axis=0) == np.arange(1, 5)[:, None]).all()  # each class once per pixel
    assert (np.diff(codes, axis=0) <= 0).all()  # ranked by probability
    assert (np.abs(codes.sum(axis=0) - 255) <= 2).all()  # the four probabilities sum to 1 (rounding: ±0.5 each)
    entry = json.loads((folder / "blocks" / "a.json").read_text())["tiles"][tile]
    assert entry["probabilities"].endswith(f"{tile}.probs.tif")
