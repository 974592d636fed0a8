"""Benchmark of the cover stage (not run in CI): Mpx/s per core, parallel efficiency, memory at 4× the input.

Writes a synthetic class raster (EPSG:3035, 10 m, blocks of classes) of N × N pixels and runs the whole cover
stage (``run_cover``: aggregation and every writer) on it in a fresh subprocess (GDAL's cache bounded as the stage bounds it),
once with one process and once with ``--workers`` processes, then with one process on 2N × 2N (4× the pixels).
Prints Mpx/s per core (``RESULT mpx_per_s_per_core``), the parallel efficiency t₁ / (workers · t_workers) on
the 4× raster (``RESULT parallel_efficiency``; 4 × 10⁸ px at the default, half of Ireland, where the ≈ 2 s the
stage spends outside the blocks (imports, file layout, the PNG) weigh as they do on a country) and on the 1×
raster (``RESULT parallel_efficiency_1x``), the peak RSS of the 1× and 4× runs and their ratio (``RESULT
peak_rss_ratio_4x``) and the projected wall time of Ireland's ≈ 8.4 × 10⁸ px on 16 cores. Then the block
aggregation alone (no files written) on the N² raster, once as the cover stage runs it (a loop over the output
blocks) and once as a dask graph of the same blocks on the threaded scheduler (``RESULT dask_over_loop``). Last, one
ensemble member drawn from a top-2 raster of the N² raster (``RESULT member_over_cover``, ``RESULT
member_s_per_100km2_per_core``).

Usage: python bench/aggregate.py [--pixels 10000] [--workers 2] [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import open_sources
from s2ecosg.cover.run import CoverRequest, run_cover
from s2ecosg.legend import load_legend
from s2ecosg.cover.aggregate import MOST_LIKELY
from s2ecosg.cover.members import MemberDraw
path, base, workers, member = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "member"
start = time.perf_counter()
# The grid from a box, as from a HARMONIE domain in production (no scan of the predicted pixels for their extent).
domain = DomainConfig(bbox=list(open_sources([path], [None])[0].lonlat))
reader = MemberDraw(1, 500.0, 0) if member else MOST_LIKELY
counts = run_cover(CoverRequest([path], load_legend("clc"), CoverConfig(), domain, base, {"s2ecosg_version": "bench"},
                                 workers=workers, reader=reader))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024, "predicted": counts["predicted"]}))
"""


BLOCKS = r"""
import json, sys, time
import dask
from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import CoverMapping, aggregate_block, open_sources
from s2ecosg.cover.cells import block_values
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.run import BLOCK_CELLS, output_grid
from s2ecosg.legend import load_legend
path, mode = sys.argv[1], sys.argv[2]
settings = CoverConfig()
sources = open_sources([path], [None])
grid, _ = output_grid(settings, DomainConfig(), sources)
mapping, filler = CoverMapping.from_legend(load_legend("clc"), settings), GapFiller(None, None, 1)
blocks = list(grid.blocks(BLOCK_CELLS))
start = time.perf_counter()
def cells(block):
    return int(block_values(aggregate_block(sources, grid, block, mapping), grid, block, filler)["cover"].size)
if mode == "loop":
    cells = sum(cells(block) for block in blocks)
else:
    tasks = [dask.delayed(cells)(block) for block in blocks]
    cells = sum(dask.compute(*tasks, scheduler="threads"))
print(json.dumps({"seconds": time.perf_counter() - start, "cells": cells}))
"""


ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def blocks_alone(path: Path, mode: str) -> float:
    """Seconds of the block aggregation alone, as a loop (``loop``) or a dask graph on threads (``dask``)."""
    environment = dict(os.environ, GDAL_CACHEMAX="64")
    output = subprocess.run(
        [sys.executable, "-c", BLOCKS, str(path), mode], env=environment, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])["seconds"]


def write_classes(path: Path, pixels: int) -> None:
    """A uint8 class raster of pixels × pixels with 40-pixel blocks of ids 1..44, written window by window."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "width": pixels,
        "height": pixels,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:3035",
        "transform": Affine(10, 0, 3000000, 0, -10, 3300000),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "YES",
    }
    with rasterio.open(path, "w", **profile) as destination:
        for row in range(0, pixels, 2048):
            rows = min(2048, pixels - row)
            index_rows, index_cols = np.indices((rows, pixels))
            values = 1 + ((index_rows + row) // 40 * 7 + index_cols // 40) % 44
            destination.write(values.astype(np.uint8), 1, window=Window(0, row, pixels, rows))


def measure(path: Path, base: Path, workers: int = 1, member: bool = False) -> dict[str, float]:
    """Run the cover stage in its own process (one BLAS thread; GDAL cache as the stage sets it): seconds, peak RSS.

    With ``member``, ``path`` is a top-2 raster and the run draws ensemble member 1 (L = 500 m) from it.
    """
    environment = dict(os.environ, **ONE_THREAD)
    output = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(base), str(workers), "member" if member else "cover"],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
        timeout=7200,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


IRELAND_PIXELS = 8.4e8  # ≈ 84 000 km² at 10 m


def write_top2(classes: Path, path: Path) -> None:
    """A top-2 raster beside a class raster: its class at 150/255, the next class id at 100/255 (block by block)."""
    import rasterio

    with rasterio.open(classes) as source:
        profile = source.profile | {"count": 4}
        with rasterio.open(path, "w", **profile) as destination:
            for _, window in source.block_windows(1):
                ids = source.read(1, window=window)
                others = np.where(ids > 0, ids % 44 + 1, 0)
                top2 = np.stack([ids, np.where(ids > 0, 150, 0), others, np.where(ids > 0, 100, 0)])
                destination.write(top2.astype(np.uint8), window=window)


def raster(folder: Path, pixels: int) -> Path:
    """The synthetic class raster of pixels², written once."""
    path = folder / f"classes_{pixels}.tif"
    start = time.perf_counter()
    if not path.exists():
        write_classes(path, pixels)
    print(f"{pixels}² px raster ready in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def report(label: str, pixels: int, result: dict[str, float]) -> float:
    """Print one run; return its Mpx/s."""
    rate = pixels * pixels / result["seconds"] / 1e6
    print(f"{label}: {result['seconds']:.1f} s, {rate:.2f} Mpx/s, peak {result['peak_mb']:.0f} MB", flush=True)
    return rate


def main() -> None:
    """Run the sizes and worker counts and print the rates, the efficiency and the memory ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", help="folder for the rasters (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 500² px")
    args = parser.parse_args()
    if args.smoke:
        args.pixels = 1500
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        small, large = raster(folder, args.pixels), raster(folder, 2 * args.pixels)
        one = measure(small, folder / "ONE")
        rate = report(f"{args.pixels}² px, 1 process", args.pixels, one)
        many = measure(small, folder / "MANY", args.workers)
        report(f"{args.pixels}² px, {args.workers} processes", args.pixels, many)
        big = measure(large, folder / "BIG")
        report(f"{2 * args.pixels}² px, 1 process", 2 * args.pixels, big)
        many_big = measure(large, folder / "MANYBIG", args.workers)
        report(f"{2 * args.pixels}² px, {args.workers} processes", 2 * args.pixels, many_big)
        top2 = folder / f"classes_{args.pixels}.top2.tif"
        if not top2.exists():
            write_top2(small, top2)
        member = measure(top2, folder / "MEMBER", member=True)
        report(f"{args.pixels}² px, one ensemble member, 1 process", args.pixels, member)
        loop, threaded = blocks_alone(small, "loop"), blocks_alone(small, "dask")
        print(
            f"blocks alone: loop {args.pixels**2 / loop / 1e6:.2f} Mpx/s, dask threads {args.pixels**2 / threaded / 1e6:.2f} Mpx/s"
        )
    runs = (one, many, big, many_big, member)
    if not all(run["predicted"] > 0 for run in runs):  # each run must have made cells from predicted pixels
        raise SystemExit(f"bench/aggregate: a run made no predicted cell: {[run['predicted'] for run in runs]}")
    small_efficiency = one["seconds"] / (args.workers * many["seconds"])
    efficiency = big["seconds"] / (args.workers * many_big["seconds"])
    ratio = big["peak_mb"] / one["peak_mb"]
    ireland = IRELAND_PIXELS / (rate * 1e6 * 16 * efficiency)
    print(f"parallel efficiency at {args.pixels}² px {small_efficiency:.3f}, at {2 * args.pixels}² px {efficiency:.3f}")
    print(f"peak memory ratio 4× input / 1× input: {ratio:.2f} (target ≤ 1.2)")
    print(f"Ireland (8.4e8 px) on 16 cores at this rate and efficiency: {ireland:.0f} s (target ≤ 60)")
    print(f"RESULT mpx_per_s_per_core {rate:.2f}")
    print(f"RESULT parallel_efficiency {efficiency:.3f}")
    print(f"RESULT parallel_efficiency_1x {small_efficiency:.3f}")
    print(f"RESULT peak_rss_ratio_4x {ratio:.3f}")
    print(f"RESULT ireland_16_cores_s {ireland:.1f}")
    print(f"RESULT dask_over_loop {loop / threaded:.3f}")
    square_km = args.pixels**2 * 1e-4  # 10 m pixels
    print(f"RESULT member_over_cover {member['seconds'] / one['seconds']:.3f}")
    print(f"RESULT member_s_per_100km2_per_core {member['seconds'] / square_km * 100:.4f}")


if __name__ == "__main__":
    main()
