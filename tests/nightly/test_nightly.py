"""The nightly as an operational service: three nights and a quiet one, the change report against a brute force."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import yaml
from conftest import crop_stack, run

from s2ecosg.surfex import read_cover
from s2ecosg.validate import validate_cover

SCENES = ("2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30")


def night(folder: Path, *options: str, check: bool = True, config: str = "nights.yaml") -> tuple[int, str]:
    """One ``s2ecosg nightly`` of the test config; (exit status, the night's monitoring line)."""
    command = ["s2ecosg", "nightly", "--config", config, "--profile", "profiles/local"]
    command += ["--publish", "published", "--keep", "5", "--log", "logs/nights.log", *options]
    result = run(command, cwd=folder, timeout=900, check=False)
    if check:
        assert result.returncode == 0, (folder / "logs" / "nights.log").read_text()[-3000:] + result.stderr[-3000:]
    lines = [line for line in (folder / "logs" / "nights.log").read_text().splitlines() if "s2ecosg-nightly" in line]
    return result.returncode, lines[-1]


def published_products(folder: Path) -> list[Path]:
    """The dated products, oldest first."""
    return sorted(path for path in (folder / "published").iterdir() if path.name[0].isdigit())


def brute_force_changes(old: Path, new: Path, margin: float) -> tuple[dict, dict, float]:
    """(confident, uncertain) changed cells per (from, to) and the confident km², cell by cell (independent code)."""
    before, _ = read_cover(old)
    after, header = read_cover(new)
    with netCDF4.Dataset(f"{new}.nc") as dataset:
        dataset["fraction"].set_auto_maskandscale(False)
        codes = dataset["fraction"][:]
    confident: dict[tuple[int, int], int] = {}
    uncertain: dict[tuple[int, int], int] = {}
    km2 = 0.0
    step = (header["north"] - header["south"]) / header["rows"]
    for row, column in zip(*np.nonzero(before != after), strict=True):
        old_cover, new_cover = int(before[row, column]), int(after[row, column])
        shares = [0.0 if code == 255 else code / 250 for code in codes[:, row, column]]
        lead = (shares[new_cover - 1] if new_cover else 0.0) - (shares[old_cover - 1] if old_cover else 0.0)
        sure = lead >= margin - 1e-9 or sum(shares) == 0
        table = confident if sure else uncertain
        table[(old_cover, new_cover)] = table.get((old_cover, new_cover), 0) + 1
        if sure:
            north = math.radians(header["north"] - row * step)
            south = math.radians(header["north"] - (row + 1) * step)
            km2 += 6371007.2**2 * math.radians(step) * (math.sin(north) - math.sin(south)) / 1e6
    return confident, uncertain, km2


@pytest.fixture(scope="module")
def nights(slovenia_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished Slovenia run with a predict-only nightly config over an archive of cropped scenes.

    The bundle of the test run knows one class, so what changes from night to night is where there are predictions:
    night 1 sees the western 40 of the scenes' 100 columns, night 2 a scene to column 50, night 3 a whole scene.
    """
    folder = tmp_path_factory.mktemp("nights") / "workflow"
    shutil.copytree(slovenia_run, folder, symlinks=True)
    archive = folder / "archive"
    archive.mkdir()
    for date in SCENES:
        crop_stack(
            folder / "tests" / "data" / "slovenia" / f"S2L1C_{date}_13bands.tif",
            archive / f"S2L1C_{date}_13bands.tif",
            40,
        )
    config = yaml.safe_load((folder / "tests" / "workflow" / "config.yaml").read_text())
    config["run"]["name"] = "nights"
    config["model"]["bundle"] = "results/slovenia/model"
    config["imagery"]["paths"] = ["archive/*.tif"]
    config["nightly"] = {"max_change_percent": 20.0, "max_thin_percent": 100.0}
    config["domain"] = {"bbox": [14.549, 45.864, 14.567, 45.877]}  # one grid every night, as a HARMONIE domain gives
    (folder / "nights.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_three_nights_and_a_quiet_one(nights: Path) -> None:
    status, line = night(nights)
    assert "s2ecosg-nightly OK run=nights changed=first-product" in line and "new_scenes=4" in line
    first = published_products(nights)[-1]
    assert validate_cover(first / "S2ECOSG_SLO") == []

    # Night 2: a scene reaching ten columns further east: a few cells gain a cover, under the 20 % limit.
    source = nights / "tests" / "data" / "slovenia" / "S2L1C_2015-09-09_13bands.tif"
    crop_stack(source, nights / "archive" / "S2L1C_2015-09-09_13bands.tif", 50)
    status, line = night(nights)
    assert status == 0 and "new_scenes=1 " in line and "newest_scene=2015-09-09" in line
    second = published_products(nights)[-1]
    report = json.loads((second / "changes" / "changes.json").read_text())
    confident, uncertain, km2 = brute_force_changes(first / "S2ECOSG_SLO", second / "S2ECOSG_SLO", 0.1)
    assert {(pair["from"], pair["to"]): pair["cells"] for pair in report["transitions"]} == confident
    assert {(pair["from"], pair["to"]): pair["cells"] for pair in report["uncertain_transitions"]} == uncertain
    assert report["changed_cells"] == sum(confident.values()) > 0
    assert report["changed_km2"] == pytest.approx(km2, rel=1e-6, abs=1e-3)
    assert f"changed={report['changed_percent']:.2f}%" in line and 0 < report["changed_percent"] <= 20

    # Night 3: a whole scene: most of the domain changes; the gate holds the product, nothing is published.
    shutil.copy(source, nights / "archive" / "S2L1C_2015-09-19_13bands.tif")
    status, line = night(nights, check=False)
    assert status == 3 and "s2ecosg-nightly FAILED run=nights reason=change" in line and "nothing published" in line
    assert published_products(nights)[-1] == second and (nights / "published" / "latest").resolve() == second
    held = json.loads((nights / "results" / "nights" / "changes" / "changes.json").read_text())
    assert held["changed_percent"] > 20  # the report stays beside the run for review
    status, line = night(nights, "--accept")
    assert "s2ecosg-nightly OK run=nights" in line and "accepted=change" in line
    third = published_products(nights)[-1]
    assert third != second and (nights / "published" / "latest").resolve() == third

    # A night without a new scene: nothing restaged, nothing changed.
    status, line = night(nights)
    assert "changed=0.00% km2=0 uncertain=0.00%" in line and "new_scenes=0 (no new scene)" in line


def test_the_netcdf_carries_the_data_score(nights: Path) -> None:
    base = nights / "results" / "nights" / "cover" / "S2ECOSG_SLO"
    if not Path(f"{base}.nc").exists():
        night(nights)
    import xarray

    with xarray.open_dataset(f"{base}.nc") as dataset:
        observations, newest = dataset["clear_observations"], dataset["newest_observation"]
        share = dataset["predicted_share"]
        assert observations.attrs["units"] == "1" and share.attrs["units"] == "1"
        assert newest.dtype.kind == "M" and newest.encoding["units"] == "days since 1970-01-01"
        predicted = dataset["source"].values == 1
        assert (observations.values[predicted] >= 1).all() and np.nanmax(share.values) <= 1.0
        latest = newest.values[predicted].max()
        assert str(latest)[:10] <= "2015-09-19"
    readme = (base.parent / "README.md").read_text()
    assert "## Data score" in readme and "clear observations" in readme and "processing_baselines" in readme


def test_an_unreachable_catalogue_is_a_failed_night_with_its_reason(nights: Path) -> None:
    config = yaml.safe_load((nights / "nights.yaml").read_text())
    config["run"]["name"] = "unreachable"
    config["imagery"] = {
        "source": "stac",
        "aoi": [14.55, 45.865, 14.565, 45.875],
        "stac": {"url": "http://127.0.0.1:9/", "retries": 1, "backoff": 0.01, "timeout": 2},
    }
    (nights / "unreachable.yaml").write_text(yaml.safe_dump(config))
    status, line = night(nights, check=False, config="unreachable.yaml")
    assert status != 0 and "s2ecosg-nightly FAILED run=unreachable" in line and "reason=archive" in line
    assert "logs/unreachable/stage/inventory.log" in line


def test_the_nights_line_says_whether_there_was_a_new_scene() -> None:
    from s2ecosg.nightly.review import Night

    assert Night(412, 0, "2026-12-05").line() == "new_scenes=0 (no new scene) scenes=412 newest_scene=2026-12-05"
    assert Night(415, 3, "2026-12-06").line() == "new_scenes=3 scenes=415 newest_scene=2026-12-06"
