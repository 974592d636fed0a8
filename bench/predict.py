"""Benchmark of the predict stage (not run in CI).

A 2 × 2 block of staged tiles (random reflectance, N² px each) and a randomly initialised bundle; each
measurement runs in its own subprocess with ``GDAL_CACHEMAX`` bounded, peak memory read from VmHWM:
- predict stage, 1 tile (build the model from the bundle, read with its 3 neighbours' halo + normalise + model +
  blend + write) and all 4 tiles one after the other (4× the area: peak memory must not grow); library imports
  are start-up, reported apart;
- bare model forward over exactly the windows the stage computed for one tile, same device, batch and dtype;
- loader only: reading the tile with its halo and normalising every window, no model.
Rates are km² of tile per second (10 m pixels); the ratio stage / bare model is the pipeline's efficiency
(target ≥ 0.8).

Usage: python bench/predict.py [--encoder resnet50] [--tile-pixels 1000] [--window 256] [--overlap 64]
       [--batch-size 32] [--device auto] [--halo PX] [--compile]
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
import numpy as np, torch, torchvision  # library start-up of every job, reported apart from the timed work
from s2ecosg.config import PredictConfig
from s2ecosg.bundle import load_bundle
from s2ecosg.predict import read_padded, run_predict, window_positions
from s2ecosg.data import normalise
from s2ecosg.model import pick_device
imports = time.perf_counter() - imports
mode, root, options = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
settings = PredictConfig(**options)
tiles = sorted(root.glob("tile_*.tif"))
device = pick_device(settings.device)
if not mode.startswith("stage"):  # a predict job builds its model inside the timed part
    model, card = load_bundle(root / "model", device)
def positions(path):
    halo = settings.window if settings.halo is None else settings.halo
    image, transform, _ = read_padded(str(path), [str(t) for t in tiles if t != path], halo, card["bands"])
    keep = slice(halo, image.shape[1] - halo), slice(halo, image.shape[2] - halo)
    origin = (round(-transform.f / transform.a), round(transform.c / transform.a))
    return image, window_positions((image > 0).all(axis=0), settings, origin, keep)[0]
if device.type == "cuda":
    torch.cuda.synchronize()
start = time.perf_counter()
windows = 0
if mode.startswith("stage"):
    for path in tiles[: int(mode[5:])]:
        run_predict(str(root / "model"), str(path), settings, str(root / "c.tif"), str(root / "f.tif"),
                    [str(t) for t in tiles if t != path])
elif mode == "loader":
    image, places = positions(tiles[0])
    mean, std = np.asarray(card["mean"], np.float32), np.asarray(card["std"], np.float32)
    size = settings.window
    for r, c in places:
        normalise(image[:, r : r + size, c : c + size], mean, std)
    windows = len(places)
else:
    image, places = positions(tiles[0])
    constant = np.full(10, 3000, np.float32), np.full(10, 1700, np.float32)
    window = normalise(image[:, : settings.window, : settings.window], *constant)
    batch = torch.from_numpy(np.stack([window] * settings.batch_size)).to(device)
    if device.type == "cuda":  # as the stage feeds it
        batch = batch.contiguous(memory_format=torch.channels_last)
    if settings.compile:
        model = torch.compile(model, dynamic=False)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:
        model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for first in range(0, len(places), settings.batch_size):
            size = settings.batch_size if settings.compile else min(settings.batch_size, len(places) - first)
            model(batch[:size]).float().softmax(dim=1)  # compiled: the last batch padded, as the stage does
        if device.type == "cuda":
            torch.cuda.synchronize()
    windows = len(places)
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "windows": windows, "peak_mb": peak / 1024, "imports": imports}))
"""


def write_block(root: Path, pixels: int, encoder: str) -> None:
    """Four staged tiles in a 2 × 2 block on EPSG:3035 and a bundle."""
    import torch
    from affine import Affine

    from s2ecosg.config import DEFAULT_BANDS
    from s2ecosg.io import write_json, write_raster
    from s2ecosg.model import UNet

    generator = np.random.default_rng(0)
    for index in range(4):
        left, top = 4e6 + (index % 2) * pixels * 10, 3e6 - (index // 2) * pixels * 10
        image = generator.integers(1, 6000, (10, pixels, pixels), dtype=np.uint16)
        transform = Affine(10, 0, left, 0, -10, top)
        write_raster(
            root / f"tile_{index}.tif", image, crs="EPSG:3035", transform=transform, descriptions=DEFAULT_BANDS
        )
    (root / "model").mkdir()
    torch.save(UNet(encoder, 10, 10).state_dict(), root / "model" / "weights.pt")
    card = {"encoder": encoder, "bands": DEFAULT_BANDS, "n_classes": 10, "mean": [3000.0] * 10, "std": [1700.0] * 10}
    write_json(root / "model" / "bundle.json", card)


def measure(mode: str, root: Path, options: dict[str, object]) -> dict[str, float]:
    """One measurement in its own process, GDAL's block cache bounded."""
    environment = dict(os.environ, GDAL_CACHEMAX="128")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(root), json.dumps(options)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode:
        raise SystemExit(f"bench/predict: the {mode} measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the block, run the measurements, print rates, ratio and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--tile-pixels", type=int, default=1000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--halo", type=int, help="predict.halo (default: one window, seamless)")
    parser.add_argument("--compile", action="store_true", help="predict.compile (the stage's time includes compiling)")
    args = parser.parse_args()
    options = {
        "window": args.window,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "device": args.device,
        "compile": args.compile,
        "halo": args.halo,
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_block(root, args.tile_pixels, args.encoder)
        one, four = measure("stage1", root, options), measure("stage4", root, options)
        model, loader = measure("model", root, options), measure("loader", root, options)
    area = (args.tile_pixels * 10 / 1000) ** 2
    stage_rate, model_rate = area / one["seconds"], area / model["seconds"]
    print(
        f"encoder {args.encoder}, tile {args.tile_pixels}² px ({area:.0f} km²), window {args.window}, overlap {args.overlap}"
    )
    halo = "one window (seamless)" if args.halo is None else f"{args.halo} px"
    print(f"windows per tile (halo {halo}, grid-aligned): {model['windows']}")
    print(f"library imports of a job (torch, torchvision; not in the rates): {one['imports']:.1f} s")
    print(
        f"predict stage: {stage_rate:.3f} km²/s; bare model on the same windows: {model_rate:.3f} km²/s; "
        f"ratio {stage_rate / model_rate:.2f} (target ≥ 0.8)"
    )
    print(f"loader only (read with halo + normalise): {area / loader['seconds']:.1f} km²/s")
    print(
        f"peak memory: {one['peak_mb']:.0f} MB for 1 tile, {four['peak_mb']:.0f} MB for 4 tiles; "
        f"ratio {four['peak_mb'] / one['peak_mb']:.2f} (target ≤ 1.2)"
    )


if __name__ == "__main__":
    main()
