"""The demo exactly as `make demo` runs it (real Brandenburg scene, ResNet-50), checked on its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DEMO_CONFIG, run
from pyproj import Transformer

from s2ecosg.surfex import read_cover
from s2ecosg.validate import validate_cover

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def cells_over_imagery(cover: np.ndarray, header: dict, stage: Path) -> np.ndarray:
    """Covers of the cells whose centre falls on a valid staged pixel."""
    rows, cols = cover.shape
    step = (header["north"] - header["south"]) / rows
    lat = header["north"] - (np.arange(rows) + 0.5) * step
    lon = header["west"] + (np.arange(cols) + 0.5) * step
    lon_grid, lat_grid = np.meshgrid(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(lon_grid, lat_grid)
    over = np.zeros(cover.shape, dtype=bool)
    for path in stage.glob("E*N*[0-9].tif"):
        with rasterio.open(path) as source:
            valid = (source.read() > 0).all(axis=0)
            column, row = ~source.transform * (x, y)
            inside = (row >= 0) & (row < source.height) & (column >= 0) & (column < source.width)
            over[inside] = valid[row[inside].astype(int), column[inside].astype(int)]
    return cover[over]


def test_demo_cover_covers_the_imagery(demo: Path) -> None:
    base = demo / "results" / "demo" / "cover" / "S2ECOSG_DEMO"
    assert validate_cover(base) == []
    cover, header = read_cover(base)
    over = cells_over_imagery(cover, header, demo / "results" / "demo" / "stage")
    assert over.size > 30000  # ≈ 118 km² at 1/1800° (≈ 34 m × 62 m cells), less the clouds s2cloudless removes
    assert (over > 0).mean() >= 0.9
    # OSM legend covers only: town 29/31, crops 20, grass 17, forest 13, shrubs 15, water 2, wetland 23, bare 4.
    assert set(np.unique(cover)) <= {0, 2, 4, 13, 15, 17, 20, 23, 29, 31}
    # Three ensemble members (config/demo.yaml), each a valid pair over the same cells, differing where unsure.
    for number in (1, 2, 3):
        member_base = base.parent / f"S2ECOSG_DEMO_M{number:02d}"
        assert validate_cover(member_base) == []
        member, member_header = read_cover(member_base)
        assert all(member_header[key] == header[key] for key in ("north", "south", "east", "west", "rows", "cols"))
        assert np.array_equal(member > 0, cover > 0)
        assert 0 < (member != cover).mean() < 0.5
        assert set(np.unique(member)) <= {0, 2, 4, 13, 15, 17, 20, 23, 29, 31}


def test_demo_metrics_and_picture(demo: Path) -> None:
    results = demo / "results" / "demo"
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    assert metrics["validation"]["classes"]["pixels"] > 10000
    assert metrics["validation"]["classes"]["agreement"] > 0.2  # 1/9 would be chance over the 9 trained classes
    assert (results / "evaluate" / "panels.png").stat().st_size > 50000
    card = json.loads((results / "model" / "bundle.json").read_text())
    assert card["encoder"] == "resnet50" and card["epochs_trained"] == 4 and 1 <= card["best_epoch"] <= 4
    # Calibrated on the validation pixels: the fit never raises the NLL it minimises, and the report shows it.
    calibration = card["calibration"]
    assert card["temperature"] == calibration["temperature"] > 0 and calibration["pixels"] > 10000
    assert calibration["after"]["nll"] <= calibration["before"]["nll"]
    assert calibration["after"]["accuracy"] == calibration["before"]["accuracy"]
    assert metrics["calibration"] == calibration
    assert (
        f"## Calibration: temperature {calibration['temperature']:.3f}"
        in (results / "evaluate" / "metrics.md").read_text()
    )
    assert (results / "evaluate" / "reliability.png").stat().st_size > 10000
    summary = run(["s2ecosg", "summary", *DEMO_CONFIG], cwd=demo, timeout=120).stdout
    assert "cover file: results/demo/cover/S2ECOSG_DEMO.dir" in summary and "format check: ok" in summary
