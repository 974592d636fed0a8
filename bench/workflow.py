"""A country measured, not projected: the whole workflow on ≥ 100 grid tiles, then a nightly rerun (not in CI).

An archive in the real Sentinel-2 layout is built from the real Brandenburg bands (``data/demo``): one MGRS tile
of 109.8 km (T33UUU's UTM grid), every band a JPEG 2000 file coded in 1024² tiles with 6 resolutions as ESA codes
them (10980² px at 10 m, 5490² at 20 m), a synthetic Sen2Cor SCL, two dates; CORINE-like labels (grid codes 1..44
in 2 km patches, 100 m) over it. The real workflow then runs with ``profiles/local`` end to end (10 km grid tiles in
5 × 5-tile blocks: ≈ 140 tiles, ≈ 12 000 km²; ResNet-18, the smallest encoder, trained for a few steps: this is a
CPU machine), then a nightly rerun (``--forcerun inventory``, as ``s2ecosg nightly`` runs it, predict-only with the
bundle just trained: a service trains once) with one new scene covering the north-west quarter. Snakemake's
benchmark files give each job's wall and CPU seconds and peak memory; its log gives when each job ran, so its own
time (DAG builds, checkpoint re-evaluation, scheduling) is the run's wall time when no job was running.

Prints per stage: jobs, wall and CPU seconds per 100 km², peak memory per job, files and bytes written; for the
night: which jobs reran and their cost. Then ``RESULT workflow_s_per_100km2``, ``RESULT snakemake_overhead_share``,
``RESULT nightly_rerun_share`` (the night's wall over the full run's), ``RESULT files_per_100km2`` and ``RESULT
disk_mb_per_100km2``.

Usage: python bench/workflow.py [--keep DIR] [--pixels 10980] [--smoke]
(``--smoke``: an MGRS tile of 1 098 px, 5 km grid tiles: the same run, in a few minutes.)
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "demo" / "brandenburg" / "IMG_DATA"
SCENE = "T33UUU_20170216T102101"
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
ORIGIN = (300000.0, 5900040.0)  # T33UUU's upper-left corner in EPSG:32633
DATES = ("20170216", "20170226")
NIGHT = "20170308"
WORKFLOW = ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml")


def band_file(folder: Path, date: str, band: str, pixels: int, quarter: bool = False) -> None:
    """One band of one date in the real layout: the Brandenburg pixels tiled over the MGRS tile, JPEG 2000 tiles."""
    import rasterio
    from affine import Affine

    resolution = 20 if band == "SCL" else BANDS[band]
    size = pixels * 10 // resolution // (2 if quarter else 1)
    target = folder / f"T33UUU_{date}T102101_{band}{'_20m' if band == 'SCL' else ''}.jp2"
    if band == "SCL":
        index_rows, index_columns = np.indices((size, size))
        image = np.where((index_rows // 300 + index_columns // 300) % 7 == 0, 9, 4).astype(np.uint8)  # clouds: 9
    else:
        with rasterio.open(SOURCE / f"{SCENE}_{band}.jp2") as source:
            pixels_read = source.read(1)
        image = np.tile(pixels_read, (size // pixels_read.shape[0] + 1, size // pixels_read.shape[1] + 1))[:size, :size]
    profile = {"driver": "JP2OpenJPEG", "width": size, "height": size, "count": 1, "dtype": image.dtype.name}
    profile |= {"crs": "EPSG:32633", "transform": Affine(resolution, 0, ORIGIN[0], 0, -resolution, ORIGIN[1])}
    options = {"BLOCKXSIZE": 1024, "BLOCKYSIZE": 1024, "RESOLUTIONS": 6, "QUALITY": 25 if band != "SCL" else 100}
    with rasterio.open(target, "w", **profile, **options) as destination:
        destination.write(image, 1)


def archive(folder: Path, pixels: int) -> None:
    """The two dates of the MGRS tile (the second a copy under another date) and the night's quarter scene."""
    first = folder / "archive"
    first.mkdir(parents=True, exist_ok=True)
    for band in [*BANDS, "SCL"]:
        if not list(first.glob(f"T33UUU_{DATES[0]}*_{band}*.jp2")):
            band_file(first, DATES[0], band, pixels)
        for path in first.glob(f"T33UUU_{DATES[0]}*_{band}*.jp2"):
            copy = first / path.name.replace(DATES[0], DATES[1])
            if not copy.exists():
                shutil.copy(path, copy)
    night = folder / "night"
    night.mkdir(exist_ok=True)
    for band in [*BANDS, "SCL"]:
        if not list(night.glob(f"*_{band}*.jp2")):
            band_file(night, NIGHT, band, pixels, quarter=True)


def labels(folder: Path, bounds: tuple[float, float, float, float]) -> Path:
    """CORINE-like grid codes 1..44 in 2 km patches at 100 m over a box in EPSG:3035."""
    import rasterio
    from affine import Affine

    path = folder / "labels.tif"
    if path.exists():
        return path
    left, bottom, right, top = (round(value, -3) for value in bounds)
    width, height = int((right - left) // 100) + 20, int((top - bottom) // 100) + 20
    index_rows, index_columns = np.indices((height, width))
    values = (1 + (index_rows // 20 * 7 + index_columns // 20) % 44).astype(np.uint8)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8", "nodata": 0}
    profile |= {
        "crs": "EPSG:3035",
        "transform": Affine(100, 0, left - 1000, 0, -100, top + 1000),
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as destination:
        destination.write(values, 1)
    return path


def extent(pixels: int) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """The MGRS tile's box in EPSG:3035 and in degrees."""
    from rasterio.warp import transform_bounds

    box = (ORIGIN[0], ORIGIN[1] - pixels * 10, ORIGIN[0] + pixels * 10, ORIGIN[1])
    return transform_bounds("EPSG:32633", "EPSG:3035", *box), transform_bounds("EPSG:32633", "EPSG:4326", *box)


def run_config(folder: Path, pixels: int, smoke: bool) -> Path:
    """The run's config: the archive, the labels, a short training of the smallest encoder, a cover of the box."""
    projected, degrees = extent(pixels)
    tile = 5000 if smoke else 10000
    config = {
        "run": {"name": "country"},
        "domain": {"bbox": [round(value, 4) for value in degrees]},
        "grid": {"crs": "EPSG:3035", "resolution": 10, "tile_size": tile, "block_tiles": 5},
        "imagery": {"paths": ["archive/*.jp2"], "cloud_mask": "scl"},
        "labels": {"path": str(labels(folder, projected)), "legend": "clc_grid_code"},
        "shards": {"patch": 64, "stride": 64, "val_fraction": 0.2, "block_size": 2 * tile, "min_labelled": 0.5},
        "model": {"encoder": "resnet18"},
        "train": {"epochs": 1, "steps_per_epoch": 2 if smoke else 10, "batch_size": 8, "workers": 1},
        "predict": {"window": 64 if smoke else 256, "overlap": 32, "batch_size": 8},
        "cover": {"basename": "COUNTRY", "resolution_deg": "1/1800", "max_empty_fraction": 1.0},
    }
    import yaml

    path = folder / "country.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def night_config(folder: Path) -> None:
    """The run's config, predict-only with the bundle the full run trained (``model.bundle``)."""
    import yaml

    config = yaml.safe_load((folder / "country.yaml").read_text())
    config["model"]["bundle"] = "results/country/model"
    (folder / "country.yaml").write_text(yaml.safe_dump(config))


TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_intervals(log: str) -> dict[str, tuple[float, float, str]]:
    """Job id → (start, end, rule) from Snakemake's log (a time stamp line before each start and each end)."""
    jobs: dict[str, list] = {}
    moment, rule = 0.0, ""
    for line in log.splitlines():
        found = TIMESTAMP.match(line.strip())
        if found:
            moment = dt.datetime.strptime(found.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
            continue
        stripped = line.strip()
        started = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", stripped)
        if started:
            rule = started.group(1)
        elif stripped.startswith("jobid: ") and rule:
            jobs[stripped.split()[1]] = [moment, moment, rule]
            rule = ""
        finished = re.match(r"^Finished jobid: (\d+)", stripped)
        if finished and finished.group(1) in jobs:
            jobs[finished.group(1)][1] = moment
    return {job: (start, end, rule) for job, (start, end, rule) in jobs.items()}


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval."""
    total, reach = 0.0, -1.0
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def snakemake(folder: Path, *arguments: str) -> tuple[float, str]:
    """Run the workflow in ``folder``; (wall seconds, Snakemake's log)."""
    command = [str(Path(sys.executable).with_name("snakemake")), "--profile", "profiles/local", "--cores", "2"]
    command += ["--configfile", "country.yaml", *arguments]
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=6 * 3600)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"bench/workflow: the run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return wall, result.stdout + result.stderr


def benchmarks(folder: Path) -> dict[str, dict[str, float]]:
    """Per stage (the folder of its benchmark files): jobs, wall and CPU seconds summed, the largest peak memory."""
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0, "rss": 0.0})
    for path in sorted((folder / "benchmarks" / "country").rglob("*.tsv")):
        stage = path.parent.name if path.parent.name != "country" else path.stem
        with path.open() as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                figures = stages[stage]
                figures["jobs"] += 1
                figures["wall"] += float(row["s"])
                figures["cpu"] += float(row.get("cpu_time") or 0)
                figures["rss"] = max(figures["rss"], float(row.get("max_rss") or 0))
    return dict(stages)


def written(folder: Path) -> dict[str, tuple[int, int]]:
    """Per stage folder of ``results/country``: (files, bytes)."""
    found = {}
    for stage in sorted((folder / "results" / "country").iterdir()):
        files = [path for path in stage.rglob("*") if path.is_file()] if stage.is_dir() else [stage]
        found[stage.name] = (len(files), sum(path.stat().st_size for path in files))
    return found


def measured_run(folder: Path, *arguments: str) -> dict[str, object]:
    """One run: wall, Snakemake's own share, the jobs by rule, the benchmark figures per stage."""
    wall, log = snakemake(folder, *arguments)
    intervals = job_intervals(log)
    busy = busy_seconds([(start, end) for start, end, _ in intervals.values()])
    rules: dict[str, int] = defaultdict(int)
    for _, _, rule in intervals.values():
        rules[rule] += 1
    return {"wall": wall, "busy": busy, "rules": dict(rules), "stages": benchmarks(folder)}


def main() -> None:
    """Build the archive and the labels, run the workflow and the night, print the figures and the RESULT lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="folder to build in and keep (the archive is reused)")
    parser.add_argument("--pixels", type=int, default=10980, help="MGRS tile edge in 10 m pixels")
    parser.add_argument("--smoke", action="store_true", help="an MGRS tile of 1 098 px and 5 km grid tiles")
    args = parser.parse_args()
    if args.smoke:
        args.pixels = 1098
    with tempfile.TemporaryDirectory(prefix="s2ecosg-country-") as scratch:
        folder = (args.keep or Path(scratch)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        archive(folder, args.pixels)
        print(f"archive (2 dates + the night's quarter scene) ready in {time.perf_counter() - start:.0f} s", flush=True)
        for name in WORKFLOW:
            shutil.rmtree(folder / name, ignore_errors=True)
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, folder / name)
        for stale in ("results", "logs", "benchmarks", ".snakemake"):
            shutil.rmtree(folder / stale, ignore_errors=True)
        for path in (folder / "archive").glob(f"*{NIGHT}*"):
            path.unlink()
        run_config(folder, args.pixels, args.smoke)
        full = measured_run(folder)
        files = written(folder)
        for path in (folder / "night").glob("*.jp2"):
            shutil.copy(path, folder / "archive" / path.name)
        # A service trains once and predicts every night: the night's config names the trained bundle (in place, so
        # no input path changes), as s2ecosg nightly reruns it.
        night_config(folder)
        night = measured_run(folder, "--forcerun", "inventory")
        tiles = len(json.loads((folder / "results" / "country" / "stage" / "inventory.json").read_text())["tiles"])
    report(full, night, files, tiles * (5.0 if args.smoke else 10.0) ** 2)


def report(full: dict, night: dict, files: dict[str, tuple[int, int]], area: float) -> None:
    """Print per stage and for the night; refuse a run that did not do the work; the RESULT lines."""
    stages = full["stages"]
    if not all(stage in stages for stage in ("stage", "labels", "shards", "predict")) or area < 100:
        raise SystemExit(f"bench/workflow: a stage did not run ({sorted(stages)}; {area:.0f} km²)")
    per = 100.0 / area
    print(
        f"area: {area:.0f} km² of grid tiles with imagery; full run {full['wall']:.0f} s, {full['wall'] * per:.2f} s per 100 km²"
    )
    print(
        f"{'stage':<14} {'jobs':>5} {'wall s/100km2':>14} {'cpu s/100km2':>13} {'peak MB/job':>12} {'files':>7} {'MB':>9}"
    )
    for stage, figures in sorted(stages.items()):
        count, size = files.get(stage, (0, 0))
        print(
            f"{stage:<14} {figures['jobs']:>5.0f} {figures['wall'] * per:>14.3f} {figures['cpu'] * per:>13.3f} "
            f"{figures['rss']:>12.0f} {count:>7} {size / 1e6:>9.1f}"
        )
    overhead = (full["wall"] - full["busy"]) / full["wall"]
    print(
        f"Snakemake's own time (no job running: DAG builds, checkpoint, scheduling): {full['wall'] - full['busy']:.0f} s"
    )
    print(f"the night (one new scene over the north-west quarter): {night['wall']:.0f} s; jobs {night['rules']}")
    total_files = sum(count for count, _ in files.values())
    total_bytes = sum(size for _, size in files.values())
    print(f"RESULT workflow_s_per_100km2 {full['wall'] * per:.3f}")
    print(f"RESULT snakemake_overhead_share {overhead:.3f}")
    print(f"RESULT nightly_rerun_share {night['wall'] / full['wall']:.3f}")
    print(f"RESULT files_per_100km2 {total_files * per:.2f}")
    print(f"RESULT disk_mb_per_100km2 {total_bytes / 1e6 * per:.2f}")


if __name__ == "__main__":
    main()
