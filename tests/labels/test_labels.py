"""Labels: codes → class ids on the source's own grid (exact) and on EPSG:3035 (within tolerance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import DATA, DEMO
from rasterio.warp import calculate_default_transform

from s2ecosg.errors import InputError
from s2ecosg.labels.run import raster_labels, vector_labels
from s2ecosg.legend import load_legend

CLC = DATA / "lanjaron" / "clc.tif"


def source_counts(path: Path) -> tuple[dict[int, int], rasterio.Affine, object, tuple[int, int]]:
    """Pixel count per code of a raster (nodata left out), with its grid."""
    with rasterio.open(path) as source:
        codes = source.read(1)
        grid = source.transform, source.crs, source.shape
        if source.nodata is not None:
            codes = codes[codes != source.nodata]
    unique, counts = np.unique(codes, return_counts=True)
    return dict(zip(unique.tolist(), counts.tolist(), strict=True)), *grid


def test_corine_counts_exact_on_own_grid() -> None:
    legend = load_legend("clc")
    counts, transform, crs, shape = source_counts(CLC)
    ids = raster_labels(str(CLC), legend, transform, shape, crs)
    code_of = {int(row["id"]): int(row["code"]) for row in legend.rows if row["id"] != "0"}
    unique, id_counts = np.unique(ids[ids > 0], return_counts=True)
    assert {code_of[i]: n for i, n in zip(unique.tolist(), id_counts.tolist(), strict=True)} == counts
    assert sum(counts.values()) == 474 * 745


def test_corine_counts_after_warp_to_3035_within_two_percent() -> None:
    """Nearest-neighbour warp from 25 m UTM 30N to 10 m LAEA: every class area within 2 % (±2 ha for tiny ones)."""
    legend = load_legend("clc")
    counts, transform, crs, shape = source_counts(CLC)
    with rasterio.open(CLC) as source:
        target_transform, width, height = calculate_default_transform(
            source.crs, "EPSG:3035", source.width, source.height, *source.bounds, resolution=10
        )
    ids = raster_labels(str(CLC), legend, target_transform, (height, width), "EPSG:3035")
    code_of = {int(row["id"]): int(row["code"]) for row in legend.rows if row["id"] != "0"}
    warped = {code_of[i]: n for i, n in zip(*np.unique(ids[ids > 0], return_counts=True), strict=True)}
    assert set(warped) == set(counts)
    for code, count in counts.items():
        source_area, warped_area = count * 625.0, warped[code] * 100.0  # m²
        assert abs(warped_area - source_area) <= max(0.02 * source_area, 20000), code


def test_slovenia_lulc_ids_equal_codes() -> None:
    legend = load_legend("slovenia_lulc")
    counts, transform, crs, shape = source_counts(DATA / "slovenia" / "LULC.tif")
    ids = raster_labels(str(DATA / "slovenia" / "LULC.tif"), legend, transform, shape, crs)
    unique, id_counts = np.unique(ids, return_counts=True)
    assert dict(zip(unique.tolist(), id_counts.tolist(), strict=True)) == {
        0: 155,
        1: 11,
        2: 7601,
        3: 1777,
        4: 358,
        8: 198,
    }
    assert counts == {1: 11, 2: 7601, 3: 1777, 4: 358, 8: 198}


def test_grid_code_legend_maps_1_to_44() -> None:
    legend = load_legend("clc_grid_code")
    assert legend.n_classes == 44
    assert legend.code_to_id()["44"] == 44 and legend.code_to_id()["48"] == 0
    assert legend.ecosg_lookup()[44] == 1  # 523 sea and ocean → ECOSG 1
    assert legend.ecosg_lookup("boreal")[24] == 12  # 312 coniferous → boreal needleleaf


def test_osm_polygons_rasterised_on_scene_grid() -> None:
    legend = load_legend("osm_landuse")
    transform = Affine(10, 0, 330000, 0, -10, 5822040)
    ids = vector_labels(str(DEMO / "osm_landuse.gpkg"), "fclass", legend, transform, (768, 1536), "EPSG:32633")
    # Forest (id 5) and water (id 8) polygons of the file both fall in the scene.
    present = set(np.unique(ids).tolist())
    assert {0, 1, 3, 4, 5, 6, 8, 9} <= present
    assert 0.05 < (ids > 0).mean() < 0.6


def test_unknown_code_is_a_one_line_error(tmp_path: Path) -> None:
    with rasterio.open(DATA / "slovenia" / "LULC.tif") as source:
        profile, codes = source.profile, source.read(1)
    codes[0, 0] = 77
    bad = tmp_path / "bad_lulc.tif"
    with rasterio.open(bad, "w", **profile) as destination:
        destination.write(codes, 1)
    with pytest.raises(InputError) as error:
        raster_labels(str(bad), load_legend("slovenia_lulc"), profile["transform"], codes.shape, profile["crs"])
    assert str(error.value).startswith(str(bad)) and "class code 77 is not in legend" in str(error.value)
    assert "\n" not in str(error.value)


def test_not_a_raster_is_a_one_line_error(tmp_path: Path) -> None:
    fake = tmp_path / "labels.tif"
    fake.write_text("this is not a GeoTIFF")
    with pytest.raises(InputError, match="not a readable raster"):
        raster_labels(str(fake), load_legend("clc"), Affine(10, 0, 0, 0, -10, 0), (10, 10), "EPSG:3035")
