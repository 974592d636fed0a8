"""Benchmark of the cover aggregation (not run in CI): Mpx/s and peak memory, and memory at 4× the input.

Writes a synthetic class raster (EPSG:3035, 10 m, blocks of classes) of N × N pixels, aggregates it to the
output grid (1/1800°) with ``run_cover`` in a fresh subprocess with a bounded ``GDAL_CACHEMAX``, then does
the same for 2N × 2N (4× the pixels). Prints Mpx/s, peak RSS of each run and their ratio (target ≤ 1.2).
Then the block aggregation alone (no files written) on the N² raster, once as the cover stage runs it (a loop
over the output blocks) and once as a dask graph of the same blocks on the threaded scheduler: the ratio says
whether dask would be faster for this domain-wide reduction (``RESULT dask_over_loop``).

Usage: python bench/aggregate.py [--pixels 20000] [--keep DIR]
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
from s2ecosg.cover.run import run_cover
from s2ecosg.legend import load_legend
path, base = sys.argv[1], sys.argv[2]
start = time.perf_counter()
run_cover([path], [None], load_legend("clc"), CoverConfig(climate="temperate"), DomainConfig(), base,
          {"s2ecosg_version": "bench"})
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024}))
"""


BLOCKS = r"""
import json, sys, time
import dask
from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import CoverMapping, open_sources
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.run import BLOCK_CELLS, block_values, output_grid
from s2ecosg.legend import load_legend
path, mode = sys.argv[1], sys.argv[2]
settings = CoverConfig(climate="temperate")
sources = open_sources([path], [None])
grid, _ = output_grid(settings, DomainConfig(), sources)
mapping, filler = CoverMapping.from_legend(load_legend("clc"), settings), GapFiller(None, None, 1)
blocks = list(grid.blocks(BLOCK_CELLS))
start = time.perf_counter()
if mode == "loop":
    cells = sum(int(block_values(sources, grid, block, mapping, filler)["cover"].size) for block in blocks)
else:
    tasks = [dask.delayed(lambda block: int(block_values(sources, grid, block, mapping, filler)["cover"].size))(block)
             for block in blocks]
    cells = sum(dask.compute(*tasks, scheduler="threads"))
print(json.dumps({"seconds": time.perf_counter() - start, "cells": cells}))
"""


def blocks_alone(path: Path, mode: str) -> float:
    """Seconds of the block aggregation alone, as a loop (``loop``) or a dask graph on threads (``dask``)."""
    environment = dict(os.environ, GDAL_CACHEMAX="256")
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


def measure(path: Path, base: Path) -> dict[str, float]:
    """Run the aggregation in its own process (GDAL_CACHEMAX = 256 MB) and return time and peak RSS."""
    environment = dict(os.environ, GDAL_CACHEMAX="256")
    output = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(base)],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
        timeout=7200,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Run both sizes and print the rates and the memory ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=20000)
    parser.add_argument("--keep", help="folder for the rasters (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for pixels in (args.pixels, 2 * args.pixels):
            path = folder / f"classes_{pixels}.tif"
            start = time.perf_counter()
            if not path.exists():
                write_classes(path, pixels)
            print(f"{pixels}² px raster ready in {time.perf_counter() - start:.0f} s", flush=True)
            results[pixels] = measure(path, folder / f"BENCH{pixels}")
            rate = pixels * pixels / results[pixels]["seconds"] / 1e6
            print(
                f"{pixels}² px: {results[pixels]['seconds']:.1f} s, {rate:.2f} Mpx/s, peak {results[pixels]['peak_mb']:.0f} MB",
                flush=True,
            )
            if pixels == args.pixels:
                loop, threaded = blocks_alone(path, "loop"), blocks_alone(path, "dask")
                print(
                    f"blocks alone: loop {pixels**2 / loop / 1e6:.2f} Mpx/s, dask threads {pixels**2 / threaded / 1e6:.2f} Mpx/s"
                )
    ratio = results[2 * args.pixels]["peak_mb"] / results[args.pixels]["peak_mb"]
    print(f"peak memory ratio 4× input / 1× input: {ratio:.2f} (target ≤ 1.2)")
    print(f"RESULT dask_over_loop {loop / threaded:.3f}")
    print(f"RESULT peak_rss_ratio_4x {ratio:.3f}")


if __name__ == "__main__":
    main()
