"""Real Snakemake runs of the workflow on the tiny Slovenia set, with checks on what they write."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import ROOT, SNAKEMAKE, config_variant, crop_stack, jobs_run, run, write_shard_set

from s2ecosg.surfex import read_cover
from s2ecosg.validate import validate_cover

pytestmark = pytest.mark.timeout(900)


def test_lint_is_clean() -> None:
    result = run(
        ["snakemake", "--lint", "--configfile", "tests/workflow/config.yaml"], cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_every_rule_has_log_benchmark_and_conda() -> None:
    text = "".join(path.read_text() for path in (ROOT / "rules").glob("*.smk"))
    blocks = [block for block in text.split("\nrule ")[1:] + text.split("\ncheckpoint ")[1:]]
    blocks += [block for block in text.split("    rule ")[1:]]
    for block in blocks:
        body = block.split("\n\n\n")[0]
        assert "log:" in body and "benchmark:" in body and "conda:" in body and "shell:" in body, body[:60]
        assert "run:" not in body


def test_run_writes_a_valid_cover(slovenia_run: Path) -> None:
    base = slovenia_run / "results" / "slovenia" / "cover" / "S2ECOSG_SLO"
    assert validate_cover(base) == []
    cover, header = read_cover(base)
    # 1 km² at 1/3600° (≈ 31 m × 21 m cells): tens of rows and columns, snapped to multiples of 1/3600.
    assert 20 < header["rows"] < 80 and 20 < header["cols"] < 80
    assert header["west"] * 3600 == pytest.approx(round(header["west"] * 3600), abs=1e-6)
    # Classes seen in training (Slovenia: crops 1, forest 2, grass 3, shrub 4, artificial 8) → ECOSG 20, 8, 17, 15, 29.
    assert set(np.unique(cover)) - {0} <= {8, 15, 17, 20, 29}
    assert (cover > 0).mean() > 0.7
    np.testing.assert_array_equal(cover, brute_force_cover(slovenia_run / "results" / "slovenia", header))
    namelist = (base.parent / "S2ECOSG_SLO.nam").read_text()
    assert "LECOSG=.TRUE." in namelist and "YCOVER='S2ECOSG_SLO'" in namelist


def test_one_run_hash_in_the_bundle_the_cover_readme_netcdf_and_header(slovenia_run: Path) -> None:
    """The hash of the run's whole validated config, the name of the config file every command read."""
    import xarray

    from s2ecosg.config_files import config_hash, read_config_file

    results = slovenia_run / "results" / "slovenia"
    config = read_config_file(slovenia_run / "tests" / "workflow" / "config.yaml")
    digest = config_hash(config)
    assert [path.stem for path in (results / "config").glob("*.json")] == [digest]
    assert config_hash(read_config_file(results / "config" / f"{digest}.json")) == digest  # the file round-trips
    assert json.loads((results / "model" / "bundle.json").read_text())["run_hash"] == digest
    assert f"- run_hash: {digest}" in (results / "cover" / "README.md").read_text()
    assert f" run {digest} " in (results / "cover" / "S2ECOSG_SLO.hdr").read_text().splitlines()[0] + " "
    with xarray.open_dataset(results / "cover" / "S2ECOSG_SLO.nc") as dataset:
        assert dataset.attrs["run_hash"] == digest


def brute_force_cover(results: Path, header: dict) -> np.ndarray:
    """Majority ECOSG cover per cell, pixel by pixel with pyproj and a Counter (independent of s2ecosg.cover.run)."""
    from collections import Counter

    from pyproj import Transformer

    ecosg = {1: 20, 2: 8, 3: 17, 4: 15, 5: 2, 6: 23, 7: 16, 8: 29, 9: 4, 10: 6}  # slovenia_lulc.csv, temperate
    to_lonlat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    rows, cols = int(header["rows"]), int(header["cols"])
    step = (header["north"] - header["south"]) / rows
    cells: dict[tuple[int, int], Counter] = {}
    for path in sorted((results / "predict").glob("E*N*[0-9].tif")):
        with rasterio.open(path) as source:
            ids, transform = source.read(1), source.transform
        for row, column in zip(*np.nonzero(ids), strict=True):
            x, y = transform.c + (column + 0.5) * transform.a, transform.f + (row + 0.5) * transform.e
            lon, lat = to_lonlat.transform(x, y)
            cell = (int((header["north"] - lat) // step), int((lon - header["west"]) // step))
            cells.setdefault(cell, Counter())[ecosg[int(ids[row, column])]] += 1
    expected = np.zeros((rows, cols), dtype=np.uint8)
    for (row, column), counter in cells.items():
        most = max(counter.values())
        expected[row, column] = min(cover for cover, count in counter.items() if count == most)
    return expected


def test_run_tiles_and_metrics(slovenia_run: Path) -> None:
    results = slovenia_run / "results" / "slovenia"
    inventory = json.loads((results / "stage" / "inventory.json").read_text())
    assert len(inventory["scenes"]) == 5 and inventory["tiles"]
    for tile in inventory["tiles"]:
        with (
            rasterio.open(results / "stage" / f"{tile}.tif") as staged,
            rasterio.open(results / "predict" / f"{tile}.tif") as predicted,
        ):
            assert staged.crs.to_epsg() == 3035 and staged.res == (10.0, 10.0) and staged.count == 10
            assert predicted.bounds == staged.bounds and predicted.dtypes[0] == "uint8"
            valid, classes = (staged.read() > 0).all(axis=0), predicted.read(1)
            assert np.array_equal(valid, classes > 0)
        with (
            rasterio.open(results / "predict" / f"{tile}.top2.tif") as top2,
            rasterio.open(results / "predict" / f"{tile}.conf.tif") as confidence,
        ):
            pairs = top2.read()
            assert top2.descriptions[2] == "second_class_id" and np.array_equal(pairs[0], classes)
            assert np.array_equal(pairs[1], confidence.read(1)) and (pairs[3] <= pairs[1]).all()
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    total = np.asarray(metrics["all"]["confusion"]).sum()
    assert metrics["all"]["classes"]["pixels"] == total > 5000
    assert 0 <= metrics["validation"]["classes"]["agreement"] <= 1
    assert (results / "evaluate" / "panels.png").stat().st_size > 10000
    card = json.loads((results / "model" / "bundle.json").read_text())
    assert card["encoder"] == "resnet18" and card["bands"][0] == "B02" and card["n_classes"] == 10
    calibration = card["calibration"]  # fitted on the validation blocks, reported by evaluate
    assert card["temperature"] == calibration["temperature"] and calibration["pixels"] > 1000
    assert calibration["after"]["nll"] <= calibration["before"]["nll"] and metrics["calibration"] == calibration
    assert (results / "evaluate" / "reliability.png").stat().st_size > 10000


def test_lightgbm_baseline_scored_beside_the_cnn(slovenia_run: Path) -> None:
    """evaluate.baseline: a per-pixel LightGBM on the same shards, predicted per tile and scored on the same pixels."""
    results = slovenia_run / "results" / "slovenia"
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    baseline = metrics["baseline"]
    for area in ("validation", "all"):
        assert baseline[area]["classes"]["pixels"] == metrics[area]["classes"]["pixels"]  # same pixels scored
    assert 1 / 10 < baseline["all"]["classes"]["agreement"] <= 1
    with (
        rasterio.open(results / "baseline" / "E4674N2538.tif") as source,
        rasterio.open(results / "stage" / "E4674N2538.tif") as staged,
    ):
        assert np.array_equal(source.read(1) > 0, (staged.read() > 0).all(axis=0))
    card = json.loads((results / "baseline" / "card.json").read_text())
    assert (
        card["pixels"] <= 20000
        and card["bands"] == json.loads((results / "model" / "bundle.json").read_text())["bands"]
    )
    assert "CNN and the per-pixel LightGBM baseline" in (results / "evaluate" / "metrics.md").read_text()


def test_html_report(slovenia_run: Path) -> None:
    """`snakemake --report`: one HTML file with the metrics tables and the pictures."""
    run(
        [*SNAKEMAKE, "--configfile", "tests/workflow/config.yaml", "--report", "report.html"],
        cwd=slovenia_run,
        timeout=300,
    )
    report = (slovenia_run / "report.html").read_text(errors="replace")
    assert len(report) > 100_000 and "metrics.html" in report and "panels.png" in report
    page = (slovenia_run / "results" / "slovenia" / "evaluate" / "metrics.html").read_text()
    assert page.count("<table>") == page.count("</table>") >= 3 and "LightGBM" in page


def test_run_logs_and_benchmarks_for_every_rule(slovenia_run: Path) -> None:
    logs = {path.stem for path in (slovenia_run / "logs" / "slovenia").rglob("*.log")}
    benchmarks = list((slovenia_run / "benchmarks" / "slovenia").rglob("*.tsv"))
    assert {"inventory", "index", "train", "cover", "evaluate", "mosaic"} <= logs  # shards/index.log
    assert len(benchmarks) == len(list((slovenia_run / "logs" / "slovenia").rglob("*.log")))
    assert "epoch 2/2" in (slovenia_run / "logs" / "slovenia" / "train.log").read_text()


def test_rerun_has_nothing_to_do(slovenia_run: Path) -> None:
    result = run([*SNAKEMAKE, "--configfile", "tests/workflow/config.yaml", "-n"], cwd=slovenia_run, timeout=120)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_predict_only_run_trains_nothing(slovenia_run: Path) -> None:
    config = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())
    config["run"]["name"] = "slovenia-predict"
    config["model"]["bundle"] = "results/slovenia/model"
    (slovenia_run / "predict_only.yaml").write_text(yaml.safe_dump(config))
    result = run([*SNAKEMAKE, "--configfile", "predict_only.yaml"], cwd=slovenia_run, timeout=600)
    output = result.stdout + result.stderr
    assert (
        "rule train" not in output and "rule shards" not in output and "localrule train" not in output
    )  # _block, _index
    assert validate_cover(slovenia_run / "results" / "slovenia-predict" / "cover" / "S2ECOSG_SLO") == []


def test_mismatched_bundle_is_refused_naming_both(slovenia_run: Path, tmp_path: Path) -> None:
    """Another legend in the config, or other bands in the imagery, than the bundle's: one line naming both."""
    from s2ecosg.config import PredictConfig
    from s2ecosg.errors import InputError
    from s2ecosg.io import write_raster
    from s2ecosg.predict.block import PredictRequest, run_predict

    results = slovenia_run / "results" / "slovenia"
    tile = results / "stage" / "E4674N2538.tif"
    settings = PredictConfig(window=64, overlap=16, device="cpu")
    outputs = str(tmp_path / "c.tif"), str(tmp_path / "f.tif")
    with pytest.raises(InputError, match="bundle legend .* differs from labels.legend clc"):
        run_predict(PredictRequest(str(results / "model"), str(tile), settings, *outputs, [], "clc"))
    with rasterio.open(tile) as source:
        image, transform, names = source.read(), source.transform, list(source.descriptions)
    swapped = [names[1], names[0], *names[2:]]
    write_raster(tmp_path / "swapped.tif", image, crs="EPSG:3035", transform=transform, descriptions=swapped)
    with pytest.raises(InputError) as error:
        run_predict(PredictRequest(str(results / "model"), str(tmp_path / "swapped.tif"), settings, *outputs))
    assert ",".join(swapped) in str(error.value) and ",".join(names) in str(error.value)
    assert not (tmp_path / "c.tif").exists()


SEAM_TILES = ("E4674N2539", "E4675N2539", "E4674N2538", "E4675N2538")  # 2 × 2 km: upper-left, upper-right, …


def two_class_bundle(stage: Path, folder: Path) -> Path:
    """A ResNet-18 U-Net trained in a few steps to split the staged Slovenia tiles by NDVI into 2 classes.

    (The Slovenia labels give the workflow's own model a single trained class; the seam test needs a model whose
    prediction changes across the area.)
    """
    from s2ecosg.config_files import validate_sections
    from s2ecosg.train.run import run_train

    images, indices = [], []
    for path in sorted(stage.glob("E*N*[0-9].tif")):
        with rasterio.open(path) as source:
            data, names = source.read(), list(source.descriptions)
        red, nir = data[names.index("B04")].astype(float), data[names.index("B08")].astype(float)
        ndvi = (nir - red) / np.maximum(nir + red, 1)
        for row in range(0, 96, 16):
            for column in range(0, 96, 16):
                patch = data[:, row : row + 32, column : column + 32]
                if patch.shape[1:] == (32, 32) and (patch > 0).all():
                    images.append(patch)
                    indices.append(ndvi[row : row + 32, column : column + 32])
    threshold = np.median(np.stack(indices))  # two classes of equal size: above and below the median NDVI
    labels = [np.where(index > threshold, 2, 1).astype(np.uint8) for index in indices]
    shards = folder / "shards"
    stack, classes = np.stack(images), np.stack(labels)
    write_shard_set(shards, {"train": (stack, classes), "val": (stack[:4], classes[:4])}, names, tiles=1)
    config = validate_sections(
        {
            "labels": {"legend": "slovenia_lulc"},
            "model": {"encoder": "resnet18"},
            "shards": {"patch": 32, "stride": 32},
            "train": {"epochs": 4, "batch_size": 16, "lr": 0.003, "device": "cpu", "schedule": "constant"},
        }
    )
    run_train(str(shards), config, str(folder / "ck"), str(folder / "model"))
    return folder / "model"


def predict_tiles(bundle: Path, stage: Path, folder: Path, neighbours: bool) -> tuple[np.ndarray, np.ndarray]:
    """The 4 seam tiles predicted one by one (with or without their neighbours), mosaicked to 200 × 200."""
    from s2ecosg.config import PredictConfig
    from s2ecosg.predict.block import PredictRequest, run_predict

    settings = PredictConfig(window=64, overlap=16, batch_size=8, device="cpu")
    classes, confidence = np.zeros((200, 200), np.uint8), np.zeros((200, 200), np.uint8)
    for index, tile in enumerate(SEAM_TILES):
        around = [str(stage / f"{other}.tif") for other in SEAM_TILES if other != tile] if neighbours else []
        paths = folder / f"{tile}.tif", folder / f"{tile}.conf.tif"
        run_predict(PredictRequest(str(bundle), str(stage / f"{tile}.tif"), settings, *map(str, paths), around))
        rows, columns = (
            slice(100 * (index // 2), 100 * (index // 2) + 100),
            slice(100 * (index % 2), 100 * (index % 2) + 100),
        )
        with rasterio.open(paths[0]) as source:
            classes[rows, columns] = source.read(1)
        with rasterio.open(paths[1]) as source:
            confidence[rows, columns] = source.read(1)
    return classes, confidence


def test_four_tiles_predict_like_one(slovenia_run: Path, tmp_path: Path) -> None:
    """Seams: 2 × 2 tiles read with their neighbours' halo equal the same 2 km predicted as one tile.

    Windows sit at grid positions and the halo is one window, so every pixel sees the same windows either way;
    what remains is float noise. Tolerance: confidence within 1/255; class ids equal wherever the one-tile
    prediction's top probability exceeds 0.51 (then the top-2 margin exceeds 0.02).
    """
    from s2ecosg.config import PredictConfig
    from s2ecosg.io import write_raster
    from s2ecosg.predict.block import PredictRequest, run_predict

    stage = slovenia_run / "results" / "slovenia" / "stage"
    bundle = two_class_bundle(stage, tmp_path / "trained")
    blocks = []
    for tile in SEAM_TILES:
        with rasterio.open(stage / f"{tile}.tif") as source:
            blocks.append(source.read())
            if tile == SEAM_TILES[0]:
                transform, crs, names = source.transform, source.crs, list(source.descriptions)
    whole = np.concatenate([np.concatenate(blocks[:2], axis=2), np.concatenate(blocks[2:], axis=2)], axis=1)
    write_raster(tmp_path / "whole.tif", whole, crs=crs, transform=transform, descriptions=names)
    settings = PredictConfig(window=64, overlap=16, batch_size=8, device="cpu")
    run_predict(
        PredictRequest(
            str(bundle), str(tmp_path / "whole.tif"), settings, str(tmp_path / "c.tif"), str(tmp_path / "f.tif")
        )
    )
    with rasterio.open(tmp_path / "c.tif") as source:
        one_classes = source.read(1)
    with rasterio.open(tmp_path / "f.tif") as source:
        one_confidence = source.read(1)
    assert len(set(np.unique(one_classes)) - {0}) >= 2
    classes, confidence = predict_tiles(bundle, stage, tmp_path, neighbours=True)
    assert np.abs(confidence.astype(int) - one_confidence).max() <= 1
    sure = one_confidence > 0.51 * 255
    np.testing.assert_array_equal(classes[sure], one_classes[sure])
    # Without the halo the tile edges see less context: the same comparison finds seams (the test can fail).
    alone_classes, alone_confidence = predict_tiles(bundle, stage, tmp_path, neighbours=False)
    assert np.abs(alone_confidence.astype(int) - one_confidence).max() > 5


def test_config_typo_is_a_one_line_error(workdir: Path) -> None:
    config = yaml.safe_load((workdir / "tests" / "workflow" / "config.yaml").read_text())
    config["shards"]["strid"] = 8
    (workdir / "typo.yaml").write_text(yaml.safe_dump(config))
    result = run([*SNAKEMAKE, "--configfile", "typo.yaml", "-n"], cwd=workdir, timeout=120, check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].endswith("typo.yaml: shards.strid: unknown key"), result.stderr


def test_missing_band_fails_cleanly(workdir: Path) -> None:
    config = yaml.safe_load((workdir / "tests" / "workflow" / "config.yaml").read_text())
    config["imagery"]["stack_bands"] = None
    config["imagery"]["bands"] = ["B02", "B03", "B04", "B08", "B8A", "B11", "B12"]
    # Make one stack lose its band names: without descriptions or stack_bands it cannot be read.
    path = workdir / "tests" / "data" / "slovenia" / "S2L1C_2015-07-11_13bands.tif"
    with rasterio.open(path, "r+") as stack:
        stack.set_band_description(11, "")
    (workdir / "bands.yaml").write_text(yaml.safe_dump(config))
    result = run([*SNAKEMAKE, "--configfile", "bands.yaml"], cwd=workdir, timeout=300, check=False)
    assert result.returncode != 0
    log = (workdir / "logs" / "slovenia" / "stage" / "inventory.log").read_text()
    assert "error: tests/data/slovenia/S2L1C_2015-07-11_13bands.tif: bands have no names" in log
    assert not (workdir / "results" / "slovenia" / "stage" / "inventory.json").exists()


def test_nightly_rerun_redoes_only_new_tiles(slovenia_run: Path) -> None:
    """Predict-only 2-tile run; rerun without a new scene does nothing; a new scene on one tile restages that tile only."""
    import shutil

    archive = slovenia_run / "archive"
    archive.mkdir()
    for path in sorted((slovenia_run / "tests" / "data" / "slovenia").glob("S2L1C_*_13bands.tif"))[:4]:
        shutil.copy(path, archive)
    config = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())
    config["run"]["name"] = "nightly"
    config["model"]["bundle"] = "results/slovenia/model"
    config["imagery"]["paths"] = ["archive/*.tif"]
    # Two tiles of the 1 km grid: E4674N2539 and E4675N2539 (the AOI lies inside their row).
    from rasterio.warp import transform_bounds

    config["imagery"]["aoi"] = list(transform_bounds("EPSG:3035", "EPSG:4326", 4674700, 2539200, 4675500, 2539800))
    (slovenia_run / "nightly.yaml").write_text(yaml.safe_dump(config))
    command = [*SNAKEMAKE, "--configfile", "nightly.yaml"]
    result = run(command, cwd=slovenia_run, timeout=600)
    first = jobs_run(result.stdout + result.stderr)
    # With the 1 km tiles of this run and 5 × 5 tile blocks, the two tiles lie in two blocks.
    assert sorted(block for rule, block in first if rule == "stage_block") == ["E4670N2535", "E4675N2535"]
    assert not any(rule in ("train", "shards_block", "shards_index") for rule, _ in first)
    cover = slovenia_run / "results" / "nightly" / "cover" / "S2ECOSG_SLO.dir"
    first_cover = cover.stat().st_mtime_ns

    dry = run([*command, "-n"], cwd=slovenia_run, timeout=120)
    assert "Nothing to be done" in dry.stdout + dry.stderr

    crop_stack(
        slovenia_run / "tests" / "data" / "slovenia" / "S2L1C_2015-09-09_13bands.tif",
        archive / "S2L1C_2015-09-10_13bands.tif",
        columns=25,
    )
    result = run(command, cwd=slovenia_run, timeout=600)
    second = jobs_run(result.stdout + result.stderr)
    assert [block for rule, block in second if rule == "stage_block"] == ["E4670N2535"]
    # Its neighbour is re-predicted too: its halo (read from the restaged tile) changed. Nothing else runs.
    assert sorted(block for rule, block in second if rule == "predict_block") == ["E4670N2535", "E4675N2535"]
    assert ("cover", "") in second and not any(rule in ("train", "shards_block", "shards_index") for rule, _ in second)
    assert cover.stat().st_mtime_ns > first_cover
    scenes = json.loads((slovenia_run / "results" / "nightly" / "stage" / "scenes" / "E4674N2539.json").read_text())
    assert "S2L1C_2015-09-10_13bands" in [scene["scene_id"] for scene in scenes["scenes"]]
    inventory = json.loads((slovenia_run / "results" / "nightly" / "stage" / "inventory.json").read_text())
    found = {scene["scene_id"]: scene["found"] for scene in inventory["scenes"]}
    assert found["S2L1C_2015-09-10_13bands"] > found["S2L1C_2015-07-11_13bands"]  # first seen in the second run


def test_stac_predict_only_run(slovenia_run: Path) -> None:
    """The whole workflow from a STAC API on loopback: search, download in the stage jobs, predict, cover."""
    from conftest import DEMO
    from stac_server import StacServer

    scene = "T33UUU_20170216T102101"
    bands = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    items = {scene: {band: DEMO / "IMG_DATA" / f"{scene}_{band}.jp2" for band in bands}}
    config = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())
    config["run"]["name"] = "stac"
    config["model"]["bundle"] = "results/slovenia/model"
    config["labels"] = {"path": None}
    config["grid"]["tile_size"] = 2000
    with StacServer(items) as server:
        config["imagery"] = {
            "source": "stac",
            "aoi": [12.53, 52.48, 12.55, 52.49],
            "stac": {"url": server.url, "cache": "resources/stac", "backoff": 0.05},
        }
        (slovenia_run / "stac.yaml").write_text(yaml.safe_dump(config))
        result = run([*SNAKEMAKE, "--configfile", "stac.yaml"], cwd=slovenia_run, timeout=600)
    jobs = jobs_run(result.stdout + result.stderr)
    assert any(rule == "stage_block" for rule, _ in jobs) and not any(rule == "train" for rule, _ in jobs)
    base = slovenia_run / "results" / "stac" / "cover" / "S2ECOSG_SLO"
    assert validate_cover(base) == []
    cover, _ = read_cover(base)
    assert (cover > 0).mean() > 0.5
    assert len(list((slovenia_run / "resources" / "stac" / scene).glob("*.jp2"))) == 10


@pytest.mark.xdist_group("slovenia-b")
def test_nightly_entry_point_publishes_and_recovers(slovenia_run: Path) -> None:
    """`s2ecosg nightly`: clears a stale lock, reruns, publishes a dated copy, moves `latest`, keeps the newest N."""
    config = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())
    config["run"]["name"] = "nightly-entry"
    config["model"]["bundle"] = "results/slovenia/model"
    (slovenia_run / "entry.yaml").write_text(yaml.safe_dump(config))
    published = slovenia_run / "published"
    for stamp in ("20200101T000000Z", "20200102T000000Z", "20200103T000000Z", "20200104T000000Z"):
        (published / stamp).mkdir(parents=True)
    locks = slovenia_run / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.output.lock").write_text(
        str(slovenia_run / "results" / "nightly-entry" / "cover" / "S2ECOSG_SLO.dir") + "\n"
    )
    command = [
        "s2ecosg",
        "nightly",
        "--config",
        "entry.yaml",
        "--profile",
        "profiles/local",
        "--publish",
        "published",
        "--keep",
        "3",
        "--log",
        "logs/nightly-entry.log",
    ]
    run(command, cwd=slovenia_run, timeout=600)
    log = (slovenia_run / "logs" / "nightly-entry.log").read_text()
    assert "s2ecosg-nightly OK run=nightly-entry" in log
    dated = sorted(path.name for path in published.iterdir() if path.name[0].isdigit())
    assert len(dated) == 3 and dated[:2] == ["20200103T000000Z", "20200104T000000Z"]
    assert (published / "latest").resolve() == (published / dated[-1]).resolve()
    assert validate_cover(published / "latest" / "S2ECOSG_SLO") == []

    config["imagery"]["paths"] = ["nowhere/*.tif"]
    (slovenia_run / "broken.yaml").write_text(yaml.safe_dump(config))
    failed = run([*command[:3], "broken.yaml", *command[4:]], cwd=slovenia_run, timeout=300, check=False)
    assert failed.returncode != 0
    assert "s2ecosg-nightly FAILED run=nightly-entry" in (slovenia_run / "logs" / "nightly-entry.log").read_text()
    assert (published / "latest").resolve() == (published / dated[-1]).resolve()


def test_slurm_profile_is_valid_for_the_plugin(workdir: Path) -> None:
    """The site profile parses with the installed SLURM executor plugin (a dry run submits nothing)."""
    result = run(
        ["snakemake", "--profile", "profiles/slurm", "--configfile", "tests/workflow/config.yaml", "-n"],
        cwd=workdir,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "inventory" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"model": {"bundle": "results/slovenia/moved-model"}},
            "model.bundle: results/slovenia/moved-model: not a model",
        ),
        ({"labels": {"path": "tests/data/slovenia/moved.tif"}}, "labels.path: tests/data/slovenia/moved.tif: no such"),
        ({"cover": {"fill": "ECOSG_EUROPE"}}, "cover.fill: ECOSG_EUROPE: neither a raster file nor a DIRECT pair"),
    ],
    ids=["bundle", "labels", "fill"],
)
def test_moved_input_stops_a_rerun_at_parse_time(slovenia_run: Path, change: dict, expected: str) -> None:
    """In an existing run whose outputs are all there, a path that no longer exists is not 'Nothing to be done'."""
    config = config_variant(slovenia_run, "moved", change)
    result = run([*SNAKEMAKE, "--configfile", config, "-n"], cwd=slovenia_run, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Nothing to be done" not in output and "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0] == f"error: moved.yaml: {expected}" or expected in lines[0], output


def test_the_workflow_runs_the_config_check_config_prints(slovenia_run: Path) -> None:
    """A config without a train section trains with the code's defaults (not a demo's), as check-config shows."""
    config = config_variant(slovenia_run, "no-train", {"train": None})
    printed = yaml.safe_load(run(["s2ecosg", "check-config", config], cwd=slovenia_run, timeout=60).stdout)
    assert printed["train"]["epochs"] == 30 and printed["train"]["steps_per_epoch"] is None
    dry = run([*SNAKEMAKE, "--configfile", config, "-n", "--printshellcmds"], cwd=slovenia_run, timeout=120)
    command = next(line for line in dry.stdout.splitlines() if " s2ecosg train " in f" {line} ")
    settings = json.loads((slovenia_run / re.search(r"--run-config (\S+)", command)[1]).read_text())
    assert settings == printed  # the whole config reaches the command


def one_tile_aoi() -> list[float]:
    """A lon/lat box inside grid tile E4674N2539 of the 1 km test grid (fast runs of one tile)."""
    from rasterio.warp import transform_bounds

    return list(transform_bounds("EPSG:3035", "EPSG:4326", 4674300, 2539200, 4674800, 2539800))


ONE_TILE_AOI = one_tile_aoi()


def test_a_replaced_scene_file_restages_its_tiles(slovenia_run: Path) -> None:
    """Same name, other content, an older modification time (cp -p, rsync -t): the tiles it covers are restaged."""
    import os
    import shutil

    archive = slovenia_run / "replaced-archive"
    archive.mkdir()
    scenes = sorted((slovenia_run / "tests" / "data" / "slovenia").glob("S2L1C_*_13bands.tif"))[:3]
    for path in scenes:
        shutil.copy2(path, archive)
    config = config_variant(
        slovenia_run,
        "replaced",
        {
            "run": {"name": "replaced"},
            "model": {"bundle": "results/slovenia/model"},
            "imagery": {"paths": ["replaced-archive/*.tif"], "aoi": ONE_TILE_AOI},
        },
    )
    config_path = slovenia_run / config
    settings = yaml.safe_load(config_path.read_text())
    settings["evaluate"] = {"baseline": False}
    config_path.write_text(yaml.safe_dump(settings))
    first = jobs_run(
        (lambda result: result.stdout + result.stderr)(run([*SNAKEMAKE, "--configfile", config], cwd=slovenia_run))
    )
    staged = sorted(block for rule, block in first if rule == "stage_block")
    assert staged and "Nothing to be done" in run([*SNAKEMAKE, "--configfile", config, "-n"], cwd=slovenia_run).stdout
    replaced = archive / scenes[0].name
    old = replaced.stat().st_mtime_ns
    shutil.copyfile(scenes[-1].with_name("S2L1C_2015-09-09_13bands.tif"), replaced)  # a re-download, other pixels
    os.utime(replaced, ns=(old - 10**12, old - 10**12))  # older than every output: mtime alone would miss it
    second = jobs_run(
        (lambda result: result.stdout + result.stderr)(run([*SNAKEMAKE, "--configfile", config], cwd=slovenia_run))
    )
    assert ("inventory", "") in second
    assert sorted(block for rule, block in second if rule == "stage_block") == staged  # the scene covers every tile
    assert ("cover", "") in second


PAUSE_WRAPPER = """#!{python}
# The real s2ecosg command, paused just before it renames an output whose name ends with $S2ECOSG_PAUSE_AT into
# place: its temporaries exist, and the test kills it there (kill -9, or the nightly's time limit).
import contextlib, os, sys, time
from pathlib import Path
import s2ecosg.io
original = s2ecosg.io.atomic_path

@contextlib.contextmanager
def paused(path):
    with original(path) as temporary:
        yield temporary
        if str(path).endswith(os.environ["S2ECOSG_PAUSE_AT"]):
            Path(os.environ["S2ECOSG_PAUSE_FLAG"]).write_text(str(os.getpid()))
            time.sleep(600)

s2ecosg.io.atomic_path = paused
from s2ecosg.cli import run
sys.exit(run())
"""


def paused_environment(folder: Path, pause_at: str) -> dict[str, str]:
    """PATH and variables that make every s2ecosg command of a run pause before renaming ``*<pause_at>``."""
    import os
    import sys

    wrapper = folder / "paused-bin" / "s2ecosg"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(PAUSE_WRAPPER.format(python=sys.executable))
    wrapper.chmod(0o755)
    flag = folder / "paused.pid"
    flag.unlink(missing_ok=True)
    path = f"{wrapper.parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "S2ECOSG_PAUSE_AT": pause_at, "S2ECOSG_PAUSE_FLAG": str(flag)}


def start_paused(command: list[str], folder: Path, environment: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """Start ``command`` with the paused s2ecosg; return the process and the pid of the paused job."""
    import os
    import time

    process = subprocess.Popen(
        command,
        cwd=folder,
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    flag, deadline = Path(environment["S2ECOSG_PAUSE_FLAG"]), time.monotonic() + 300
    while not flag.exists() or not flag.read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.1)
    return process, int(flag.read_text())


def killed_config(folder: Path, name: str) -> str:
    """A predict-only run ``name`` of one 1 km tile, fast to repeat."""
    aoi = ONE_TILE_AOI
    return config_variant(
        folder,
        name,
        {
            "run": {"name": name},
            "model": {"bundle": "results/slovenia/model"},
            "imagery": {"aoi": aoi},
            "evaluate": {"baseline": False},
        },
    )


@pytest.mark.xdist_group("slovenia-b")
@pytest.mark.parametrize(
    ("pause_at", "folder", "stem"), [(".conf.tif", "predict", "E4674N2539"), (".nc", "cover", "S2ECOSG_SLO")]
)
def test_kill_9_of_a_job_leaves_nothing_and_the_rerun_completes(
    slovenia_run: Path, pause_at: str, folder: str, stem: str
) -> None:
    """A predict or cover job killed with SIGKILL while its temporaries exist: nothing stays, the rerun completes.

    Snakemake fails the run and no output stays under its final name; the next run (no --unlock needed: Snakemake
    itself was not killed) removes the temporaries the killed job left and completes.
    """
    import os
    import signal

    config = killed_config(slovenia_run, f"killed-{folder}")
    results = slovenia_run / "results" / f"killed-{folder}"
    process, pid = start_paused(
        [*SNAKEMAKE, "--configfile", config], slovenia_run, paused_environment(slovenia_run, pause_at)
    )
    temporaries = sorted(path.name for path in (results / folder).glob(f".{stem}*.tmp*"))
    assert temporaries, "the job was not caught with its temporaries"
    os.kill(pid, signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0, output
    finals = [path.name for path in (results / folder).iterdir() if path.name.startswith(stem)]
    # A predicted tile's class raster is renamed into place last and marks it complete (with its signature); the
    # top-2 raster before it may stand, and the rerun remakes the tile.
    assert finals == ([f"{stem}.top2.tif"] if folder == "predict" else []), finals
    run([*SNAKEMAKE, "--configfile", config], cwd=slovenia_run, timeout=600)
    assert [path.name for path in (results / folder).iterdir() if ".tmp" in path.name] == []
    assert validate_cover(results / "cover" / "S2ECOSG_SLO") == []


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed orphan waits for PID 1 to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.xdist_group("slovenia-b")
def test_nightly_timeout_stops_the_whole_process_group(slovenia_run: Path) -> None:
    """--timeout: Snakemake and the job it runs are stopped together; one FAILED line; nothing is published."""
    import time

    config = killed_config(slovenia_run, "timeout")
    environment = paused_environment(slovenia_run, ".conf.tif")
    command = [
        "s2ecosg",
        "nightly",
        "--config",
        config,
        "--profile",
        "profiles/local",
        "--publish",
        "timeout-published",
    ]
    # Long enough to reach the paused predict job on a loaded machine (inventory, stage, model load take ~20 s).
    command += ["--timeout", "75", "--log", "logs/timeout-nightly.log"]
    process, pid = start_paused(command, slovenia_run, environment)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 124, output
    deadline = time.monotonic() + 20
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(pid)  # the paused predict job is gone with its group
    log = (slovenia_run / "logs" / "timeout-nightly.log").read_text()
    assert log.count("s2ecosg-nightly FAILED run=timeout exit=124") == 1 and "s2ecosg-nightly OK" not in log
    assert not (slovenia_run / "timeout-published").exists()
    assert [path.name for path in (slovenia_run / "results" / "timeout" / "predict").glob(".*tmp*")] == []


@pytest.mark.xdist_group("slovenia-b")
def test_block_tiles_one_predicts_and_covers_like_blocks_of_five(slovenia_run: Path) -> None:
    """The job unit changes nothing else: block_tiles 1 (a job per tile) gives the same tiles and cover file.

    Every tile is read with its halo from its neighbours whether they lie in its block or not, so predictions are
    equal to the bit, and so are the cover files made from them.
    """
    config = config_variant(
        slovenia_run,
        "single-tiles",
        {
            "run": {"name": "single-tiles"},
            "grid": {"block_tiles": 1},
            "model": {"bundle": "results/slovenia/model"},
            "evaluate": {"baseline": False},
        },
    )
    result = run([*SNAKEMAKE, "--configfile", config], cwd=slovenia_run, timeout=600)
    jobs = jobs_run(result.stdout + result.stderr)
    blocks = slovenia_run / "results" / "slovenia" / "predict" / "blocks"
    tiles = sorted(path.name for path in (slovenia_run / "results" / "slovenia" / "predict").glob("E*.tif"))
    assert len(list(blocks.glob("*.json"))) == 4 and len(tiles) == 3 * 6  # 6 tiles in 4 blocks of 5 × 5
    assert sorted(block for rule, block in jobs if rule == "predict_block") == sorted(
        name.split(".")[0] for name in tiles if name.count(".") == 1
    )  # one job per tile
    for name in tiles:
        with rasterio.open(slovenia_run / "results" / "slovenia" / "predict" / name) as five:
            with rasterio.open(slovenia_run / "results" / "single-tiles" / "predict" / name) as one:
                np.testing.assert_array_equal(one.read(), five.read(), err_msg=name)
    cover = "cover/S2ECOSG_SLO.dir"
    assert (slovenia_run / "results" / "single-tiles" / cover).read_bytes() == (
        slovenia_run / "results" / "slovenia" / cover
    ).read_bytes()


def test_a_block_job_redoes_only_missing_or_changed_tiles(
    slovenia_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block's rerun keeps the tiles whose signature matches and remakes the one that is missing."""
    monkeypatch.chdir(slovenia_run)  # manifests name files relative to the run's folder, as the rules give them
    from s2ecosg.blocks import read_manifests, tile_signature_of
    from s2ecosg.config_files import validate_sections
    from s2ecosg.predict.block import run_predict_block

    workflow = yaml.safe_load((slovenia_run / "tests" / "workflow" / "config.yaml").read_text())
    settings = validate_sections({"predict": {**workflow["predict"], "device": "cpu"}, "grid": workflow["grid"]})
    stage = slovenia_run / "results" / "slovenia" / "stage" / "blocks"
    own = stage / "E4670N2535.json"
    manifests = [str(own), *sorted(str(path) for path in stage.glob("E*.json") if path != own)]
    folder, manifest = tmp_path / "predict", tmp_path / "predict" / "blocks" / "E4670N2535.json"
    bundle = str(slovenia_run / "results" / "slovenia" / "model")
    run_predict_block(bundle, settings, manifests, str(folder), str(manifest))
    made = read_manifests([str(manifest)])
    assert sorted(made) == ["E4674N2538", "E4674N2539"]
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.tif")}
    assert len(stamps) == 6 and all(
        tile_signature_of(entry["classes"]) == entry["signature"] for entry in made.values()
    )

    run_predict_block(bundle, settings, manifests, str(folder), str(manifest))  # nothing changed: nothing remade
    assert {path.name: path.stat().st_mtime_ns for path in folder.glob("*.tif")} == stamps

    with rasterio.open(folder / "E4674N2538.tif") as source:
        before = source.read()
    (folder / "E4674N2538.tif").unlink()  # as a job killed before its last rename leaves it
    run_predict_block(bundle, settings, manifests, str(folder), str(manifest))
    after = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.tif")}
    assert {name for name in after if after[name] != stamps.get(name)} == {
        "E4674N2538.tif",
        "E4674N2538.conf.tif",
        "E4674N2538.top2.tif",
    }
    with rasterio.open(folder / "E4674N2538.tif") as source:
        np.testing.assert_array_equal(source.read(), before)
    # The block's predictions are the workflow's own (the same bundle, settings and staged tiles).
    with rasterio.open(slovenia_run / "results" / "slovenia" / "predict" / "E4674N2539.tif") as source:
        workflow_classes = source.read()
    with rasterio.open(folder / "E4674N2539.tif") as source:
        np.testing.assert_array_equal(source.read(), workflow_classes)
