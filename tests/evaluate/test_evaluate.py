"""The original ECOSG side by side: agreements at CLC L1/L2 on hand-made tiles, GeoTIFF and DIRECT sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.warp import transform_bounds

from s2ecosg.errors import InputError
from s2ecosg.evaluate.report import ecosg_markdown
from s2ecosg.evaluate.run import compare_with_ecosg
from s2ecosg.io import write_raster
from s2ecosg.legend import load_legend
from s2ecosg.surfex import write_cover

TRANSFORM = Affine(10.0, 0.0, 3_150_000.0, 0.0, -10.0, 1_750_000.0)  # southern Spain, EPSG:3035


def clc_ids(codes: list[list[int]]) -> np.ndarray:
    """CLC codes → the clc legend's class ids."""
    legend = load_legend("clc")
    by_code = {int(row["code"]): class_id for class_id, row in legend.classes().items()}
    return np.vectorize(by_code.get)(np.array(codes)).astype(np.uint8)


@pytest.fixture
def tiles(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A 2 × 5 tile: reference and prediction by hand (the fifth column has no ECOSG cover in the GeoTIFF)."""
    reference = clc_ids([[112, 112, 211, 211, 211], [311, 311, 231, 231, 231]])
    prediction = clc_ids([[112, 211, 211, 211, 112], [311, 311, 311, 231, 112]])
    for name, values in (("labels", reference), ("predict", prediction)):
        write_raster(tmp_path / f"{name}.tif", values, crs="EPSG:3035", transform=TRANSFORM)
    return {"T": str(tmp_path / "predict.tif")}, {"T": str(tmp_path / "labels.tif")}


def test_model_and_ecosg_scored_on_the_same_pixels(tmp_path: Path, tiles: tuple) -> None:
    # ECOSG: open low-rise 29 (L1 1 / L2 11), crops 20 (2/21), forest 8 (3/31), grassland 17 (2/23), 0 = none.
    covers = np.array([[29, 20, 8, 20, 0], [8, 17, 17, 17, 0]], dtype=np.uint8)
    write_raster(tmp_path / "ecosg.tif", covers, crs="EPSG:3035", transform=TRANSFORM)
    legend = load_legend("clc")
    result = compare_with_ecosg(*tiles, None, legend, str(tmp_path / "ecosg.tif"))["all"]
    # Reference L1 [1 1 2 2 | 3 3 2 2], model [1 2 2 2 | 3 3 3 2] → 6/8; ECOSG [1 2 3 2 | 3 2 2 2] → 5/8.
    # Reference L2 [11 11 21 21 | 31 31 23 23], model [11 21 21 21 | 31 31 31 23] → 6/8; ECOSG [11 21 31 21 | 31 23 23 23] → 5/8.
    for level in ("clc_l1", "clc_l2"):
        assert result[level]["pixels"] == 8
        assert result[level]["model_agreement"] == pytest.approx(6 / 8)
        assert result[level]["ecosg_agreement"] == pytest.approx(5 / 8)
    table = "\n".join(ecosg_markdown({"all": result}))
    assert "| all | clc_l1 | 8 | 75.0 % | 62.5 % |" in table


def test_ecosg_from_a_direct_pair(tmp_path: Path, tiles: tuple) -> None:
    """A DIRECT ECOSG on lon/lat cells (nearest): one crop cover everywhere → L2 21 where the reference is arable."""
    west, south, east, north = transform_bounds("EPSG:3035", "EPSG:4326", 3_150_000, 1_749_980, 3_150_050, 1_750_000)
    write_cover(
        tmp_path / "ECOSG",
        np.full((4, 4), 20, np.uint8),
        (west - 0.01, south - 0.01, east + 0.01, north + 0.01),
        "test",
    )
    result = compare_with_ecosg(*tiles, None, load_legend("clc"), str(tmp_path / "ECOSG"))["all"]
    assert result["clc_l2"]["pixels"] == 10
    assert result["clc_l2"]["ecosg_agreement"] == pytest.approx(3 / 10)  # the three 211 pixels
    assert result["clc_l1"]["ecosg_agreement"] == pytest.approx(6 / 10)  # 211 ×3 and 231 ×3 are agricultural


def test_legend_without_clc_levels_is_refused(tmp_path: Path, tiles: tuple) -> None:
    with pytest.raises(InputError, match="needs a legend with CLC levels"):
        compare_with_ecosg(*tiles, None, load_legend("osm_landuse"), str(tmp_path / "ecosg.tif"))


def test_point_samples(tmp_path: Path, tiles: tuple) -> None:
    """Four CSV points at pixel centres of the hand-made tile (lon/lat) and one outside every tile."""
    from pyproj import Transformer

    from s2ecosg.evaluate.run import score_points

    to_lonlat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    rows = []
    for (row, column), code in (((0, 0), 112), ((0, 1), 112), ((1, 2), 311), ((1, 3), 231)):
        lon, lat = to_lonlat.transform(3_150_005 + 10 * column, 1_749_995 - 10 * row)
        rows.append(f"{lon:.9f},{lat:.9f},{code}")
    rows.append("-3.0,40.0,211")  # far outside
    (tmp_path / "points.csv").write_text("lon,lat,code\n" + "\n".join(rows) + "\n")
    result = score_points(tiles[0], load_legend("clc"), str(tmp_path / "points.csv"), "code")
    # Predictions there: 112 ✓, 211 ✗ (point says 112), 311 ✓, 231 ✓.
    assert (result.points, result.scored, result.without_prediction) == (5, 4, 1)
    assert result.levels["classes"]["agreement"] == pytest.approx(3 / 4)
    assert result.levels["clc_l1"]["agreement"] == pytest.approx(3 / 4)  # 211 is agricultural, 112 artificial
    (tmp_path / "bad.csv").write_text("lon,lat,code\n-3.0,40.0,777\n")
    with pytest.raises(InputError, match="class code 777 is not in legend"):
        score_points(tiles[0], load_legend("clc"), str(tmp_path / "bad.csv"), "code")
