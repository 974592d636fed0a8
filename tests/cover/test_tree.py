"""The ECOCLIMAP-SG tree: domain and patch ways, member trees, read by pysurfex as PGD's input data."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import f90nml
import numpy as np
import pytest
import rasterio
import yaml
from conftest import BIN, DATA, ROOT, SNAKEMAKE, run
from pyproj import Transformer

from s2ecosg.config_files import load_config, write_run_config
from s2ecosg.legend import load_legend
from s2ecosg.surfex import decimal, parse_header, read_cover, write_cover
from s2ecosg.validate import validate_cover

# A regional ECOSG-layout map around the Slovenia test scene on ECOSG's own 1/360° grid: rows 0-4 sea (1), the rest
# temperate grassland (20); and the other folders of a service's ECOSG tree (files named as pysurfex asks for them).
MAP_BOUNDS = (14.5, 45.75, 14.7, 45.95)
OTHER_FILES = ("LAI/LAI_SAT/LAI_SAT_0105_c.dir", "ALB/ALB_SAT/ALB_SAT_NI_0105_c.dir", "HT/new_ht_c.dir")


def service_tree(folder: Path) -> Path:
    """A service's ECOCLIMAP-SG folder: COVER/ecosg_final_map (regional, 1/360°) and the other data folders."""
    tree = folder / "ECOCLIMAP-SG"
    (tree / "COVER").mkdir(parents=True)
    cover = np.full((72, 72), 20, np.uint8)
    cover[:5] = 1
    write_cover(tree / "COVER" / "ecosg_final_map", cover, MAP_BOUNDS, "the service's ecosg_final_map")
    (tree / "COVER" / "ecosg_final_map.hdr").write_text(  # as services have it: edges without decimals
        (tree / "COVER" / "ecosg_final_map.hdr").read_text().replace("north: 45.95", "north: 45.95000")
    )
    for name in OTHER_FILES:  # DIRECT pairs: pysurfex links the .hdr beside each .dir
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(b"\0" * 16)
        (tree / name).with_suffix(".hdr").write_text("a service's file\n")
    return tree


def tree_command(workflow: Path, service: Path, way: str, out: Path, members: int = 0) -> Path:
    """Run ``s2ecosg tree`` on the finished Slovenia run with cover.tree ``way``; the tree written."""
    config = yaml.safe_load((workflow / "tests" / "workflow" / "config.yaml").read_text())
    config["cover"] |= {"tree": way, "ecosg_tree": str(service), "members": members}
    run_config = out.parent / f"{way}{members}.json"
    write_run_config(load_config(config), str(run_config))
    results = workflow / "results" / "slovenia"
    command = [
        str(BIN / "s2ecosg"),
        "tree",
        "--run-config",
        str(run_config),
        "--card",
        str(results / "model" / "bundle.json"),
    ]
    command += ["--binary", str(results / "cover" / "S2ECOSG_SLO.dir"), "--out", str(out), "--threads", "2"]
    command += sorted(str(path) for path in (results / "predict" / "blocks").glob("*.json"))
    run(command, cwd=workflow)
    return out


def brute_force_patch(workflow: Path) -> dict[tuple[int, int], int]:
    """Map cell → the cover the patch must give it, from every predicted pixel one by one (independent code).

    A cell takes the most frequent cover of the pixel centres in it (ties: the lower cover) when predicted pixels
    (100 m² each) cover at least half its area on the sphere.
    """
    legend = {
        int(row["id"]): int(row["ecosg"]) for row in load_legend("slovenia_lulc").to_records()
    }  # temperate at 46° N
    counts: dict[tuple[int, int], dict[int, int]] = {}
    to_lonlat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    predicted = (workflow / "results" / "slovenia" / "predict").glob("E*N*.tif")
    for path in sorted(path for path in predicted if path.name.count(".") == 1):  # class rasters, not top2.tif
        with rasterio.open(path) as raster:
            ids, transform = raster.read(1), raster.transform
        rows, columns = np.nonzero(ids)
        x, y = transform * (columns + 0.5, rows + 0.5)
        lon, lat = to_lonlat.transform(x, y)
        for id_, longitude, latitude in zip(ids[rows, columns], lon, lat, strict=True):
            cell = (math.floor((45.95 - latitude) * 360), math.floor((longitude - 14.5) * 360))
            cover = int(legend[int(id_)])
            counts.setdefault(cell, {}).setdefault(cover, 0)
            counts[cell][cover] += 1
    expected = {}
    for (row, column), by_cover in counts.items():
        north = math.radians(45.95 - row / 360)
        south = math.radians(45.95 - (row + 1) / 360)
        area = 6371007.2**2 * math.radians(1 / 360) * (math.sin(north) - math.sin(south))
        if sum(by_cover.values()) * 100 >= 0.5 * area:
            expected[(row, column)] = min(by_cover, key=lambda cover: (-by_cover[cover], cover))
    return expected


@pytest.fixture(scope="module")
def trees(slovenia_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The service's tree and the trees written from the Slovenia run: domain, patch and patch with a member."""
    folder = tmp_path_factory.mktemp("trees")
    service = service_tree(folder / "service")
    return {
        "service": service,
        "domain": tree_command(slovenia_run, service, "domain", folder / "domain" / "ECOCLIMAP-SG"),
        "patch": tree_command(slovenia_run, service, "patch", folder / "patch" / "ECOCLIMAP-SG", members=1),
    }


def test_domain_tree_holds_the_runs_cover_under_the_fixed_name(trees: dict[str, Path], slovenia_run: Path) -> None:
    cover = slovenia_run / "results" / "slovenia" / "cover" / "S2ECOSG_SLO"
    pair = trees["domain"] / "COVER" / "ecosg_final_map"
    assert Path(f"{pair}.dir").read_bytes() == Path(f"{cover}.dir").read_bytes()
    assert Path(f"{pair}.hdr").read_text() == Path(f"{cover}.hdr").read_text()
    assert validate_cover(pair) == []
    for name in OTHER_FILES:
        assert (trees["domain"] / name).read_bytes() == (trees["service"] / name).read_bytes()
    assert (trees["domain"] / "LAI").is_symlink() and (trees["domain"] / "COVER").is_dir()


def test_patch_tree_replaces_exactly_the_cells_the_run_predicts(trees: dict[str, Path], slovenia_run: Path) -> None:
    original, _ = read_cover(trees["service"] / "COVER" / "ecosg_final_map")
    patched, header = read_cover(trees["patch"] / "COVER" / "ecosg_final_map")
    expected = brute_force_patch(slovenia_run)
    assert len(expected) >= 10  # the 1 km² scene fills a dozen 1/360° cells
    changed = {(int(row), int(column)) for row, column in zip(*np.nonzero(patched != original), strict=True)}
    assert changed <= set(expected)  # every other byte is the map's own
    for (row, column), cover in expected.items():
        assert patched[row, column] == cover, (row, column)
    # The header keeps the map's edges exactly; line 1 names the run (its hash) and the map it patched.
    assert (header["north"], header["south"], header["west"], header["east"]) == (45.95, 45.75, 14.5, 14.7)
    run_hash = json.loads(next((slovenia_run / "results" / "slovenia" / "config").glob("*.json")).read_text())
    assert "run " in header["comment"] and "patched into" in header["comment"] and run_hash
    assert validate_cover(trees["patch"] / "COVER" / "ecosg_final_map") == []


def test_member_tree_shares_everything_but_its_cover(trees: dict[str, Path], slovenia_run: Path) -> None:
    member = trees["patch"].with_name("ECOCLIMAP-SG_M01")
    assert validate_cover(member / "COVER" / "ecosg_final_map") == []
    for name in OTHER_FILES:
        assert (member / name).resolve() == (trees["service"] / name).resolve()
    assert (member / "COVER").is_dir() and not (member / "COVER").is_symlink()
    original, _ = read_cover(trees["service"] / "COVER" / "ecosg_final_map")
    drawn, header = read_cover(member / "COVER" / "ecosg_final_map")
    # The member's draws replace cells of the same predicted area (the area rule does not depend on the draws).
    changed = {(int(row), int(column)) for row, column in zip(*np.nonzero(drawn != original), strict=True)}
    assert changed <= set(brute_force_patch(slovenia_run)) and (drawn[:5] == 1).all()
    assert header["comment"].startswith("ecosg_final_map_M01 ")


PGD_NAMELIST = """
&NAM_FRAC LECOSG = .TRUE. /
&NAM_COVER YCOVER = "ecosg_final_map", YCOVERFILETYPE = "DIRECT" /
&NAM_DATA_ISBA
    NTIME = 36
    CFNAM_LAI(1,1) = "lai_1_0105", CFTYP_LAI(1,1) = "DIRTYP"
    CFNAM_ALBNIR_SOIL(1,1) = "albnir_soil_1_0105", CFTYP_ALBNIR_SOIL(1,1) = "DIRTYP"
    CFNAM_H_TREE(1) = "h_tree_1", CFTYP_H_TREE(1) = "DIRTYP"
/
"""


@pytest.mark.parametrize("way", ["domain", "patch", "member"])
def test_pysurfex_finds_every_file_pgd_asks_for_in_the_tree(trees: dict[str, Path], way: str) -> None:
    """The PGD namelist, resolved by pysurfex against the tree (ecosg_data_path) with its own input-data mapping."""
    from pysurfex.binary_input import InputDataFromNamelist
    from pysurfex.platform_deps import SystemFilePaths

    tree = trees["patch"].with_name("ECOCLIMAP-SG_M01") if way == "member" else trees[way]
    mapping = json.loads((DATA / "pysurfex" / "binary_input_data.json").read_text())
    platform = SystemFilePaths({"ecosg_data_path": str(tree), "climdir": str(tree.parent)})
    found = InputDataFromNamelist(f90nml.reads(PGD_NAMELIST), mapping, "pgd", platform).data
    assert found["ecosg_final_map.dir"] == f"{tree}/COVER/ecosg_final_map.dir"
    covers = [Path(path) for path in found.values() if "/COVER/" in path]
    assert {path.suffix for path in covers} == {".dir", ".hdr"} or {path.suffix for path in covers} == {".dir"}
    for path in found.values():
        assert Path(path).is_file(), path  # every file pysurfex would link for PGD is in the tree
    assert validate_cover(covers[0].with_suffix("")) == []


def test_header_edges_are_never_rounded() -> None:
    for value in (45.875277777777775, -10.002777777777778, 1 / 360, 180.0, -0.0, 53.0):
        text = decimal(value)
        assert float(text) == value and "e" not in text.lower() and "." in text


def test_a_map_with_cells_that_are_not_square_is_one_line(tmp_path: Path, slovenia_run: Path) -> None:
    service = service_tree(tmp_path / "service")
    header = service / "COVER" / "ecosg_final_map.hdr"
    header.write_text(header.read_text().replace("east: 14.7", "east: 14.9"))
    with pytest.raises(AssertionError, match=r"ecosg_final_map\.hdr: cells are not square"):
        tree_command(slovenia_run, service, "patch", tmp_path / "out" / "ECOCLIMAP-SG")
    assert not (tmp_path / "out" / "ECOCLIMAP-SG").exists()
    assert parse_header(header)["east"] == 14.9


def test_snakemake_writes_the_tree_and_the_slurm_profile_resolves(slovenia_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "workflow"
    shutil.copytree(slovenia_run, folder, symlinks=True)
    service = service_tree(tmp_path / "service")
    config = yaml.safe_load((folder / "tests" / "workflow" / "config.yaml").read_text())
    config["cover"] |= {"tree": "patch", "ecosg_tree": str(service)}
    (folder / "tree.yaml").write_text(yaml.safe_dump(config))
    result = run([*SNAKEMAKE, "--configfile", "tree.yaml"], cwd=folder, timeout=900)
    assert "rule tree:" in result.stdout + result.stderr
    pair = folder / "results" / "slovenia" / "tree" / "ECOCLIMAP-SG" / "COVER" / "ecosg_final_map"
    assert validate_cover(pair) == []
    # The users' literal command from the workflow's folder: the profile named slurm is ours (profiles/slurm, through
    # the link `slurm` at the top of the repository, which Snakemake finds in the working directory).
    (folder / "slurm").symlink_to(os.readlink(ROOT / "slurm"))
    dry = run(["snakemake", "--profile", "slurm", "-n", "--configfile", "tree.yaml"], cwd=folder, timeout=300)
    output = dry.stdout + dry.stderr
    assert "Using profile slurm" in output and "Nothing to be done" in output
