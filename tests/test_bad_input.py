"""Bad input, stage by stage: exit status ≠ 0, one line naming the file or key and the problem, nothing left.

No traceback reaches the terminal, and nothing under the output's final name (nor a temporary) is left behind.

Broken files are built here from the real data in ``tests/data/`` and ``data/demo/``; every command is the real
``s2ecosg`` console script in a subprocess, as a rule or a user runs it.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray
import yaml
from conftest import BIN, DATA, DEMO, ROOT

from s2ecosg.validate import validate_cover

SLOVENIA = DATA / "slovenia"
STACK = SLOVENIA / "S2L1C_2015-07-11_13bands.tif"
ERROR_LINE = re.compile(r"(^|\s)error: ")
TILE = "E4674N2538"  # a 1 km tile of the Slovenia stacks


def s2ecosg(
    arguments: list[str], cwd: Path, limit_bytes: int | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess; ``limit_bytes`` caps the size of files it writes (a full disk)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [str(BIN / "s2ecosg"), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit if limit_bytes else None,
    )


def one_error(result: subprocess.CompletedProcess[str], expected: str) -> str:
    """Assert a failure with exactly one error line matching ``expected`` (a regex) and no traceback."""
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if ERROR_LINE.search(line)]
    assert len(lines) == 1, text
    assert re.search(expected, lines[0]), lines[0]
    return lines[0]


def nothing_left(folder: Path, stem: str = "") -> None:
    """No file of ``folder`` (named ``stem…`` or a temporary ``.stem…``) exists."""
    if folder.exists():
        left = [path.name for path in folder.iterdir() if path.name.lstrip(".").startswith(stem)]
        assert left == [], left


# ---------------------------------------------------------------------------------------------------------------
# Config: `s2ecosg check-config` (the workflow validates the same way at parse time)


def base_config() -> dict:
    return {
        "imagery": {"paths": [str(SLOVENIA / "S2L1C_*_13bands.tif")]},
        "labels": {"path": str(SLOVENIA / "LULC.tif"), "legend": "slovenia_lulc"},
    }


DOMAIN = {"nlon": 19, "nlat": 19, "lonc": 14.5, "latc": 46.0, "lon0": 14.5, "lat0": 46.0, "gsize": 2500.0}
CONFIG_CASES = {
    "yaml-syntax": ("imagery:\n  paths: [a, b\nlabels: {}\n", r"line \d+, column \d+: not valid YAML"),
    "impossible-date": ("imagery:\n  dates: [2015-02-30, 2015-03-31]\n", r"not a valid date \(day is out of range"),
    "not-a-mapping": ("- imagery\n- labels\n", "a config must be a mapping of sections"),
    "dates-reversed": (
        {"imagery": {"dates": ["2015-09-01", "2015-07-01"]}},
        "imagery.dates: .*starts 2015-09-01 after",
    ),
    "season-reversed": ({"imagery": {"seasons": [["2015-09-01", "2015-07-01"]]}}, "imagery.seasons: .*starts"),
    "unknown-crs": ({"grid": {"crs": "EPSG:999999"}}, "grid.crs: 'EPSG:999999' is not a CRS PROJ knows"),
    "geographic-crs": ({"grid": {"crs": "EPSG:4326"}}, "grid.crs: 'EPSG:4326' is not a projected CRS in metres"),
    "resolution-1/0": ({"cover": {"resolution_deg": "1/0"}}, r"cover.resolution_deg: '1/0' is not a number of degrees"),
    "resolution-text": ({"cover": {"resolution_deg": "fine"}}, "cover.resolution_deg: 'fine' is not a number"),
    "resolution-huge": ({"cover": {"resolution_deg": 5}}, "must be positive and at most 1 degree"),
    "aoi-west-east": ({"imagery": {"aoi": [15, 45, 14, 46]}}, "imagery.aoi: .*west < east .*got west 15.0, east 14.0"),
    "bbox-south-north": ({"domain": {"bbox": [14, 46, 15, 45]}}, "domain.bbox: .*south < north"),
    "bbox-beyond-pole": ({"domain": {"bbox": [14, 45, 15, 95]}}, "domain.bbox: .*-90 <= south < north <= 90"),
    "gsize-zero": ({"domain": {"harmonie": {**DOMAIN, "gsize": 0}}}, "domain: GSIZE 0.0 must be a positive"),
    "gsize-negative": ({"domain": {"harmonie": {**DOMAIN, "gsize": -2500}}}, "GSIZE -2500.0 must be a positive"),
    "lat0-100": ({"domain": {"harmonie": {**DOMAIN, "lat0": 100}}}, r"LAT0 100.0 must lie within -90..90"),
    "lat0-0": ({"domain": {"harmonie": {**DOMAIN, "lat0": 0}}}, "LAT0 0 is SURFEX's Mercator projection"),
    "nlat-le-ezone": ({"domain": {"harmonie": {**DOMAIN, "nlat": 11}}}, "must exceed EZONE 11 .*NJMAX 0"),
    "ezone-negative": ({"domain": {"harmonie": {**DOMAIN, "ezone": -1}}}, "EZONE -1 must be >= 0"),
    "nlon-fraction": ({"domain": {"harmonie": {**DOMAIN, "nlon": 19.5}}}, "NLON 19.5 is not a whole number"),
    "domain-key-missing": ({"domain": {"harmonie": {"nlon": 19}}}, r"missing HARMONIE key\(s\) NLAT"),
    "labels-missing": ({"labels": {"path": "nowhere/clc.tif"}}, "labels.path: nowhere/clc.tif: no such file"),
    "bundle-not-a-bundle": ({"model": {"bundle": "empty"}}, r"model.bundle: empty: not a model bundle \(no bundle"),
    "fill-missing": ({"cover": {"fill": "ECOSG_GLOBAL"}}, "cover.fill: ECOSG_GLOBAL: neither a raster file nor"),
    "sea-mask-missing": ({"cover": {"sea_mask": "sea.gpkg"}}, "cover.sea_mask: sea.gpkg: no such file"),
    "points-missing": ({"evaluate": {"points": "lucas.csv"}}, "evaluate.points: lucas.csv: no such file"),
    "legend-missing": ({"labels": {"legend": "my_legend.csv"}}, "labels.legend: my_legend.csv: no such file"),
    "legend-semicolons": ({"labels": {"legend": "semicolon.csv"}}, "semicolon.csv: columns are separated by ';'"),
    "legend-column-missing": ({"labels": {"legend": "short.csv"}}, "short.csv: legend has no column ecosg_boreal"),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config(case: str, tmp_path: Path) -> None:
    content, expected = CONFIG_CASES[case]
    (tmp_path / "empty").mkdir()
    legend = (ROOT / "src" / "s2ecosg" / "data" / "legends" / "slovenia_lulc.csv").read_text()
    (tmp_path / "semicolon.csv").write_text(legend.replace(",", ";"))
    (tmp_path / "short.csv").write_text("\n".join(",".join(line.split(",")[:-2]) for line in legend.splitlines()))
    if isinstance(content, dict):
        merged = base_config()
        for section, values in content.items():
            merged[section] = {**merged.get(section, {}), **values}
        content = yaml.safe_dump(merged)
    (tmp_path / "my.yaml").write_text(content)
    line = one_error(s2ecosg(["check-config", "my.yaml"], tmp_path), expected)
    assert "my.yaml" in line or ".csv" in line


def test_ezone_zero_stays_zero(tmp_path: Path) -> None:
    """EZONE 0 is a valid domain without extension zone (it used to become 11): NIMAX = NLON."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({**base_config(), "domain": {"harmonie": {**DOMAIN, "ezone": 0}}}))
    result = s2ecosg(["domain", "--config", "my.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NIMAX 19 × NJMAX 19" in result.stdout and "NIMAX=19, NJMAX=19" in result.stdout


def test_summary_of_a_bad_config_and_of_an_empty_run(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**base_config(), "run": {"name": "two words"}}))
    one_error(s2ecosg(["summary", "bad.yaml"], tmp_path), "bad.yaml: run.name: String should match pattern")
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(base_config()))
    one_error(s2ecosg(["summary", "my.yaml"], tmp_path), r"S2ECOSG.dir: no cover yet for run demo")


def test_domain_command_with_a_broken_config(tmp_path: Path) -> None:
    one_error(s2ecosg(["domain", "--config", "nowhere.yaml"], tmp_path), r"nowhere.yaml: cannot read config")


# ---------------------------------------------------------------------------------------------------------------
# Stage: inventory and stage commands on broken scene files


def inventory_and_stage(
    folder: Path, imagery: dict, grid: dict | None = None, extra: dict | None = None, limit_bytes: int | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the inventory; if it succeeds, stage its first tile. Returns the failing result and the stage folder."""
    settings = json.dumps(
        {"imagery": {"cloud_mask": "none", **imagery}, "grid": grid or {"tile_size": 1000}, **(extra or {})}
    )
    stage = folder / "results" / "stage"
    arguments = ["inventory", "--settings", settings, "--out", str(stage / "inventory.json"), "--tile-lists"]
    result = s2ecosg([*arguments, str(stage / "scenes")], folder)
    if result.returncode != 0:
        return result, stage
    tile = sorted(path.stem for path in (stage / "scenes").glob("E*.json"))[0]
    outputs = ["--manifest", str(stage / "blocks" / f"{tile}.json")]
    command = ["stage", "--settings", settings, *outputs, str(stage / "scenes" / f"{tile}.json")]
    return s2ecosg(command, folder, limit_bytes=limit_bytes), stage


def demo_bands(folder: Path) -> Path:
    archive = folder / "archive"
    archive.mkdir()
    for path in (DEMO / "IMG_DATA").glob("*.jp2"):
        shutil.copy(path, archive)
    return archive


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 60000] = bytes(60000)
    path.write_bytes(bytes(data))


DEMO_AOI = [12.60, 52.48, 12.61, 52.485]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda path: truncate(path, 150000), r"_B02.jp2: band 1: cannot decode \(.*opj_get_decoded_tile"),
        (corrupt, r"_B02.jp2: band 1: cannot (decode|read) \(.*truncated or corrupt file\?"),
    ],
    ids=["truncated-jp2", "corrupt-jp2"],
)
def test_broken_jpeg2000_band_stops_the_stage(damage: Callable[[Path], None], expected: str, tmp_path: Path) -> None:
    """GDAL reports these decode errors only on stderr from its own threads; the stage used to write zeros."""
    archive = demo_bands(tmp_path)
    damage(archive / "T33UUU_20170216T102101_B02.jp2")
    result, stage = inventory_and_stage(tmp_path, {"paths": [str(archive / "*.jp2")], "aoi": DEMO_AOI})
    one_error(result, expected)
    nothing_left(stage, "E")


def stack_copy(
    folder: Path, transform_values: Callable[[np.ndarray], np.ndarray] | None = None, **profile: object
) -> Path:
    """A copy of one Slovenia stack, its values (and profile) changed."""
    with rasterio.open(STACK) as source:
        data, names, base = source.read(), source.descriptions, source.profile
    data = transform_values(data) if transform_values else data
    target = folder / "stacks" / STACK.name
    target.parent.mkdir(exist_ok=True)
    with rasterio.open(target, "w", **{**base, "dtype": data.dtype.name, **profile}) as destination:
        destination.write(data)
        for index, name in enumerate(names, start=1):
            destination.set_band_description(index, name)
    return target


def test_float_stack_of_dn_values_is_refused(tmp_path: Path) -> None:
    """A float stack must hold reflectance 0..1: DN values in floats staged as saturated, predicted as water."""
    stack_copy(tmp_path, lambda data: (data * 10000).astype(np.float32))
    result, stage = inventory_and_stage(tmp_path, {"paths": [str(tmp_path / "stacks" / "*.tif")]})
    one_error(result, r"13bands.tif: band \d+: median value \d+ as reflectance × 10000 .* float stack must hold")
    nothing_left(stage, "E")


def test_integer_stack_of_reflectance_zero_to_one_is_refused(tmp_path: Path) -> None:
    stack_copy(tmp_path, lambda data: np.ceil(data).astype(np.uint16))
    result, stage = inventory_and_stage(tmp_path, {"paths": [str(tmp_path / "stacks" / "*.tif")]})
    one_error(result, r"looks like reflectance 0..1 stored as integers")
    nothing_left(stage, "E")


def test_truncated_geotiff_stack(tmp_path: Path) -> None:
    path = stack_copy(tmp_path)
    truncate(path, path.stat().st_size // 2)
    result, stage = inventory_and_stage(tmp_path, {"paths": [str(tmp_path / "stacks" / "*.tif")]})
    one_error(result, r"13bands.tif: (band \d+: cannot read|not a readable raster|cannot read band)")
    nothing_left(stage, "E")


def test_stack_with_a_wrong_crs_tag_misses_the_domain(tmp_path: Path) -> None:
    """The stack says UTM 31N but holds UTM 33N coordinates: 1 000 km west of the domain, refused with both extents."""
    from rasterio.warp import transform_bounds

    with rasterio.open(STACK) as source:
        west, south, east, north = transform_bounds(source.crs, "EPSG:4326", *source.bounds)
    stack_copy(tmp_path, crs="EPSG:32631")
    bbox = [west - 0.05, south - 0.05, east + 0.05, north + 0.05]
    imagery = {"paths": [str(tmp_path / "stacks" / "*.tif")]}
    result, stage = inventory_and_stage(tmp_path, imagery, extra={"domain": {"bbox": bbox}})
    one_error(result, r"13bands.tif: the 1 scene\(s\) span W \d.* does not overlap domain.bbox W 1[34]\.")
    nothing_left(stage, "inventory")


def test_band_file_named_for_another_utm_zone(tmp_path: Path) -> None:
    """T33UUU files are in UTM 33N; one carrying EPSG:32632 is refused by name and CRS."""
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in (DEMO / "IMG_DATA").glob("*_B0[2348].jp2"):
        with rasterio.open(path) as source:
            profile = dict(source.profile, driver="GTiff", crs="EPSG:32632" if "_B04" in path.name else source.crs)
            data = source.read()
        with rasterio.open(archive / f"{path.stem}.tif", "w", **profile) as destination:
            destination.write(data)
    imagery = {"paths": [str(archive / "*.tif")], "bands": ["B02", "B03", "B04", "B08"], "aoi": DEMO_AOI}
    result, stage = inventory_and_stage(tmp_path, imagery)
    one_error(result, r"_B04.tif: named for MGRS tile T33U.. \(UTM zone 33, EPSG:32633\) but its CRS is EPSG:32632")
    nothing_left(stage, "inventory")


def test_empty_date_window_says_so(tmp_path: Path) -> None:
    imagery = {"paths": [str(SLOVENIA / "S2L1C_*_13bands.tif")], "dates": ["2016-01-01", "2016-02-01"]}
    result, stage = inventory_and_stage(tmp_path, imagery)
    one_error(result, r"none of the 5 scene\(s\) found \(dated 2015-07-11 to 2015-09-09\) lies in imagery.dates 2016")
    nothing_left(stage, "inventory")


def test_aoi_outside_the_domain(tmp_path: Path) -> None:
    imagery = {"paths": [str(SLOVENIA / "S2L1C_*_13bands.tif")], "aoi": [10.0, 50.0, 10.1, 50.1]}
    result, stage = inventory_and_stage(tmp_path, imagery, extra={"domain": {"bbox": [14.0, 45.5, 15.0, 46.5]}})
    one_error(result, r"imagery.aoi: W 10.0000 S 50.0000 .* does not overlap domain.bbox W 14.0000")


def test_full_disk_while_staging(tmp_path: Path) -> None:
    imagery = {"paths": [str(SLOVENIA / "S2L1C_*_13bands.tif")]}
    result, stage = inventory_and_stage(tmp_path, imagery, limit_bytes=200_000)
    one_error(result, r"results/stage.*: cannot (write|spool warped scenes here) \(File too large\)")
    nothing_left(stage, "E")


# ---------------------------------------------------------------------------------------------------------------
# Labels, shards, predict: on one staged Slovenia tile


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/stage/E4674N2538.tif staged from the five Slovenia stacks (the inputs of the cases below)."""
    folder = tmp_path_factory.mktemp("staged")
    settings = {"paths": [str(SLOVENIA / "S2L1C_*_13bands.tif")]}
    result, stage = inventory_and_stage(folder, settings)
    assert result.returncode == 0, result.stderr
    return stage / f"{TILE}.tif"


def labels_command(folder: Path, path: Path, legend: str = "slovenia_lulc", field: str | None = None) -> list[str]:
    settings = {"labels": {"path": str(path), "legend": legend, "field": field}, "grid": {"tile_size": 1000}}
    return [
        "labels",
        "--settings",
        json.dumps(settings),
        "--tiles",
        TILE,
        "--manifest",
        str(folder / "labels" / "blocks" / f"{TILE}.json"),
    ]


def test_label_raster_without_crs(tmp_path: Path) -> None:
    with rasterio.open(SLOVENIA / "LULC.tif") as source:
        data, profile = source.read(), source.profile
    profile.pop("crs")
    with rasterio.open(tmp_path / "nocrs.tif", "w", **profile) as destination:
        destination.write(data)
    one_error(s2ecosg(labels_command(tmp_path, tmp_path / "nocrs.tif"), tmp_path), r"nocrs.tif: raster has no CRS")
    nothing_left(tmp_path / "labels")


def test_label_vector_in_a_mislabelled_crs_stops_the_shards(staged: Path, tmp_path: Path) -> None:
    """Polygons in EPSG:3035 metres declared as UTM 31N lie far away: no tile gets a label, shards says why."""
    import geopandas
    from shapely.geometry import box

    with rasterio.open(staged) as source:
        bounds = source.bounds
    frame = geopandas.GeoDataFrame({"code": ["2"]}, geometry=[box(*bounds)], crs="EPSG:32631")
    frame.to_file(tmp_path / "labels.gpkg")
    result = s2ecosg(labels_command(tmp_path, tmp_path / "labels.gpkg", field="code"), tmp_path)
    assert result.returncode == 0, result.stderr
    settings = {
        "shards": {"patch": 32, "stride": 16, "block_size": 320},
        "grid": {"tile_size": 1000},
        "labels": {"path": str(tmp_path / "labels.gpkg")},
    }
    stage_manifest = tmp_path / "stage-block.json"
    stage_manifest.write_text(json.dumps({"block": TILE, "tiles": {TILE: {"signature": "-", "image": str(staged)}}}))
    shards = tmp_path / "shards"
    command = ["shards", "--settings", json.dumps(settings), "--stage-manifest", str(stage_manifest)]
    command += ["--labels-manifest", str(tmp_path / "labels" / "blocks" / f"{TILE}.json")]
    result = s2ecosg([*command, "--manifest", str(shards / "blocks" / f"{TILE}.json")], tmp_path)
    assert result.returncode == 0, result.stderr  # the tile is cut: no patch, no array
    index = [
        "shards-index",
        "--settings",
        json.dumps(settings),
        "--index",
        str(shards / "index.json"),
        str(shards / "blocks" / f"{TILE}.json"),
    ]
    one_error(
        s2ecosg(index, tmp_path),
        r"labels.gpkg: no labelled pixel on any staged tile: labels.path W .* does not overlap the imagery W 14",
    )
    assert sorted(path.name for path in shards.iterdir()) == [f"{TILE}.json", "blocks"]  # no index, stats or split


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 U-Net bundle for the 10 default bands and the Slovenia legend (untrained: only loaded)."""
    from s2ecosg.config import DEFAULT_BANDS
    from s2ecosg.legend import load_legend
    from s2ecosg.model.bundle import save_bundle
    from s2ecosg.model.card import BundleCard
    from s2ecosg.model.network import UNet

    folder = tmp_path_factory.mktemp("bundle")
    legend = load_legend("slovenia_lulc")
    card = BundleCard(
        encoder="resnet18",
        bands=DEFAULT_BANDS,
        n_classes=legend.n_classes,
        legend=legend.to_records(),
        legend_name="slovenia_lulc",
        mean=[1000.0] * 10,
        std=[500.0] * 10,
    )
    save_bundle(folder, UNet("resnet18", 10, legend.n_classes).state_dict(), card)
    return folder


def broken_bundle(bundle: Path, folder: Path, case: str) -> Path:
    target = folder / "bundle"
    shutil.copytree(bundle, target)
    card = json.loads((target / "bundle.json").read_text())
    if case == "other-encoder":
        (target / "bundle.json").write_text(json.dumps({**card, "encoder": "resnet34"}))
    elif case == "broken-card":
        (target / "bundle.json").write_text(json.dumps(card)[:100])
    elif case == "card-without-statistics":
        (target / "bundle.json").write_text(
            json.dumps({key: value for key, value in card.items() if key not in ("mean", "std")})
        )
    elif case == "truncated-weights":
        truncate(target / "weights.pt", 4096)
    elif case == "card-of-older-version":
        (target / "bundle.json").write_text(json.dumps({key: value for key, value in card.items() if key != "version"}))
    elif case == "card-of-newer-version":
        (target / "bundle.json").write_text(json.dumps({**card, "version": 4}))
    elif case == "weights-replaced-by-hand":
        truncate(target / "weights.pt", (target / "weights.pt").stat().st_size - 1)
    return target


BUNDLE_CASES = {
    "other-encoder": r"weights.pt: does not fit the network of bundle.json \(encoder resnet34, .*another encoder",
    "broken-card": r"bundle.json: cannot read JSON",
    "card-without-statistics": r"bundle.json: bundle card lacks mean, std",
    "truncated-weights": r"weights.pt: is not the weights file its bundle.json was written with",
    "card-of-older-version": r"bundle.json: bundle format 1 was written by an older s2ecosg; this one reads formats 2 and 3",
    "card-of-newer-version": r"bundle.json: bundle format 4 was written by a newer s2ecosg; this one reads formats 2 and 3",
    "weights-replaced-by-hand": r"weights.pt: is not the weights file its bundle.json was written with",
}


@pytest.mark.parametrize("case", BUNDLE_CASES, ids=list(BUNDLE_CASES))
def test_broken_bundle(case: str, bundle: Path, staged: Path, tmp_path: Path) -> None:
    folder = broken_bundle(bundle, tmp_path, case)
    out = tmp_path / "predict"
    settings = json.dumps({"predict": {"window": 64, "overlap": 16, "device": "cpu"}, "grid": {"tile_size": 1000}})
    command = ["predict", "--settings", settings, "--card", str(folder / "bundle.json")]
    command += ["--manifest", str(out / "blocks" / f"{TILE}.json"), str(staged.parent / "blocks" / f"{TILE}.json")]
    one_error(s2ecosg(command, tmp_path), BUNDLE_CASES[case])
    nothing_left(out)


# ---------------------------------------------------------------------------------------------------------------
# Cover: fill and sea-mask files, domains, a full disk


LANJARON = {"nlon": 19, "nlat": 19, "lonc": -3.46, "latc": 36.96, "lon0": -3.5, "lat0": 37.0, "gsize": 2500.0}


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """predict/E0N0.tif (CORINE class ids of the Lanjarón excerpt) and a bundle card with the CLC legend."""
    from s2ecosg.blocks import write_manifest
    from s2ecosg.io import write_json
    from s2ecosg.labels.run import raster_labels
    from s2ecosg.legend import load_legend
    from s2ecosg.model.card import BundleCard

    folder = tmp_path_factory.mktemp("predicted")
    clc = DATA / "lanjaron" / "clc.tif"
    with rasterio.open(clc) as source:
        profile, transform, crs, shape = source.profile, source.transform, source.crs, source.shape
    ids = raster_labels(str(clc), load_legend("clc"), transform, shape, crs)
    (folder / "predict").mkdir()
    with rasterio.open(folder / "predict" / "E0N0.tif", "w", **dict(profile, dtype="uint8", nodata=0)) as destination:
        destination.write(ids, 1)
    # The top 2 as predict.top2 writes them: the CORINE class sure at 200/255, a neighbouring class at 40/255.
    top2 = np.stack([ids, np.where(ids > 0, 200, 0), np.where(ids > 0, ids % 44 + 1, 0), np.where(ids > 0, 40, 0)])
    with rasterio.open(
        folder / "predict" / "E0N0.top2.tif", "w", **dict(profile, dtype="uint8", nodata=0, count=4)
    ) as destination:
        destination.write(top2.astype(np.uint8))
    predicted = {
        "classes": str(folder / "predict" / "E0N0.tif"),
        "confidence": str(folder / "predict" / "E0N0.conf.tif"),
        "top2": str(folder / "predict" / "E0N0.top2.tif"),
    }
    write_manifest(folder / "predict" / "blocks" / "E0N0.json", "E0N0", {"E0N0": {"signature": "-", **predicted}})
    (folder / "model").mkdir()
    legend = load_legend("clc")
    card = BundleCard(encoder="resnet18", bands=["B02"], mean=[0.0], std=[1.0], n_classes=legend.n_classes)
    write_json(folder / "model" / "bundle.json", card.model_dump(mode="json") | {"legend": legend.to_records()})
    (folder / "model" / "weights.pt").write_bytes(b"weights")
    return folder


def write_direct(base: Path, values: np.ndarray, header: dict) -> None:
    """A DIRECT pair with a hand-written header (``header`` values replace the computed ones; None drops a key)."""
    lines = {"nodata": "0", "north": "37.5", "south": "36.5", "west": "-4.0", "east": "-3.0"}
    lines |= {"rows": str(values.shape[0]), "cols": str(values.shape[1]), "recordtype": "integer 8 bits"}
    lines |= header
    text = "synthetic ECOSG\n" + "".join(f"{key}: {value}\n" for key, value in lines.items() if value is not None)
    Path(f"{base}.hdr").write_text(text)
    Path(f"{base}.dir").write_bytes(np.ascontiguousarray(values).tobytes())


def fill_stripes(dtype: str = "uint8") -> np.ndarray:
    rows, cols = np.indices((360, 360))
    return (4 + (rows // 10 + cols // 10) % 20).astype(dtype)


def geotiff(path: Path, values: np.ndarray, west: float, north: float, crs: str | None = "EPSG:4326") -> None:
    from affine import Affine

    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1}
    profile |= {"dtype": values.dtype.name, "transform": Affine(1 / 360, 0, west, 0, -1 / 360, north)}
    with rasterio.open(path, "w", **profile, **({"crs": crs} if crs else {})) as destination:
        destination.write(values, 1)


def make_cover_input(case: str, folder: Path) -> tuple[dict, dict]:
    """The broken input of a cover case; returns the cover and domain settings that use it."""
    domain = {"name": "LANJARON", "harmonie": LANJARON, "margin": 1}
    cover = {"basename": "S2_LANJARON", "resolution_deg": "1/1200", "fill": str(folder / "FILL")}
    if case == "fill-north-below-south":
        write_direct(folder / "FILL", fill_stripes(), {"north": "36.5", "south": "37.5"})
    elif case == "fill-16-bit":
        write_direct(folder / "FILL", fill_stripes("uint16"), {})
    elif case == "fill-without-rows":
        write_direct(folder / "FILL", fill_stripes(), {"rows": None})
    elif case == "fill-text-rows":
        write_direct(folder / "FILL", fill_stripes(), {"rows": "three hundred sixty"})
    elif case == "fill-binary-header":
        write_direct(folder / "FILL", fill_stripes(), {})
        Path(f"{folder / 'FILL'}.hdr").write_bytes(bytes(range(256)))
    elif case == "fill-elsewhere":
        geotiff(folder / "fill.tif", fill_stripes(), 20.0, 60.0)
        cover["fill"] = str(folder / "fill.tif")
    elif case == "fill-without-crs":
        geotiff(folder / "fill.tif", fill_stripes(), -4.0, 37.5, crs=None)
        cover["fill"] = str(folder / "fill.tif")
    elif case == "sea-mask-without-crs":
        geotiff(folder / "sea.tif", np.ones((360, 360), np.uint8), -4.0, 37.5, crs=None)
        cover = {**cover, "fill": None, "sea_mask": str(folder / "sea.tif"), "max_empty_fraction": 1}
    elif case == "sea-mask-elsewhere":
        import geopandas
        from shapely.geometry import box

        geopandas.GeoDataFrame(geometry=[box(5, 50, 6, 51)], crs="EPSG:4326").to_file(folder / "sea.gpkg")
        cover = {**cover, "fill": None, "sea_mask": str(folder / "sea.gpkg"), "max_empty_fraction": 1}
    elif case == "domain-without-imagery":
        domain["harmonie"] = {**LANJARON, "lonc": 10.0, "latc": 50.0, "lon0": 10.0, "lat0": 50.0}
        cover["fill"] = None
    elif case == "domain-partly-empty":
        cover["fill"] = None
    return cover, domain


COVER_CASES = {
    "fill-north-below-south": r"FILL.hdr: not a valid DIRECT cover pair: south 37.5 / north 36.5 must satisfy",
    "fill-16-bit": r"FILL.hdr: not a valid DIRECT cover pair: .*2 bytes per cell: 16-bit records",
    "fill-without-rows": r"FILL.hdr: not a valid DIRECT cover pair: header has 8 lines, expected 9",
    "fill-text-rows": r"FILL.hdr: not a valid DIRECT cover pair: key rows: 'three hundred sixty' is not a plain decimal",
    "fill-binary-header": r"FILL.hdr: not a valid DIRECT cover pair: .*FILL.hdr: not a DIRECT text header",
    "fill-elsewhere": r"fill.tif: cover.fill extent W 20.0000 .* does not overlap the output grid W -3\.",
    "fill-without-crs": r"fill.tif: raster has no CRS",
    "sea-mask-without-crs": r"sea.tif: raster has no CRS",
    "sea-mask-elsewhere": r"sea.gpkg: cover.sea_mask extent W 5.0000 .* does not overlap the output grid",
    "domain-without-imagery": r"S2_LANJARON.dir: no cell of the output grid has a cover",
    "domain-partly-empty": r"S2_LANJARON.dir: 16 of 64 cells of domain LANJARON have no valid pixel \(25.0 % > ",
}


def cover_command(folder: Path, predicted: Path, cover: dict, domain: dict) -> list[str]:
    settings = json.dumps({"cover": cover, "domain": domain})
    command = ["cover", "--settings", settings, "--card", str(predicted / "model" / "bundle.json")]
    command += [str(predicted / "predict" / "blocks" / "E0N0.json")]
    return [*command, "--binary", str(folder / "cover" / f"{cover['basename']}.dir")]


@pytest.mark.parametrize("case", COVER_CASES, ids=list(COVER_CASES))
def test_bad_cover_input(case: str, predicted: Path, tmp_path: Path) -> None:
    cover, domain = make_cover_input(case, tmp_path)
    one_error(s2ecosg(cover_command(tmp_path, predicted, cover, domain), tmp_path), COVER_CASES[case])
    nothing_left(tmp_path / "cover")


def test_full_disk_while_writing_the_cover(predicted: Path, tmp_path: Path) -> None:
    cover = {"basename": "S2_LANJARON", "resolution_deg": "1/1200"}
    result = s2ecosg(cover_command(tmp_path, predicted, cover, {}), tmp_path, limit_bytes=20_000)
    one_error(result, r"cover/[.\w]*S2_LANJARON[.\w]*: cannot write \(.*(File too large|HDF error)")
    nothing_left(tmp_path / "cover")


def test_soft_fractions_and_members_from_the_command_line(predicted: Path, tmp_path: Path) -> None:
    cover = {"basename": "S2_LANJARON", "resolution_deg": "1/1200", "fractions": "soft", "members": 2}
    settings = json.dumps({"cover": cover, "predict": {"top2": True}})
    command = cover_command(tmp_path, predicted, cover, {})
    command[command.index("--settings") + 1] = settings
    result = s2ecosg(command, tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("S2_LANJARON", "S2_LANJARON_M01", "S2_LANJARON_M02"):
        assert validate_cover(tmp_path / "cover" / name) == []
    with xarray.open_dataset(tmp_path / "cover" / "S2_LANJARON.nc") as dataset:
        shares = dataset["fraction"].max("cover_class").values
    # Soft: every pixel gives 200/240 to its class, 40/240 to another (often of another cover): mixed cells.
    assert (shares[shares > 0] < 0.99).mean() > 0.2
    # Without a probabilities file on disk, the command says so.
    manifest = json.loads((predicted / "predict" / "blocks" / "E0N0.json").read_text())
    del manifest["tiles"]["E0N0"]["top2"]
    (tmp_path / "E0N0.json").write_text(json.dumps(manifest))
    command[command.index(str(predicted / "predict" / "blocks" / "E0N0.json"))] = str(tmp_path / "E0N0.json")
    one_error(s2ecosg(command, tmp_path), r"E0N0.json: a tile has no probabilities file \(probs.tif, top2.tif\)")


def test_validate_cover_on_a_binary_header_and_a_missing_pair(tmp_path: Path) -> None:
    write_direct(tmp_path / "X", fill_stripes(), {})
    (tmp_path / "X.hdr").write_bytes(bytes(range(256)) * 4)
    result = s2ecosg(["validate-cover", str(tmp_path / "X")], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.strip().endswith(
        "X.hdr: not a DIRECT text header (binary or empty file; was the .dir given for the .hdr?)"
    )
    result = s2ecosg(["validate-cover", str(tmp_path / "NONE")], tmp_path)
    assert result.returncode == 1 and result.stdout.count("missing") == 2 and "Traceback" not in result.stderr


def test_sigterm_leaves_no_temporary(predicted: Path, tmp_path: Path) -> None:
    """SLURM's time limit sends SIGTERM: the command exits 143 and removes what it was writing."""
    import time

    cover = {"basename": "S2_LANJARON", "resolution_deg": "1/20000"}  # 300 × 260 blocks of cells: seconds of work
    command = [str(BIN / "s2ecosg"), *cover_command(tmp_path, predicted, cover, {})]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cover").glob(".*.tmp*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the cover finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in stderr
    assert "stopped by signal 15 (SIGTERM)" in stderr
    nothing_left(tmp_path / "cover")


# ---------------------------------------------------------------------------------------------------------------
# Nightly: every exit path writes one OK or FAILED line, the log keeps its history, publishing never half-copies


def nightly(folder: Path, config: str, keep: int = 3) -> subprocess.CompletedProcess[str]:
    arguments = ["nightly", "--config", config, "--profile", "profiles/local", "--publish", "published"]
    return s2ecosg([*arguments, "--keep", str(keep), "--log", "nightly.log"], folder)


def test_nightly_config_errors_are_failed_lines_and_the_log_appends(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**base_config(), "labels": {"path": "nowhere.tif"}}))
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(base_config()))
    for config, keep, expected in (
        ("bad.yaml", 3, "labels.path: nowhere.tif: no such file"),
        ("missing.yaml", 3, "missing.yaml: cannot read config"),
        ("good.yaml", 0, "--keep: 0: at least 1 product must be kept"),
        ("good.yaml", -10, "--keep: -10: at least 1 product must be kept"),
    ):
        result = nightly(tmp_path, config, keep)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert expected in result.stderr
    lines = (tmp_path / "nightly.log").read_text().splitlines()
    status = [line for line in lines if "s2ecosg-nightly" in line]
    assert len(status) == 4 and all(" s2ecosg-nightly FAILED run=" in line for line in status)  # one per run, kept
    assert not (tmp_path / "published").exists()


def publish_script(cover: Path, target: Path) -> str:
    return (
        "import datetime as dt, pathlib, sys\n"
        "from s2ecosg.errors import InputError\n"
        "from s2ecosg.nightly.run import publish\n"
        "try:\n"
        f"    publish(pathlib.Path({str(cover)!r}), pathlib.Path({str(target)!r}), 3, dt.datetime(2026, 1, 1))\n"
        "except InputError as error:\n"
        "    print('error:', error); sys.exit(1)\n"
    )


def test_publish_errors_leave_no_partial_copy(tmp_path: Path) -> None:
    """A full target (file size cap) or a target that is a file: one line, no `.<stamp>.partial`, no `latest`."""
    cover = tmp_path / "cover"
    cover.mkdir()
    write_direct(cover / "S2ECOSG", fill_stripes(), {})
    (cover / ".S2ECOSG.nc.tmp1234").write_bytes(b"left by a killed job")
    (cover / "S2ECOSG.nc").write_bytes(bytes(300_000))

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    full = subprocess.run(
        [str(BIN / "python"), "-c", publish_script(cover, tmp_path / "full")],
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert full.returncode == 1 and "cannot publish" in full.stdout and "Traceback" not in full.stderr
    assert sorted(path.name for path in (tmp_path / "full").iterdir()) == []
    (tmp_path / "afile").write_text("not a folder")
    into_file = subprocess.run(
        [str(BIN / "python"), "-c", publish_script(cover, tmp_path / "afile")], capture_output=True, text=True
    )
    assert into_file.returncode == 1 and "cannot publish" in into_file.stdout
    fine = subprocess.run(
        [str(BIN / "python"), "-c", publish_script(cover, tmp_path / "ok")], capture_output=True, text=True
    )
    assert fine.returncode == 0, fine.stdout + fine.stderr
    published = sorted(path.name for path in (tmp_path / "ok" / "20260101T000000Z").iterdir())
    assert published == ["S2ECOSG.dir", "S2ECOSG.hdr", "S2ECOSG.nc"]  # never the killed job's dot-file
