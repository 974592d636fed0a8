"""A whole country: the DAG of an Ireland-sized run, in job blocks, and one block of it run for real.

The archive holds one 10-band GeoTIFF stack per Sentinel-2 tile and date, 10980² px at 10 m on the UTM 100 km grid
of zones 29N and 30N over Ireland (as Sentinel-2 tiles lie: 109.8 km squares on 100 km steps, each in the zone of
its longitude). The stacks are sparse: no pixel block is written, so a file is a few KB and reads as no data. The
100 km square letters in the names are positions, not the real MGRS letters (the zone and latitude band are real).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import rasterio
import yaml
from affine import Affine
from conftest import ROOT, run

pytestmark = pytest.mark.timeout(600)
SNAKEMAKE = ["snakemake", "--profile", "profiles/local", "--cores", "2"]
BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
DATES = ["20230611", "20230716"]
ISLAND = (-10.7, 51.4, -5.4, 55.45)  # lon/lat box of the island of Ireland
SIZE = 10980


def utm_tiles() -> list[tuple[int, int, int]]:
    """(zone, upper-left easting, upper-left northing) of the tiles reaching the island, centre in their zone."""
    from rasterio.warp import transform, transform_bounds

    tiles = []
    for zone in (29, 30):
        crs = f"EPSG:{32600 + zone}"
        west, south, east, north = transform_bounds("EPSG:4326", crs, *ISLAND, densify_pts=51)
        for easting in range(100000, 900000, 100000):
            for northing in range(5700000, 6300000, 100000):
                left, top = easting - 40, northing
                if not (left + SIZE * 10 > west and left < east and top > south and top - SIZE * 10 < north):
                    continue
                longitude = transform(crs, "EPSG:4326", [left + SIZE * 5], [top - SIZE * 5])[0][0]
                if -6 * (31 - zone) <= longitude < -6 * (30 - zone):
                    tiles.append((zone, left, top))
    return tiles


def write_archive(folder: Path) -> int:
    """The sparse stacks, one per tile and date; returns the number of Sentinel-2 tiles."""
    folder.mkdir()
    tiles = utm_tiles()
    for index, (zone, left, top) in enumerate(tiles):
        name = f"T{zone}U{chr(65 + index // 20)}{chr(65 + index % 20)}"
        profile = dict(
            driver="GTiff",
            width=SIZE,
            height=SIZE,
            count=len(BANDS),
            dtype="uint16",
            nodata=0,
            crs=f"EPSG:{32600 + zone}",
            transform=Affine(10, 0, left, 0, -10, top),
            tiled=True,
            blockxsize=1024,
            blockysize=1024,
            compress="deflate",
            sparse_ok=True,
        )
        for date in DATES:
            with rasterio.open(folder / f"S2A_{name}_{date}_stack.tif", "w", **profile) as stack:
                for band, description in enumerate(BANDS, start=1):
                    stack.set_band_description(band, description)
    return len(tiles)


def write_labels(path: Path) -> None:
    """CORINE code 211 (arable land) over the island's box, 100 m in EPSG:3035."""
    import numpy as np
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds("EPSG:4326", "EPSG:3035", *ISLAND, densify_pts=51)
    width, height = int((right - left) // 100), int((top - bottom) // 100)
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8", nodata=0, crs="EPSG:3035")
    profile.update(transform=Affine(100, 0, left, 0, -100, top), compress="deflate", tiled=True)
    with rasterio.open(path, "w", **profile) as labels:
        labels.write(np.full((1, height, width), 211, dtype=np.uint8))


@pytest.fixture(scope="module")
def ireland(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A workflow folder with the Ireland archive, labels and config; the inventory run. Returns it and #tiles."""
    import shutil

    folder = tmp_path_factory.mktemp("ireland")
    for name in ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, folder / name)
    count = write_archive(folder / "archive")
    write_labels(folder / "clc.tif")
    config = {
        "run": {"name": "ireland"},
        "domain": {"name": "IRELAND25"},
        "imagery": {"paths": ["archive/*_stack.tif"], "cloud_mask": "none"},
        "labels": {"path": "clc.tif", "legend": "clc"},
        "cover": {"basename": "S2ECOSG_IE"},
    }
    (folder / "ireland.yaml").write_text(yaml.safe_dump(config))
    run([*SNAKEMAKE, "--configfile", "ireland.yaml", "--until", "inventory"], cwd=folder, timeout=300)
    return folder, count


def job_counts(output: str) -> dict[str, int]:
    """The job stats table of a Snakemake dry run: rule → jobs."""
    table = output.split("Job stats:", 1)[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def test_an_ireland_dag_is_built_in_blocks_within_a_minute(ireland: tuple[Path, int]) -> None:
    """~30 Sentinel-2 tiles × 2 dates over IRELAND25: one stage, labels and predict job per 5 × 5-tile block."""
    from s2ecosg.grid import TargetGrid

    folder, sentinel_tiles = ireland
    inventory = json.loads((folder / "results" / "ireland" / "stage" / "inventory.json").read_text())
    tiles = list(inventory["tiles"])
    blocks = {TargetGrid().block_of(tile, 5) for tile in tiles}
    assert 20 <= sentinel_tiles <= 40 and len(inventory["scenes"]) == 2 * sentinel_tiles
    assert len(tiles) > 2000  # the footprints of the Sentinel-2 tiles in 10 km grid tiles
    start = time.perf_counter()
    dry = run([*SNAKEMAKE, "--configfile", "ireland.yaml", "-n"], cwd=folder, timeout=300)
    seconds = time.perf_counter() - start
    counts = job_counts(dry.stdout + dry.stderr)
    print(f"{len(tiles)} grid tiles, {len(blocks)} blocks; DAG in {seconds:.1f} s; jobs {counts}")
    assert counts["stage_block"] == counts["labels_block"] == counts["predict_block"] == len(blocks)
    assert counts["shards_block"] == len(blocks) and len(blocks) < len(tiles) / 10
    assert counts["shards_index"] == counts["train"] == counts["cover"] == 1
    assert seconds <= 60


def test_one_block_of_ireland_runs(ireland: tuple[Path, int]) -> None:
    """One block's stage and labels jobs run for real: every tile of it staged, its manifest lists them."""
    from s2ecosg.grid import TargetGrid

    folder, _ = ireland
    inventory = json.loads((folder / "results" / "ireland" / "stage" / "inventory.json").read_text())
    by_block: dict[str, list[str]] = {}
    for tile in inventory["tiles"]:
        by_block.setdefault(TargetGrid().block_of(tile, 5), []).append(tile)
    block = min(by_block, key=lambda name: (len(by_block[name]), name))
    targets = [f"results/ireland/stage/blocks/{block}.json", f"results/ireland/labels/blocks/{block}.json"]
    run([*SNAKEMAKE, *targets, "--configfile", "ireland.yaml"], cwd=folder, timeout=400)
    manifest = json.loads((folder / targets[0]).read_text())
    assert sorted(manifest["tiles"]) == sorted(by_block[block])
    for entry in manifest["tiles"].values():
        with rasterio.open(folder / entry["image"]) as image:
            assert image.count == len(BANDS) and image.read(1).max() == 0  # sparse stacks: no data
    labels = json.loads((folder / targets[1]).read_text())
    assert sorted(labels["tiles"]) == sorted(by_block[block])
