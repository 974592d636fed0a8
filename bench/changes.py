"""Benchmark of the change report (not run in CI; its ``--smoke`` size is): seconds per million cells, flat memory.

Two cover products of N × N cells on one grid (the DIRECT pair and the netCDF laid out as the cover stage writes
it: 33 fraction codes per cell in 256² chunks, zlib 4, model confidence, clear observations) are written, the new
one differing from the old in a changed patch and near-ties around it. ``s2ecosg changes`` (``change_report``:
counting in strips of rows, the JSON, the Markdown and the three-panel picture) then runs on them in a fresh
subprocess, at N and at 2N (four times the cells: the memory must not grow).

Prints ``RESULT changes_s_per_mcell`` (the report's seconds per 10⁶ cells at 2N), ``RESULT changes_rss_ratio_4x``
(peak memory at 2N over N, target ≤ 1.2) and ``RESULT ireland25_changes_s`` (IRELAND25's ≈ 6 × 10⁷ cells at
1/1800° at that rate).

Usage: python bench/changes.py [--cells 2000] [--smoke]
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

IRELAND25_CELLS = 6.0e7

CHILD = r"""
import json, sys, time
from s2ecosg.cover.change_report import change_report
from s2ecosg.cover.changes import ChangeSettings
start = time.perf_counter()
report = change_report(sys.argv[1], sys.argv[2], sys.argv[3], ChangeSettings(0.1, 0.0, 3))
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "changed": report["changed_cells"],
                  "uncertain": report["uncertain_cells"]}))
"""


def product(folder: Path, cells: int, changed: bool) -> Path:
    """A cover folder of ``cells``² cells: grassland (17) with, in the new one, a changed square and near-ties."""
    import netCDF4

    from s2ecosg.surfex import write_cover

    folder.mkdir(parents=True)
    cover = np.full((cells, cells), 17, np.uint8)
    quarter = slice(cells // 4, cells // 2)
    if changed:
        cover[quarter, quarter] = 12  # a forest where there was grassland: lead 0.6
        cover[cells // 2 : cells // 2 + 8, :] = 20  # a band of near-ties: lead 0.02
    west, north, step = 10.0, 55.0, 1 / 1800
    write_cover(folder / "C", cover, (west, north - cells * step, west + cells * step, north), "bench")
    with netCDF4.Dataset(folder / "C.nc", "w") as dataset:
        for name, size in (("cover_class", 33), ("lat", cells), ("lon", cells)):
            dataset.createDimension(name, size)
        chunk = (min(256, cells), min(256, cells))
        fraction = dataset.createVariable(
            "fraction", "u1", ("cover_class", "lat", "lon"), zlib=True, complevel=4, chunksizes=(1, *chunk)
        )
        for other in ("model_confidence", "clear_observations", "cover"):
            dataset.createVariable(other, "u1", ("lat", "lon"), zlib=True, complevel=4, chunksizes=chunk)
        for first in range(0, cells, 256):
            rows = slice(first, min(first + 256, cells))
            block = cover[rows]
            shares = np.zeros((33, *block.shape), np.uint8)
            for value, lead in ((17, 250), (12, 200), (20, 130)):
                shares[value - 1][block == value] = lead
            shares[16][block == 12] = 50
            shares[16][block == 20] = 120
            fraction[:, rows, :] = shares
            dataset["model_confidence"][rows, :] = np.full(block.shape, 200, np.uint8)
            dataset["clear_observations"][rows, :] = np.full(block.shape, 6, np.uint8)
            dataset["cover"][rows, :] = block
    return folder


def measure(old: Path, new: Path, out: Path) -> dict[str, float]:
    """The change report in its own process."""
    result = subprocess.run([sys.executable, "-c", CHILD, str(old), str(new), str(out)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"bench/changes: the report failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Write the products, time the reports, print the figures and the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000, help="edge of the smaller grid in cells")
    parser.add_argument("--smoke", action="store_true", help="seconds: 300² and 600² cells")
    args = parser.parse_args()
    if args.smoke:
        args.cells = 300
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        runs = {}
        for size in (args.cells, 2 * args.cells):
            start = time.perf_counter()
            old, new = product(folder / f"old{size}", size, False), product(folder / f"new{size}", size, True)
            written = time.perf_counter() - start
            runs[size] = measure(old, new, folder / f"report{size}")
            report = runs[size]
            print(
                f"{size}² cells: written in {written:.1f} s, report {report['seconds']:.2f} s, peak {report['peak_mb']:.0f} MB"
            )
    small, large = runs[args.cells], runs[2 * args.cells]
    expected = (2 * args.cells // 2 - 2 * args.cells // 4) ** 2  # the changed square at 2N
    if large["changed"] != expected or large["uncertain"] != 8 * 2 * args.cells:
        raise SystemExit(
            f"bench/changes: counted {large['changed']} / {large['uncertain']}, made {expected} / {16 * args.cells}"
        )
    per_mcell = large["seconds"] / ((2 * args.cells) ** 2 / 1e6)
    print(f"report: {per_mcell:.3f} s per 10⁶ cells; memory at 4× the cells {large['peak_mb'] / small['peak_mb']:.2f}×")
    print(f"IRELAND25 (≈ 6 × 10⁷ cells at 1/1800°): ≈ {per_mcell * IRELAND25_CELLS / 1e6:.0f} s on one core")
    print(f"RESULT changes_s_per_mcell {per_mcell:.4f}")
    print(f"RESULT changes_rss_ratio_4x {large['peak_mb'] / small['peak_mb']:.3f}")
    print(f"RESULT ireland25_changes_s {per_mcell * IRELAND25_CELLS / 1e6:.1f}")


if __name__ == "__main__":
    main()
