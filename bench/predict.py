"""Benchmark of the predict stage (not run in CI).

Measures, in one run on the same device and windows: km²/s of the whole predict step on a staged tile
(read + normalise + model + blend + write) and of the bare model forward, and their ratio; peak memory.

Usage: python bench/predict.py [--encoder resnet50] [--tile-pixels 1000] [--window 256] [--overlap 64] [--device auto]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from affine import Affine

from s2ecosg.config import DEFAULT_BANDS
from s2ecosg.grid import window_starts
from s2ecosg.io import write_json, write_raster
from s2ecosg.model import UNet, pick_device
from s2ecosg.predict import run_predict


def make_bundle(folder: Path, encoder: str) -> None:
    """A randomly initialised bundle (speed does not depend on the weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(UNet(encoder, len(DEFAULT_BANDS), 10).state_dict(), folder / "weights.pt")
    write_json(
        folder / "bundle.json",
        {"encoder": encoder, "bands": DEFAULT_BANDS, "n_classes": 10, "mean": [1500.0] * 10, "std": [500.0] * 10},
    )


def bare_model_rate(encoder: str, size: int, window: int, stride: int, batch: int, device: torch.device) -> float:
    """km²/s of forward passes alone over the same number of windows as the tile."""
    model = UNet(encoder, len(DEFAULT_BANDS), 10).to(device).eval()
    count = len(window_starts(size, window, stride)) ** 2
    tensor = torch.randn(batch, len(DEFAULT_BANDS), window, window, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:
        model(tensor)
        start = time.perf_counter()
        for _ in range(0, count, batch):
            model(tensor)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (size * 10 / 1000) ** 2 / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print rates, ratio and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--tile-pixels", type=int, default=1000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_bundle(root / "model", args.encoder)
        image = np.random.default_rng(0).integers(1, 6000, (10, args.tile_pixels, args.tile_pixels), dtype=np.uint16)
        write_raster(
            root / "tile.tif",
            image,
            crs="EPSG:3035",
            transform=Affine(10, 0, 4e6, 0, -10, 3e6),
            descriptions=DEFAULT_BANDS,
        )
        settings = SimpleNamespace(
            window=args.window, overlap=args.overlap, batch_size=args.batch_size, device=args.device
        )
        start = time.perf_counter()
        run_predict(str(root / "model"), str(root / "tile.tif"), settings, str(root / "c.tif"), str(root / "p.tif"))
        stage_rate = (args.tile_pixels * 10 / 1000) ** 2 / (time.perf_counter() - start)
    model_rate = bare_model_rate(
        args.encoder, args.tile_pixels, args.window, args.window - args.overlap, args.batch_size, device
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"device {device}, encoder {args.encoder}, tile {args.tile_pixels}² px, window {args.window}, overlap {args.overlap}"
    )
    print(
        f"predict stage: {stage_rate:.3f} km²/s; bare model: {model_rate:.3f} km²/s; ratio {stage_rate / model_rate:.2f}"
    )
    print(f"peak memory (RSS): {peak:.0f} MB")


if __name__ == "__main__":
    main()
