"""Benchmark of the training input pipeline and step (not run in CI).

In one run, on the same device and model: patches/s of the DataLoader alone over real shard files (memory-
mapped ``.npy`` as the shards stage writes them: normalise, flips/rotations, workers, pinned memory), of
training fed by that loader, and of training on a batch already in device memory; the ratio of the last two
(target ≥ 0.9: the loader keeps the device fed). Peak memory (VmHWM) at the end.

Usage: python bench/train.py [--patches 256] [--patch 256] [--batch 16] [--steps 20] [--workers 4]
       [--encoder resnet50] [--device auto] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from s2ecosg.config import DEFAULT_BANDS, TrainConfig
from s2ecosg.data import EpochBatches, PatchDataset
from s2ecosg.distributed import World
from s2ecosg.model import UNet, pick_device
from s2ecosg.train import build_parts, make_loader, train_step


def write_shards(folder: Path, patches: int, size: int) -> int:
    """Synthetic shards (uint16 images, uint8 labels) written like the shards stage; returns the image bytes."""
    generator = np.random.default_rng(0)
    images = np.lib.format.open_memmap(folder / "train_images.npy", "w+", np.uint16, (patches, 10, size, size))
    for index in range(patches):
        images[index] = generator.integers(1, 6000, (10, size, size), dtype=np.uint16)
    images.flush()
    np.save(folder / "train_labels.npy", generator.integers(0, 11, (patches, size, size), dtype=np.uint8))
    stats = {"bands": DEFAULT_BANDS, "mean": [3000.0] * 10, "std": [1700.0] * 10}
    (folder / "stats.json").write_text(json.dumps(stats))
    return int(images.nbytes)


def loader_for(folder: Path, settings: TrainConfig, device: torch.device) -> torch.utils.data.DataLoader:
    """The training loader of :mod:`s2ecosg.train` over the shard files."""
    stats = json.loads((folder / "stats.json").read_text())
    dataset = PatchDataset(folder, "train", stats["mean"], stats["std"], augment=True)
    batches = EpochBatches(len(dataset), settings.batch_size, 0, 1, seed=0, shuffle=True)
    return make_loader(dataset, batches, settings, device)


def timed_steps(loader: torch.utils.data.DataLoader, steps: int, step: object, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step(image, label)`` after 2 warm-up steps, cycling the loader."""
    iterator, done, start = iter(loader), 0, 0.0
    while done < steps + 2:
        try:
            image, label = next(iterator)
        except StopIteration:
            loader.batch_sampler.set_epoch(loader.batch_sampler.epoch + 1)
            iterator = iter(loader)
            continue
        step(image, label)
        done += 1
        if done == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    """Run the three measurements and print rates, the ratio and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("patches", 256), ("patch", 256), ("batch", 16), ("steps", 20), ("workers", 4)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    settings = TrainConfig(batch_size=args.batch, workers=args.workers, device=args.device, precision=args.precision)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        image_bytes = write_shards(folder, args.patches, args.patch)
        loader = loader_for(folder, settings, device)
        patch_bytes = image_bytes / args.patches
        loader_seconds = timed_steps(
            loader, args.steps, lambda image, label: image.to(device, non_blocking=True), device
        )
        parts = build_parts(UNet(args.encoder, 10, 10), settings, World("single"), device, None)
        parts.model.train()
        fed_seconds = timed_steps(
            loader, args.steps, lambda image, label: train_step(parts, image, label, False), device
        )
        image, label = next(iter(loader))
        resident = SimpleNamespace(image=image.to(device), label=label.to(device))
        memory_seconds = timed_steps(
            loader, args.steps, lambda *_: train_step(parts, resident.image, resident.label, False), device
        )
    patches = args.steps * args.batch
    print(f"device {device}, {args.encoder}, batch {args.batch} × {args.patch}² × 10 bands, {args.workers} workers")
    print(
        f"loader only: {patches / loader_seconds:.0f} patches/s, {patches * patch_bytes / loader_seconds / 1e6:.0f} MB/s"
    )
    print(f"training fed by the loader: {patches / fed_seconds:.1f} patches/s")
    print(f"training on a resident batch: {patches / memory_seconds:.1f} patches/s")
    print(f"ratio loader-fed / resident: {memory_seconds / fed_seconds:.2f} (target ≥ 0.9)")
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(f"peak memory (VmHWM): {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
