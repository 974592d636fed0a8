"""STAC search and asset download against a real HTTP STAC API on loopback (real Brandenburg bands)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DEMO
from stac_server import StacServer

from s2ecosg.config import ImageryConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.stage.inventory import stac_inventory, write_tile_lists
from s2ecosg.stage.run import run_stage

SCENE = "T33UUU_20170216T102101"
BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
AOI = (12.52, 52.47, 12.56, 52.50)  # inside the Brandenburg scene


def items() -> dict[str, dict[str, Path]]:
    return {SCENE: {band: DEMO / "IMG_DATA" / f"{SCENE}_{band}.jp2" for band in BANDS}}


def imagery(url: str, cache: Path, **stac: float) -> ImageryConfig:
    return ImageryConfig(
        source="stac",
        bands=BANDS,
        aoi=AOI,
        stac={"url": url, "cache": str(cache), "retries": 2, "backoff": 0.05, "timeout": 2, **stac},
    )


def test_stac_end_to_end_with_retries(tmp_path: Path) -> None:
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    with StacServer(items()) as server:
        server.failures[f"/files/{SCENE}/{SCENE}_B04.jp2"] = 2  # two 503s, then the file
        settings = imagery(server.url, tmp_path / "cache")
        inventory = stac_inventory(settings, grid)
        assert [scene["scene_id"] for scene in inventory["scenes"]] == [SCENE]
        assert inventory["scenes"][0]["bands"]["B02"][0].startswith(server.url)
        write_tile_lists(inventory, tmp_path / "scenes")
        assert "E332N5816" in inventory["tiles"]
        run_stage(
            str(tmp_path / "scenes" / "E332N5816.json"), settings, str(tmp_path / "t.tif"), str(tmp_path / "c.tif")
        )
        assert server.requests.count(f"/files/{SCENE}/{SCENE}_B04.jp2") == 3
    with rasterio.open(tmp_path / "t.tif") as staged, rasterio.open(DEMO / "IMG_DATA" / f"{SCENE}_B04.jp2") as source:
        np.testing.assert_array_equal(staged.read(3), source.read(1, window=((404, 604), (200, 400))))
    assert sorted(path.name for path in (tmp_path / "cache" / SCENE).iterdir()) == sorted(
        f"{SCENE}_{b}.jp2" for b in BANDS
    )


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    with StacServer(items()) as server:
        url = server.url
    with pytest.raises(InputError, match="unreachable after 3 tries") as error:
        stac_inventory(imagery(url, tmp_path), TargetGrid())
    assert str(error.value).startswith(url) and "\n" not in str(error.value)


def test_asset_time_out_leaves_no_partial_file(tmp_path: Path) -> None:
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    with StacServer(items()) as server:
        settings = imagery(server.url, tmp_path / "cache", timeout=0.3)
        inventory = stac_inventory(settings, grid)
        write_tile_lists(inventory, tmp_path / "scenes")
        server.delays[f"/files/{SCENE}/{SCENE}_B08.jp2"] = 1.0
        with pytest.raises(InputError, match="unreachable after 3 tries") as error:
            run_stage(
                str(tmp_path / "scenes" / "E332N5816.json"), settings, str(tmp_path / "t.tif"), str(tmp_path / "c.tif")
            )
        assert f"{SCENE}_B08.jp2" in str(error.value)
    assert not (tmp_path / "t.tif").exists()
    assert (
        not list((tmp_path / "cache").rglob("*.tmp*"))
        and not (tmp_path / "cache" / SCENE / f"{SCENE}_B08.jp2").exists()
    )


def test_missing_asset_is_one_line(tmp_path: Path) -> None:
    with StacServer(items()) as server:
        server.missing.add(f"/files/{SCENE}/{SCENE}_B02.jp2")
        settings = imagery(server.url, tmp_path / "cache")
        inventory = stac_inventory(settings, TargetGrid("EPSG:32633", 10.0, 2000.0))
        write_tile_lists(inventory, tmp_path / "scenes")
        with pytest.raises(InputError, match="HTTP 404"):
            run_stage(
                str(tmp_path / "scenes" / "E332N5816.json"), settings, str(tmp_path / "t.tif"), str(tmp_path / "c.tif")
            )


def test_post_2022_items_get_the_offset() -> None:
    from s2ecosg.stage.stac import item_offset

    assert item_offset({"s2:processing_baseline": "05.09"}) == -1000
    assert item_offset({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}) == 0
    assert item_offset({"s2:processing_baseline": "02.14"}) == 0
