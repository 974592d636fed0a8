"""Benchmark of the training input pipeline over tile shards larger than this machine's memory (not run in CI).

Writes a shard set as the shards jobs do (``--files`` tile shards of 256² × 10-band uint16 patches, their headers,
a block manifest and the index; ``--gigabytes`` in all, default 30 GB: more than the 24 GB of this machine's RAM, so
reads come from disk), then in one run, on the same device and model:
- loader only: patches/s and MB/s of the DataLoader (uniform random order over the whole set, normalise,
  flips/rotations, pinned memory) with 1, 2 and 4 workers;
- training fed by that loader against training on a batch resident on the device:
  ``RESULT loader_over_memory`` (target ≥ 0.9);
- peak resident memory of the loading processes (main + workers, VmHWM) reading a small shard set and the large
  one: ``RESULT peak_rss_ratio_large_over_small`` (must not grow with the set; target ≤ 1.2).
On a GPU the network's in-memory rate is the reference (≈ 1 150 patches/s for a ResNet-50 U-Net on one H100, bf16,
256², batch 64).

Usage: python bench/train.py [--gigabytes 30] [--files 300] [--batch 16] [--steps 10] [--encoder resnet50]
       [--device auto] [--precision auto] [--folder /local/disk/path]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
PATCH = 256
PATCH_BYTES = len(BANDS) * PATCH * PATCH * 2 + PATCH * PATCH  # image + labels


def write_set(folder: Path, gigabytes: float, files: int) -> int:
    """A shard set of ``gigabytes`` in ``files`` tile shards, its manifest and index; returns the patch count."""
    from s2ecosg.blocks import write_manifest
    from s2ecosg.config_files import validate_sections
    from s2ecosg.legend import load_legend
    from s2ecosg.shards.cut import ShardLayout, write_shard
    from s2ecosg.shards.index import run_shards_index

    per_file = max(1, round(gigabytes * 1e9 / PATCH_BYTES / files))
    generator = np.random.default_rng(0)
    pool = generator.integers(1, 6000, (64, len(BANDS), PATCH, PATCH), dtype=np.uint16)  # distinct bytes to read
    classes = generator.integers(1, 11, (64, PATCH, PATCH), dtype=np.uint8)
    legend, entries = load_legend("clc_grid_code"), {}
    layout = ShardLayout(BANDS, PATCH, PATCH, {"image": "-", "labels": "-"}, set())
    for number in range(files):
        tile = f"E{number}N0"
        places = [(0, index, "train") for index in range(per_file)]
        cut = lambda index, shift=number: (pool[(index + shift) % 64], classes[(index * 7 + shift) % 64])  # noqa: E731
        write_shard(folder, tile, places, cut, layout, legend, f"bench{number}")
        entries[tile] = {"signature": f"bench{number}", "header": str(folder / f"{tile}.json")}
    write_manifest(folder / "blocks" / "E0N0.json", "E0N0", entries)
    settings = validate_sections({"shards": {"patch": PATCH, "stride": PATCH}, "labels": {"legend": "clc_grid_code"}})
    run_shards_index(settings, [str(folder / "blocks" / "E0N0.json")], str(folder))
    return per_file * files


CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from s2ecosg.config import TrainConfig
from s2ecosg.train.data import EpochBatches, PatchDataset
from s2ecosg.train.run import make_loader
folder, workers, batches_wanted = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
stats = json.loads((folder / "stats.json").read_text())
settings = TrainConfig(batch_size=16, workers=workers)
dataset = PatchDataset(folder, "train", stats["mean"], stats["std"], augment=True)
batches = EpochBatches(len(dataset), 16, 0, 1, seed=1, shuffle=True)
loader = make_loader(dataset, batches, settings, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
batches_wanted = min(batches_wanted, len(batches) - 1)  # one epoch at most: a small set has few batches
iterator = iter(loader)
next(iterator)
start = time.perf_counter()
for _ in range(batches_wanted):
    next(iterator)
seconds = time.perf_counter() - start
pids = [worker.pid for worker in getattr(iterator, "_workers", [])]
def peak(pid):
    return next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "patches": 16 * batches_wanted, "peak_mb": peak("self") + sum(map(peak, pids))}))
"""


def loader_run(folder: Path, workers: int, batches: int) -> dict[str, float]:
    """The loader alone in its own process (its memory measured apart): seconds, patches, peak MB of all processes."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(workers), str(batches)], capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"bench/train: the loader run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def drop_caches() -> None:
    """Empty the page cache when allowed (root), so the large set is read from disk."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass


def timed_steps(loader: object, steps: int, step: object, synchronise: object) -> float:
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
            synchronise()
            start = time.perf_counter()
    synchronise()
    return time.perf_counter() - start


def training_ratio(folder: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(patches/s fed by the loader, patches/s on a resident batch), same model and device, same run."""
    import torch

    from s2ecosg.config import TrainConfig
    from s2ecosg.model.network import UNet, pick_device
    from s2ecosg.train.data import EpochBatches, PatchDataset
    from s2ecosg.train.distributed import World
    from s2ecosg.train.parts import build_parts
    from s2ecosg.train.run import make_loader, train_step

    device = pick_device(args.device)
    settings = TrainConfig(batch_size=args.batch, workers=4, device=args.device, precision=args.precision)
    stats = json.loads((folder / "stats.json").read_text())
    dataset = PatchDataset(folder, "train", stats["mean"], stats["std"], augment=True)
    loader = make_loader(dataset, EpochBatches(len(dataset), args.batch, 0, 1, 0, True), settings, device)
    parts = build_parts(UNet(args.encoder, len(BANDS), 44), settings, World("single"), device, None)
    parts.model.train()
    synchronise = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    fed = timed_steps(loader, args.steps, lambda image, label: train_step(parts, image, label, False), synchronise)
    image, label = next(iter(loader))
    resident = SimpleNamespace(image=image.to(device), label=label.to(device))
    memory = timed_steps(
        loader, args.steps, lambda *_: train_step(parts, resident.image, resident.label, False), synchronise
    )
    patches = args.steps * args.batch
    return patches / fed, patches / memory


def main() -> None:
    """Write the sets, measure, print rates, ratios and peak memory, then the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=30.0)
    parser.add_argument("--files", type=int, default=300)
    for name, default in (("batch", 16), ("steps", 10), ("loader-batches", 100)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--folder", help="where to write the sets (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 50 MB in 4 shards, resnet18, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        args.gigabytes, args.files, args.batch, args.steps, args.loader_batches = 0.05, 4, 4, 2, 4
        args.encoder = "resnet18"
    scratch = Path(args.folder or tempfile.mkdtemp(prefix="bench-train-"))
    try:
        small, large = scratch / "small", scratch / "large"
        start = time.perf_counter()
        count = write_set(large, args.gigabytes, args.files)
        written = time.perf_counter() - start
        small_gigabytes = min(0.5, args.gigabytes / 4)
        small_count = write_set(small, small_gigabytes, min(10, args.files))
        print(
            f"shard set: {count} patches of {PATCH}² × {len(BANDS)} bands in {args.files} tile shards, "
            f"{count * PATCH_BYTES / 1e9:.1f} GB written in {written:.0f} s; small set {small_count} patches"
        )
        rates = {}
        for workers in (1, 2, 4):
            drop_caches()
            measured = loader_run(large, workers, args.loader_batches)
            if measured["patches"] <= 0:  # the loader must have read patches, or the rate measures nothing
                raise SystemExit(f"bench/train: the loader read {measured['patches']} patches")
            rates[workers] = measured["patches"] / measured["seconds"]
            print(
                f"loader only, {workers} worker(s): {rates[workers]:.0f} patches/s, "
                f"{rates[workers] * PATCH_BYTES / 1e6:.0f} MB/s, peak {measured['peak_mb']:.0f} MB (all processes)"
            )
        small_peak = loader_run(small, 4, args.loader_batches)["peak_mb"]
        drop_caches()
        large_peak = loader_run(large, 4, args.loader_batches)["peak_mb"]
        fed, memory = training_ratio(large, args)
    finally:
        if not args.folder:
            shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"training ({args.encoder}, batch {args.batch}): fed by the loader {fed:.2f} patches/s, on a resident batch "
        f"{memory:.2f} patches/s, ratio {fed / memory:.3f} (target ≥ 0.9)"
    )
    print(
        f"peak memory of the loading processes (4 workers): {small_peak:.0f} MB over {small_gigabytes:.2g} GB, "
        f"{large_peak:.0f} MB over {args.gigabytes:.3g} GB, ratio {large_peak / small_peak:.2f} (target ≤ 1.2)"
    )
    print(f"RESULT loader_over_memory {fed / memory:.3f}")
    for workers, rate in rates.items():
        print(f"RESULT loader_patches_per_s_{workers}_workers {rate:.1f}")
    print(f"RESULT peak_rss_ratio_large_over_small {large_peak / small_peak:.3f}")


if __name__ == "__main__":
    main()
