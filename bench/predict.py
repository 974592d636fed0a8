"""Benchmark of the predict stage as the workflow runs it: whole block jobs (not run in CI).

A run of 2 × 2 job blocks of ``--block-tiles``² staged tiles (random reflectance, N² px each, EPSG:3035) with their
stage manifests, and a randomly initialised bundle. Each measurement runs in its own subprocess with
``GDAL_CACHEMAX`` bounded; peak memory is VmHWM:
- windows: the windows per km² of a block with the exact (one-window) halo against the halo-free count (the
  windows that tile the block without a halo), mean over every alignment of the block on the window lattice, for
  the configured block and, for comparison, for one tile (computed, no model);
- block job: ``run_predict_block`` on one block (library imports, model build from the bundle, every tile read
  with the halo from the neighbouring blocks, normalised, predicted, blended, written) and on the 4 blocks one
  after the other in one process (peak memory must not grow);
- bare model: the network's forward (and softmax) over exactly as many windows as the block job ran, same device,
  batch and dtype, nothing else;
- loader only: reading the block with its halo and normalising every window, no model.
Rates are km² of block per second (10 m pixels).

Usage: python bench/predict.py [--encoder resnet50] [--tile-pixels N] [--block-tiles 5] [--window 256]
       [--overlap 64] [--batch-size 32] [--device auto] [--halo PX] [--compile]
(--tile-pixels defaults to 1000, 10 km tiles, on a GPU and to 200 on a CPU, where a block of 10 km tiles through
a ResNet-50 takes most of an hour.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
imports = time.perf_counter()
from pathlib import Path
import numpy as np, torch, torchvision  # library start-up of every job
from s2ecosg.config_files import validate_sections
from s2ecosg.predict.block import run_predict_block
imports = time.perf_counter() - imports
mode, root, options = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
settings = validate_sections({"predict": options["predict"], "grid": options["grid"]})
manifests = sorted(str(path) for path in (root / "stage").glob("*.json"))
windows, seconds, written = 0, 0.0, 0
start = time.perf_counter()
if mode.startswith("job"):
    for index in range(int(mode[3:])):
        own = manifests[index]
        out = root / mode / f"predict{index}"  # a folder of its own: nothing written before is skipped
        windows += run_predict_block(str(root / "model"), settings, [own, *[m for m in manifests if m != own]],
                                     str(out), str(out / "blocks" / Path(own).name))
        tiles = json.loads((out / "blocks" / Path(own).name).read_text())["tiles"]
        written += sum(Path(entry["classes"]).exists() for entry in tiles.values())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
else:
    from s2ecosg.model.bundle import load_bundle
    from s2ecosg.train.data import normalise
    from s2ecosg.model.network import pick_device
    from s2ecosg.predict.windows import window_plan
    from s2ecosg.predict.block import BlockTiles, StagedMosaic
    from s2ecosg.blocks import read_manifests
    from s2ecosg.grid import TargetGrid
    grid = TargetGrid(settings.grid.crs, settings.grid.resolution, settings.grid.tile_size)
    own, around = read_manifests(manifests[:1]), read_manifests(manifests)
    predict = settings.predict
    block = BlockTiles(grid, {tile: ({}, "") for tile in own}, predict.window if predict.halo is None else predict.halo)
    rows, columns, size = window_plan(block.region, predict)
    device = pick_device(predict.device)
    model, card = load_bundle(root / "model", device)
    mean, std = np.asarray(card.mean, np.float32), np.asarray(card.std, np.float32)
    if mode == "loader":
        start = time.perf_counter()
        mosaic = StagedMosaic(block.paths_around({t: e["image"] for t, e in around.items()}), card.bands)
        read = mosaic.reader(block.region)
        for row in rows:
            image = read(row, row + size)
            for column in columns:
                normalise(image[:, :, column : column + size], mean, std)
                windows += 1
    else:
        windows = options["windows"]
        window = torch.from_numpy(np.random.default_rng(0).normal(size=(len(mean), size, size)).astype(np.float32))
        batch = torch.stack([window] * predict.batch_size).to(device)
        if device.type == "cuda":  # as the job feeds it
            batch = batch.contiguous(memory_format=torch.channels_last)
        if predict.compile:
            model = torch.compile(model, dynamic=False)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        with torch.no_grad(), autocast:
            model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for first in range(0, windows, predict.batch_size):
                count = predict.batch_size if predict.compile else min(predict.batch_size, windows - first)
                model(batch[:count]).float().softmax(dim=1)
            if device.type == "cuda":
                torch.cuda.synchronize()
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "windows": windows, "peak_mb": peak / 1024, "imports": imports, "written": written}))
"""


def write_run(root: Path, pixels: int, block_tiles: int, encoder: str) -> dict[str, object]:
    """2 × 2 blocks of staged tiles on EPSG:3035 with their stage manifests, and a bundle; the grid settings."""
    from s2ecosg.blocks import block_name
    from s2ecosg.config import DEFAULT_BANDS
    from s2ecosg.grid import TargetGrid
    from s2ecosg.io import write_json, write_raster
    from s2ecosg.model.bundle import save_bundle
    from s2ecosg.model.card import BundleCard
    from s2ecosg.model.network import UNet

    grid = TargetGrid("EPSG:3035", 10.0, pixels * 10.0)
    generator = np.random.default_rng(0)
    first_column, first_row = 400 * block_tiles, 300 * block_tiles  # block-aligned tile indices
    manifests: dict[str, dict] = {}
    for row in range(2 * block_tiles):
        for column in range(2 * block_tiles):
            name = grid.tile_name(first_column + column, first_row + row)
            image = generator.integers(1, 6000, (10, pixels, pixels), dtype=np.uint16)
            path = root / "stage" / f"{name}.tif"
            write_raster(path, image, crs=grid.crs, transform=grid.tile_transform(name), descriptions=DEFAULT_BANDS)
            block = grid.block_of(name, block_tiles)
            manifests.setdefault(block, {})[name] = {"signature": name, "image": str(path)}
    for block, tiles in manifests.items():
        write_json(root / "stage" / f"{block}.json", {"block": block_name(block), "tiles": tiles})
    (root / "model").mkdir()
    card = BundleCard(encoder=encoder, bands=DEFAULT_BANDS, n_classes=10, mean=[3000.0] * 10, std=[1700.0] * 10)
    save_bundle(root / "model", UNet(encoder, 10, 10).state_dict(), card)  # the card as training writes it
    return {"crs": grid.crs, "resolution": 10.0, "tile_size": grid.tile_size, "block_tiles": block_tiles}


def measure(mode: str, root: Path, options: dict[str, object]) -> dict[str, float]:
    """One measurement in its own process, GDAL's block cache bounded."""
    environment = dict(os.environ, GDAL_CACHEMAX="128")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(root), json.dumps(options)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if result.returncode:
        raise SystemExit(f"bench/predict: the {mode} measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def windows_over_halo_free(length: int, window: int, overlap: int) -> float:
    """Mean over alignments of (windows touching a square of ``length`` px, one-window halo) / halo-free windows.

    Halo-free: the windows that tile the square alone, the last one shifted back to its edge (``window_starts``).
    """
    from s2ecosg.grid import window_starts
    from s2ecosg.predict.windows import aligned_starts

    size, stride = window // 32 * 32, window - overlap
    free = len(window_starts(length, size, stride)) ** 2
    counts = [
        len(aligned_starts(length + 2 * window, size, stride, offset - window, (window, window + length))) ** 2
        for offset in range(stride)
    ]
    return float(np.mean(counts)) / free


def main() -> None:
    """Build the run, measure, print rates, ratios and peak memory, then the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--tile-pixels", type=int, help="tile edge in px (default: 1000 on a GPU, 200 on a CPU)")
    parser.add_argument("--block-tiles", type=int, default=5)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--halo", type=int, help="predict.halo (default: one window, seamless)")
    parser.add_argument("--compile", action="store_true", help="predict.compile (the job's time includes compiling)")
    parser.add_argument("--smoke", action="store_true", help="seconds: resnet18, 2 × 2 tiles of 100 px, window 64")
    args = parser.parse_args()
    if args.smoke:
        args.encoder, args.tile_pixels, args.block_tiles, args.window, args.overlap = "resnet18", 100, 2, 64, 16
        args.batch_size = 8
    import torch

    gpu = args.device in ("auto", "cuda") and torch.cuda.is_available()
    pixels = args.tile_pixels or (1000 if gpu else 200)
    predict = {"window": args.window, "overlap": args.overlap, "batch_size": args.batch_size, "device": args.device}
    predict |= {"compile": args.compile, "halo": args.halo, "top2": True}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        options: dict[str, object] = {
            "predict": predict,
            "grid": write_run(root, pixels, args.block_tiles, args.encoder),
        }
        one, four = measure("job1", root, options), measure("job4", root, options)
        tiles = args.block_tiles**2
        # Each job starts in a folder of its own: it must have predicted (windows) and written every tile.
        if not (one["windows"] > 0 and one["written"] == tiles and four["written"] == 4 * tiles):
            raise SystemExit(f"bench/predict: the block jobs wrote {one['written']} and {four['written']} tiles")
        model = measure("model", root, options | {"windows": one["windows"]})
        loader = measure("loader", root, options)
    report(args, pixels, one, four, model, loader, "GPU" if gpu else "CPU")


def report(args: argparse.Namespace, pixels: int, one: dict, four: dict, model: dict, loader: dict, kind: str) -> None:
    """Print the figures and the RESULT lines."""
    block_km = args.block_tiles * pixels * 10 / 1000
    area = block_km**2
    job = one["seconds"] + one["imports"]
    job_rate, model_rate = area / job, area / model["seconds"]
    stride = args.window - args.overlap
    # The window count is geometry, not timing: the ratio is that of a production block (5 × 5 tiles of 1000 px)
    # whatever tile size this run times, and of the block and tile this run times, for comparison.
    block_ratio = windows_over_halo_free(5 * 1000, args.window, args.overlap)
    print(f"encoder {args.encoder} on the {kind}, block {args.block_tiles}² tiles of {pixels}² px ({area:.0f} km²)")
    print(f"window {args.window}, overlap {args.overlap} (stride {stride}), batch {args.batch_size}")
    print(
        f"windows per km², one-window halo / halo-free (mean over alignments): 50 km block {block_ratio:.3f} "
        f"(target ≤ 1.15), 10 km tile alone {windows_over_halo_free(1000, args.window, args.overlap):.3f}, "
        f"this run's block {windows_over_halo_free(args.block_tiles * pixels, args.window, args.overlap):.3f}"
    )
    print(f"windows the block job ran: {one['windows']} ({one['windows'] / area:.2f} per km²)")
    print(f"library imports of a job (torch, torchvision): {one['imports']:.1f} s (in the job's time)")
    print(
        f"block job: {job:.1f} s, {job_rate:.2f} km²/s ({area / one['seconds']:.2f} km²/s without the imports); "
        f"bare model on the same windows: {model['seconds']:.1f} s, {model_rate:.2f} km²/s; "
        f"ratio {job_rate / model_rate:.2f} (target ≥ 0.8)"
    )
    print(f"4 block jobs in one process: {4 * area / four['seconds']:.2f} km²/s")
    print(f"loader only (read with halo + normalise): {area / loader['seconds']:.1f} km²/s")
    print(
        f"peak memory: {one['peak_mb']:.0f} MB for 1 block, {four['peak_mb']:.0f} MB for 4 blocks; "
        f"ratio {four['peak_mb'] / one['peak_mb']:.2f} (target ≤ 1.2)"
    )
    print(f"RESULT windows_over_halo_free {block_ratio:.3f}")
    print(f"RESULT stage_over_bare_model {job_rate / model_rate:.3f}")
    print(f"RESULT block_job_km2_per_s {job_rate:.3f}")
    print(f"RESULT bare_model_km2_per_s {model_rate:.3f}")
    print(f"RESULT peak_rss_ratio_4_blocks {four['peak_mb'] / one['peak_mb']:.3f}")


if __name__ == "__main__":
    main()
