"""Benchmark of the patch way of the ECOSG tree (not run in CI; its ``--smoke`` size is): disk speed, flat memory.

A global-size ``ecosg_final_map`` (129 600 × 64 800 one-byte cells at 1/360°, 8.4 GB apparent) is made sparse with
``truncate``, with real data in the rows of Europe (35–72° N, a tenth of the file), so that copying it costs disk
time. Then, each in a fresh subprocess (peak memory = VmHWM):
- ``cp --sparse=auto`` of the file (what a service would do by hand);
- the patch of the file with an Ireland-sized cover on the map's own grid (the box 11–5° W, 51.3–55.5° N: 2 160 ×
  1 512 cells, every one replaced, block by block as the tree writes them): the copy, then the cells;
- the whole patch (``patch_map``: copy, aggregation of 10 m predicted pixels onto the map's grid, write) of a
  synthetic predicted tile of ``--pixels``² px in EPSG:3035 over Ireland: seconds per 100 km² of predictions.

Prints ``RESULT patch_over_copy`` (patch of the Ireland cells / ``cp``, target ≤ 1.5), ``RESULT patch_peak_rss_mb``
(target ≤ 1 000, and flat: ``RESULT patch_rss_ratio_4x`` the peak at the full size over that at a quarter of it),
``RESULT patch_s_per_100km2`` (aggregating predictions onto the map, one process) and ``RESULT
ireland_patch_s`` (Ireland's ≈ 84 000 km² on one process, from that rate, plus the copy).

Usage: python bench/tree.py [--folder DIR] [--pixels 4000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GLOBAL = (64800, 129600)  # rows, columns of ecosg_final_map at 1/360°
IRELAND_BOX = (-11.0, 51.3, -5.0, 55.5)
IRELAND_KM2 = 84000.0

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
mode, base, target, arguments = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
replaced, copied = 0, 0.0
if mode == "cells":
    import os
    from s2ecosg.cover.patch import CoverMap, write_patch
    from s2ecosg.io import copy_file
    start = time.perf_counter()  # imports apart: a tree job pays them once whatever the map's size
    cover_map = CoverMap.read(base)
    window = cover_map.window(tuple(arguments["box"]))
    copy_file(f"{base}.dir", f"{target}.dir")
    copied = time.perf_counter() - start
    handle = os.open(f"{target}.dir", os.O_RDWR)
    generator = np.random.default_rng(0)
    for block in window.blocks(256):
        cover = generator.integers(1, 34, block[2:], dtype=np.uint8)
        replaced += write_patch(handle, cover_map, window, (block, cover, np.ones(block[2:], bool)))
    os.close(handle)
else:
    from s2ecosg.config import CoverConfig
    from s2ecosg.cover.aggregate import MOST_LIKELY, CoverMapping, open_sources, pixel_area
    from s2ecosg.cover.patch import CoverMap, PatchJob, patch_map
    from s2ecosg.legend import load_legend
    start = time.perf_counter()
    cover_map = CoverMap.read(base)
    sources = open_sources([arguments["raster"]], [None])
    window = cover_map.window(sources[0].lonlat)
    mapping = CoverMapping.from_legend(load_legend("clc"), CoverConfig())
    job = PatchJob(sources, window, mapping, MOST_LIKELY, pixel_area(sources))
    replaced = patch_map(cover_map, target, job, 1, "bench")
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak / 1024, "replaced": replaced, "copy": copied}))
"""


def global_map(folder: Path, rows: int, columns: int) -> Path:
    """A sparse map of ``rows`` × ``columns`` cells spanning the globe, real data in the rows of 35–72° N."""
    from s2ecosg.surfex import header_text

    base = folder / f"ecosg_final_map_{rows}"
    step = 180.0 / rows
    with open(f"{base}.dir", "wb") as handle:
        handle.truncate(rows * columns)  # sparse: no block written yet
        first, last = round((90 - 72) / step), round((90 - 35) / step)
        line = (np.arange(columns) % 33 + 1).astype(np.uint8).tobytes()
        for row in range(first, last):
            handle.seek(row * columns)
            handle.write(line)
    Path(f"{base}.hdr").write_text(header_text("bench global map", (-180.0, -90.0, 180.0, 90.0), (rows, columns)))
    return base


def predicted_tile(folder: Path, pixels: int) -> Path:
    """A uint8 class raster (CLC ids 1..44 in 40-pixel blocks) of ``pixels``² px at 10 m in EPSG:3035 over Ireland."""
    import rasterio
    from affine import Affine

    path = folder / f"ireland_{pixels}.tif"
    index_rows, index_columns = np.indices((pixels, pixels))
    values = (1 + (index_rows // 40 * 7 + index_columns // 40) % 44).astype(np.uint8)
    profile = {"driver": "GTiff", "width": pixels, "height": pixels, "count": 1, "dtype": "uint8", "nodata": 0}
    profile |= {"crs": "EPSG:3035", "transform": Affine(10, 0, 3200000, 0, -10, 3500000), "tiled": True}
    with rasterio.open(path, "w", **profile, compress="deflate") as destination:
        destination.write(values, 1)
    return path


def measure(mode: str, base: Path, target: Path, arguments: dict[str, object]) -> dict[str, float]:
    """One measurement in its own process; the target's files removed first."""
    for suffix in (".dir", ".hdr"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    command = [sys.executable, "-c", CHILD, mode, str(base), str(target), json.dumps(arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if result.returncode:
        raise SystemExit(f"bench/tree: the {mode} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def copy_seconds(base: Path, target: Path) -> float:
    """Wall time of ``cp --sparse=auto`` of the map's ``.dir``."""
    Path(f"{target}.dir").unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(["cp", "--sparse=auto", f"{base}.dir", f"{target}.dir"], check=True)
    return time.perf_counter() - start


def main() -> None:
    """Make the maps and the tile, measure, print the figures and the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="where to write the maps (default: a temporary folder)")
    parser.add_argument("--pixels", type=int, default=4000, help="edge of the predicted tile in 10 m pixels")
    parser.add_argument("--smoke", action="store_true", help="seconds: a map of 1/16 the size, a 500² px tile")
    args = parser.parse_args()
    rows, columns = GLOBAL if not args.smoke else (GLOBAL[0] // 4, GLOBAL[1] // 4)
    if args.smoke:
        args.pixels = 500
    with tempfile.TemporaryDirectory(dir=args.folder) as scratch:
        folder = Path(scratch)
        full, quarter = global_map(folder, rows, columns), global_map(folder, rows // 2, columns // 2)
        target = folder / "patched"
        copied = min(copy_seconds(full, target) for _ in range(2))
        cells = measure("cells", full, target, {"box": IRELAND_BOX})
        cells_quarter = measure("cells", quarter, target, {"box": IRELAND_BOX})
        whole = measure("whole", full, target, {"raster": str(predicted_tile(folder, args.pixels))})
    report(rows, columns, args.pixels, copied, cells, cells_quarter, whole)


def report(rows: int, columns: int, pixels: int, copied: float, cells: dict, quarter: dict, whole: dict) -> None:
    """Print the figures and the RESULT lines; refuse runs that did no work."""
    if cells["replaced"] <= 0 or whole["replaced"] <= 0:
        raise SystemExit(f"bench/tree: nothing was patched ({cells['replaced']}, {whole['replaced']} cells)")
    size_gb = rows * columns / 1e9
    area_km2 = (pixels * 10 / 1000) ** 2
    per_100km2 = (whole["seconds"] - cells["copy"]) / area_km2 * 100
    print(f"map: {rows} × {columns} cells ({size_gb:.2f} GB apparent, real data in 35-72° N)")
    print(f"cp --sparse=auto: {copied:.2f} s ({size_gb / max(copied, 1e-9):.1f} GB/s apparent)")
    print(
        f"patch of Ireland's {cells['replaced']} cells: {cells['seconds']:.2f} s (copy {cells['copy']:.2f} s + cells), "
        f"peak {cells['peak_mb']:.0f} MB; at a quarter of the map {quarter['peak_mb']:.0f} MB"
    )
    print(
        f"whole patch of a {pixels}² px tile ({area_km2:.0f} km², {whole['replaced']} cells replaced): "
        f"{whole['seconds']:.2f} s, {per_100km2:.3f} s per 100 km² beyond the copy, peak {whole['peak_mb']:.0f} MB"
    )
    ireland = IRELAND_KM2 / 100 * per_100km2 + cells["seconds"]
    print(f"Ireland on one process: ≈ {ireland:.0f} s (aggregation at this rate + the copy and the cells)")
    print(f"RESULT patch_over_copy {cells['seconds'] / copied:.3f}")
    print(f"RESULT patch_peak_rss_mb {max(cells['peak_mb'], whole['peak_mb']):.1f}")
    print(f"RESULT patch_rss_ratio_4x {cells['peak_mb'] / quarter['peak_mb']:.3f}")
    print(f"RESULT patch_s_per_100km2 {per_100km2:.4f}")
    print(f"RESULT ireland_patch_s {ireland:.1f}")


if __name__ == "__main__":
    main()
