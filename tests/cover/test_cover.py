"""Cover stage on real CORINE data: mapping, aggregation, fill, writers, checked against brute-force references."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray
import yaml
from click.testing import CliRunner
from conftest import DATA, ROOT, make_cover
from pyproj import Transformer

from s2ecosg.cli import main
from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.io import write_raster
from s2ecosg.labels.run import raster_labels
from s2ecosg.legend import load_legend
from s2ecosg.surfex import read_cover, write_cover

CLC = DATA / "lanjaron" / "clc.tif"
PROVENANCE = {"s2ecosg_version": "test", "bundle": "none", "run_hash": "0123456789abcdef", "scenes": "none"}
# A small Lambert domain (8 × 8 cells of 2.5 km) around Lanjarón, wider than the CORINE excerpt.
LANJARON = {
    "nlon": 19,
    "nlat": 19,
    "lonc": -3.46,
    "latc": 36.96,
    "lon0": -3.5,
    "lat0": 37.0,
    "gsize": 2500.0,
    "ezone": 11,
}


def ecosg_of_codes(climate_column: str) -> dict[int, int]:
    """CLC code → ECOSG cover read straight from the shipped CSV (variant column, else the default)."""
    with (ROOT / "src" / "s2ecosg" / "data" / "legends" / "clc.csv").open() as handle:
        return {
            int(row["code"]): int(row[climate_column] or row["ecosg"])
            for row in csv.DictReader(handle)
            if row["id"] != "0"
        }


@pytest.fixture(scope="module")
def class_raster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CORINE codes → class ids on the excerpt's own 25 m grid (EPSG:3042)."""
    with rasterio.open(CLC) as source:
        profile, transform, crs, shape = source.profile, source.transform, source.crs, source.shape
    ids = raster_labels(str(CLC), load_legend("clc"), transform, shape, crs)
    path = tmp_path_factory.mktemp("classes") / "E0N0.tif"
    profile.update(dtype="uint8", nodata=0)
    with rasterio.open(path, "w", **profile) as destination:
        destination.write(ids, 1)
    return path


def brute_force(
    header: dict, fill: np.ndarray | None = None, fill_header: dict | None = None
) -> dict[tuple[int, int], Counter]:
    """Per-cell cover counts, pixel by pixel: CLC code → ECOSG (Mediterranean at 37° N) → lon/lat → cell."""
    with rasterio.open(CLC) as source:
        codes, transform, crs = source.read(1), source.transform, source.crs
    covers = ecosg_of_codes("ecosg_mediterranean")
    rows, cols = np.indices(codes.shape)
    x, y = transform.c + (cols + 0.5) * transform.a, transform.f + (rows + 0.5) * transform.e
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    step = (header["north"] - header["south"]) / header["rows"]
    cells: dict[tuple[int, int], Counter] = {}
    for code, longitude, latitude in zip(codes.ravel(), lon.ravel(), lat.ravel(), strict=True):
        key = (int((header["north"] - latitude) // step), int((longitude - header["west"]) // step))
        cells.setdefault(key, Counter())[covers[int(code)]] += 1
    return cells


def majority_of(counter: Counter) -> int:
    most = max(counter.values())
    return min(cover for cover, count in counter.items() if count == most)


def test_corine_cover_counts_equal_brute_force(class_raster: Path, tmp_path: Path) -> None:
    base = tmp_path / "CLC_LANJARON"
    settings = CoverConfig(basename="CLC_LANJARON", resolution_deg="1/1200")
    make_cover([str(class_raster)], [None], load_legend("clc"), settings, DomainConfig(), str(base), PROVENANCE)
    cover, header = read_cover(base)
    cells = brute_force(header)
    expected = np.zeros_like(cover)
    for (row, column), counter in cells.items():
        expected[row, column] = majority_of(counter)
    np.testing.assert_array_equal(cover, expected)
    counts = dict(zip(*np.unique(cover[cover > 0], return_counts=True), strict=True))
    assert counts == dict(Counter(majority_of(counter) for counter in cells.values()))
    assert 17 in counts and 16 not in counts  # at 37° N grassland stays 17, never the boreal 16
    empty = f"cells without a cover: {int((cover == 0).sum())} of {cover.size} (no HARMONIE domain)"
    assert (base.parent / "validation.txt").read_text() == f"ok\n{empty}\n"


def synthetic_ecosg(folder: Path) -> tuple[Path, np.ndarray, dict]:
    """A DIRECT ECOSG fill file at 1/360° over 4° W–3° W, 36.5° N–37.5° N: covers 4..23 in 10-cell stripes."""
    rows, cols = np.indices((360, 360))
    values = (4 + (rows // 10 + cols // 10) % 20).astype(np.uint8)
    header = {"west": -4.0, "south": 36.5, "east": -3.0, "north": 37.5}
    write_cover(folder / "ECOSG_FILL", values, (-4.0, 36.5, -3.0, 37.5), "synthetic ECOSG")
    return folder / "ECOSG_FILL", values, header


def test_custom_domain_filled_and_fractions_brute_force(class_raster: Path, tmp_path: Path) -> None:
    fill_base, fill_values, fill_header = synthetic_ecosg(tmp_path)
    domain = DomainConfig(name="LANJARON", harmonie=LANJARON, margin=1)
    settings = CoverConfig(basename="S2_LANJARON", resolution_deg="1/1200", fill=str(fill_base))
    base = tmp_path / "out" / "S2_LANJARON"
    base.parent.mkdir()
    origin = make_cover([str(class_raster)], [None], load_legend("clc"), settings, domain, str(base), PROVENANCE)
    assert origin["ECOSG fill"] > 0 and origin["predicted"] > 0 and origin["no cover"] == 0
    cover, header = read_cover(base)
    cells = brute_force(header)
    step = 1 / 1200
    with xarray.open_dataset(f"{base}.nc") as dataset:  # as users read it: CF decoding by xarray
        fraction, source = dataset["fraction"].values, dataset["source"].values
        assert dataset.attrs["Conventions"] == "CF-1.8" and dataset.attrs["run_hash"] == PROVENANCE["run_hash"]
        assert dataset["lat"].attrs["standard_name"] == "latitude" and dataset["lon"].attrs["units"] == "degrees_east"
        assert dataset["fraction"].dtype.kind == "f" and dataset["fraction"].encoding["scale_factor"] == 1 / 250
        assert list(dataset["cover_class"].values) == list(range(1, 34))
        assert dataset["lat"].values[0] == pytest.approx(header["north"] - step / 2)
        np.testing.assert_array_equal(np.nan_to_num(dataset["cover"].values).astype(np.uint8), cover)
    for row in range(0, int(header["rows"]), 7):
        for column in range(0, int(header["cols"]), 7):
            expected = np.zeros(33)
            if (row, column) in cells:
                counter = cells[(row, column)]
                for value, count in counter.items():
                    expected[value - 1] = count / sum(counter.values())
                assert cover[row, column] == majority_of(counter) and source[row, column] == 1
            else:
                lat = header["north"] - (row + 0.5) * step
                lon = header["west"] + (column + 0.5) * step
                value = fill_values[int((fill_header["north"] - lat) * 360), int((lon - fill_header["west"]) * 360)]
                expected[value - 1] = 1.0
                assert cover[row, column] == value and source[row, column] == 2
            np.testing.assert_allclose(fraction[:, row, column], expected, atol=0.5 / 250 + 1e-6)
    config = tmp_path / "domain.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "labels": {"path": "x"},
                "imagery": {"paths": ["x"]},
                "domain": {"name": "LANJARON", "harmonie": LANJARON, "margin": 1},
            }
        )
    )
    result = CliRunner().invoke(main, ["validate-cover", str(base), "--config", str(config)])
    assert result.exit_code == 0 and result.output.strip().endswith(": ok"), result.output
    namelist = Path(f"{base}.nam").read_text()
    assert "NIMAX=8, NJMAX=8" in namelist and "YCOVER='S2_LANJARON'" in namelist


def test_domain_check_finds_empty_cells(class_raster: Path, tmp_path: Path) -> None:
    """16 of the 64 LANJARON cells lie beyond the CORINE excerpt: refused at max_empty_fraction 0 (the default).

    Above 0.25 it is written with the count in validation.txt, and validate-cover finds the same cells.
    """
    from s2ecosg.errors import InputError

    domain = DomainConfig(name="LANJARON", harmonie=LANJARON, margin=1)
    base = tmp_path / "NOFILL"
    arguments = [str(class_raster)], [None], load_legend("clc")
    with pytest.raises(InputError, match=r"16 of 64 cells of domain LANJARON have no valid pixel \(25.0 % > "):
        make_cover(*arguments, CoverConfig(resolution_deg="1/1200"), domain, str(base), PROVENANCE)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing under a final name, no temporary
    make_cover(*arguments, CoverConfig(resolution_deg="1/1200", max_empty_fraction=0.25), domain, str(base), PROVENANCE)
    report = (tmp_path / "validation.txt").read_text().splitlines()
    assert report == [
        "16 of 64 domain cells have no valid pixel (SURFEX would interpolate them)",
        "empty domain cells: 16 of 64 (cover.max_empty_fraction 0.25)",
    ]
    config = tmp_path / "domain.yaml"
    config.write_text(
        yaml.safe_dump(
            {"labels": {"path": "x"}, "imagery": {"paths": ["x"]}, "domain": {"name": "LANJARON", "harmonie": LANJARON}}
        )
    )
    result = CliRunner().invoke(main, ["validate-cover", str(base), "--config", str(config)])
    assert result.exit_code == 1
    assert "16 of 64 domain cells have no valid pixel" in result.output


def test_sea_mask_vector_and_raster(class_raster: Path, tmp_path: Path) -> None:
    import geopandas
    from shapely.geometry import box

    sea = geopandas.GeoDataFrame(geometry=[box(-3.7, 36.7, -3.55, 37.2)], crs="EPSG:4326")
    sea.to_file(tmp_path / "sea.gpkg")
    domain = DomainConfig(name="LANJARON", harmonie=LANJARON, margin=1)
    for mask in (tmp_path / "sea.gpkg", raster_mask(tmp_path)):
        base = tmp_path / f"SEA_{mask.suffix[1:]}"
        settings = CoverConfig(resolution_deg="1/1200", sea_mask=str(mask), max_empty_fraction=0.25)
        origin = make_cover([str(class_raster)], [None], load_legend("clc"), settings, domain, str(base), PROVENANCE)
        cover, header = read_cover(base)
        step = 1 / 1200
        lat = header["north"] - (np.arange(header["rows"]) + 0.5) * step
        lon = header["west"] + (np.arange(header["cols"]) + 0.5) * step
        inside = np.outer((lat > 36.7) & (lat < 37.2), (lon > -3.7) & (lon < -3.55))
        assert origin["sea mask"] == int((cover == 1).sum()) > 0
        assert (cover[inside] == 1).all() and (cover[~inside] != 1).all()


def raster_mask(folder: Path) -> Path:
    """A 0.01° raster: 1 (sea) inside 3.7° W–3.55° W, 36.7° N–37.2° N, 0 elsewhere."""
    from affine import Affine

    path = folder / "sea.tif"
    values = np.zeros((100, 100), dtype=np.uint8)  # 37.5° N – 36.5° N, 4° W – 3° W
    values[30:80, 30:45] = 1
    write_raster(path, values, crs="EPSG:4326", transform=Affine(0.01, 0, -4.0, 0, -0.01, 37.5), nodata=None)
    return path


def test_climate_variants_by_latitude_and_zone(class_raster: Path, tmp_path: Path) -> None:
    from affine import Affine

    from s2ecosg.cover.aggregate import CoverMapping

    legend = load_legend("clc")
    mapping = CoverMapping.from_legend(legend, CoverConfig())
    forest = np.array([23, 23, 23])  # id 23 = CLC 311 broad-leaved forest
    assert mapping.covers(forest, np.array([65.0, 50.0, 38.0])).tolist() == [7, 8, 10]
    zone_file = tmp_path / "zones.tif"
    boreal = np.full((10, 10), 2, dtype=np.uint8)  # 2 = boreal everywhere
    write_raster(zone_file, boreal, crs="EPSG:4326", transform=Affine(0.1, 0, -4.0, 0, -0.1, 37.5), nodata=None)
    settings = CoverConfig(climate=str(zone_file), resolution_deg="1/1200")
    zones = CoverMapping.from_legend(legend, settings)
    assert zones.covers(forest, np.zeros(3), np.array([2, 1, 3])).tolist() == [7, 8, 10]
    make_cover([str(class_raster)], [None], legend, settings, DomainConfig(), str(tmp_path / "BOREAL"), PROVENANCE)
    cover, _ = read_cover(tmp_path / "BOREAL")
    # Grassland codes (141, 142, 231, 243, 321) are 17 in temperate/Mediterranean rows and 16 in boreal ones:
    # the zone raster overrides the 37° N latitude band.
    assert (cover == 16).any() and not (cover == 17).any()
    fixed = CoverMapping.from_legend(legend, CoverConfig(climate="boreal"))
    assert fixed.covers(forest, np.array([38.0, 38.0, 38.0])).tolist() == [7, 7, 7]


def test_geotiff_fill_file(class_raster: Path, tmp_path: Path) -> None:
    """A GeoTIFF ECOSG fill (any resolution) is sampled at the cell centres like a DIRECT pair."""
    from affine import Affine

    _, values, _ = synthetic_ecosg(tmp_path)
    fill = tmp_path / "ecosg_fill.tif"
    with rasterio.open(
        fill,
        "w",
        driver="GTiff",
        width=360,
        height=360,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(1 / 360, 0, -4.0, 0, -1 / 360, 37.5),
        nodata=0,
    ) as destination:
        destination.write(values, 1)
    domain = DomainConfig(name="LANJARON", harmonie=LANJARON, margin=1)
    covers = {}
    for name, path in (("DIRECT", tmp_path / "ECOSG_FILL"), ("GTIFF", fill)):
        settings = CoverConfig(resolution_deg="1/1200", fill=str(path))
        make_cover([str(class_raster)], [None], load_legend("clc"), settings, domain, str(tmp_path / name), PROVENANCE)
        covers[name], _ = read_cover(tmp_path / name)
    np.testing.assert_array_equal(covers["DIRECT"], covers["GTIFF"])
    assert (covers["GTIFF"] > 0).all()
