"""Shared fixtures: paths to the real test data, a strict skip under CI, subprocess helpers."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
DEMO = ROOT / "data" / "demo" / "brandenburg"
BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of one run fixture form one pytest-xdist group (``--dist loadgroup``): a worker makes each run once.

    The heaviest tests on the Slovenia run, which start runs of their own, are marked ``xdist_group("slovenia-b")``
    so that a second worker makes its own copy of the run and shares that load. A test whose session fixture makes
    a workflow run gets that run's time (the run's own subprocess timeout) besides the usual 300 s.
    """
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "demo" in names or "slovenia_run" in names:
            item.add_marker(pytest.mark.timeout(1500))
        if item.get_closest_marker("xdist_group"):
            continue
        group = "demo" if "demo" in names else "slovenia" if "slovenia_run" in names else None
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False):  # in an xdist worker of --dist loadgroup
        # The scheduler groups tests by an "@group" suffix of their node id. xdist 3.8 writes it to ``_nodeid``,
        # which pytest 9.2 no longer reads (node ids live in ``_id``), so the suffix is written here.
        from _pytest.nodeid import coerce_node_id

        for item in items:
            groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
            if groups and "@" not in item.nodeid:
                item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI=true a skipped test fails: every component it needs must be installed there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() == "true" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be missing: {report.longrepr}"


def run(
    command: list[str], cwd: Path, timeout: int = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with the venv's bin first on PATH and a hard time limit; output captured."""
    environment = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
            + failed_job_logs(result.stdout + result.stderr, cwd)
        )
    return result


def failed_job_logs(output: str, cwd: Path) -> str:
    """The rule logs of the jobs a Snakemake run reports as failed (their ends), with any native crash's stacks.

    Snakemake's own output may be cut short above; a job's log (and the stacks faulthandler wrote into it) is what
    tells why a run failed under load.
    """
    text = ""
    for section in output.split("Error in rule ")[1:]:
        found = re.search(r"^\s+log: (\S+)", section, flags=re.MULTILINE)
        if found and (cwd / found.group(1)).is_file():
            text += f"\n--- log of the failed job {found.group(1)}:\n{(cwd / found.group(1)).read_text(errors='replace')[-4000:]}"
    return text


SNAKEMAKE = ["snakemake", "--profile", "profiles/local", "--cores", "2"]
DEMO_CONFIG = ["config.yaml", "config/demo.yaml"]  # as `make demo` layers them


@pytest.fixture(scope="session")
def slovenia_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full run of the reduced config on the real Slovenia set (session-wide: the checks of all modules share it)."""
    folder = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, folder / name)
    shutil.copytree(DATA, folder / "tests" / "data")
    shutil.copytree(ROOT / "tests" / "workflow", folder / "tests" / "workflow")
    run([*SNAKEMAKE, "--configfile", "tests/workflow/config.yaml"], cwd=folder, timeout=900)
    return folder


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo exactly as `make demo` runs it (real Brandenburg scene, ResNet-50), once per session."""
    folder = tmp_path_factory.mktemp("demo")
    for name in ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml", "config", "data"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, folder / name)
    command = ["snakemake", "--profile", "profiles/local", "--cores", "2", "--configfile", *DEMO_CONFIG]
    run(command, cwd=folder, timeout=1200)
    return folder


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, envs, profiles) and test data in a temporary folder."""
    for name in ("Snakefile", "rules", "envs", "profiles", "report"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    shutil.copytree(DATA, tmp_path / "tests" / "data")
    shutil.copytree(ROOT / "tests" / "workflow", tmp_path / "tests" / "workflow")
    return tmp_path


def write_shard_set(
    folder: Path,
    splits: dict[str, tuple[object, object]],
    bands: list[str],
    legend: str = "slovenia_lulc",
    tiles: int = 2,
) -> dict:
    """A shard set as the shards jobs write it (tile shards, a block manifest, the index) from patch arrays.

    ``splits``: split → ((N, bands, P, P) uint16 images, (N, P, P) uint8 class ids); the patches of each split are
    dealt to ``tiles`` tiles in turn, so the index spans several files. Returns the index.
    """
    from s2ecosg.blocks import write_manifest
    from s2ecosg.config_files import validate_sections
    from s2ecosg.legend import load_legend
    from s2ecosg.shards.cut import ShardLayout, write_shard
    from s2ecosg.shards.index import run_shards_index

    patch = next(iter(splits.values()))[0].shape[-1]
    entries = {}
    for number in range(tiles):
        tile = f"E{number}N0"
        places, arrays = [], []
        for split, (images, labels) in splits.items():
            for index in range(number, len(images), tiles):
                places.append((0, index, split))
                arrays.append((images[index], labels[index]))
        layout = ShardLayout(bands, patch, patch, {"image": "-", "labels": "-"}, set())
        content = hashlib.sha256(b"".join(part.tobytes() for pair in arrays for part in pair)).hexdigest()[:20]
        write_shard(folder, tile, places, arrays.__getitem__, layout, load_legend(legend), content)
        entries[tile] = {"signature": content, "header": str(folder / f"{tile}.json")}
    write_manifest(folder / "blocks" / "E0N0.json", "E0N0", entries)
    settings = validate_sections({"shards": {"patch": patch, "stride": patch}, "labels": {"legend": legend}})
    return run_shards_index(settings, [str(folder / "blocks" / "E0N0.json")], str(folder)).model_dump(mode="json")


def jobs_run(output: str) -> list[tuple[str, str]]:
    """(rule, tile or block wildcard or "") of every job Snakemake started, from its log output."""
    jobs, rule = [], None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ", "checkpoint ", "localcheckpoint ")) and stripped.endswith(":"):
            rule = stripped.split()[1].rstrip(":")
            jobs.append((rule, ""))
        elif stripped.startswith(("wildcards: tile=", "wildcards: block=")) and jobs:
            jobs[-1] = (jobs[-1][0], stripped.split("=", 1)[1])
    return jobs


def crop_stack(source: Path, target: Path, columns: int) -> None:
    """The first ``columns`` columns of a stack, as a new scene file (same bands, CRS and pixel grid)."""
    from rasterio.windows import Window

    with rasterio.open(source) as stack:
        window = Window(0, 0, columns, stack.height)
        profile = dict(stack.profile, width=columns, transform=stack.window_transform(window))
        data, names = stack.read(window=window), stack.descriptions
    with rasterio.open(target, "w", **profile) as destination:
        destination.write(data)
        for index, name in enumerate(names, start=1):
            destination.set_band_description(index, name)


def config_variant(folder: Path, name: str, change: dict) -> str:
    """tests/workflow/config.yaml with sections updated by ``change``, written as ``<name>.yaml``; returns its name."""
    config = yaml.safe_load((folder / "tests" / "workflow" / "config.yaml").read_text())
    for section, values in change.items():
        config[section] = None if values is None else {**config.get(section, {}), **values}
    config = {section: values for section, values in config.items() if values is not None}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return f"{name}.yaml"


def make_cover(
    rasters: list[str],
    confidences: list[str | None],
    legend: object,
    settings: object,
    domain: object,
    basename: str,
    provenance: dict[str, str],
    workers: int = 1,
    cache: str | None = None,
    reader: object | None = None,
    ensemble: object | None = None,
) -> dict[str, int]:
    """``run_cover`` of a request built from the arguments the cover tests give (the default reader: most likely)."""
    from s2ecosg.cover.aggregate import MOST_LIKELY
    from s2ecosg.cover.run import CoverRequest, run_cover

    request = CoverRequest(
        rasters,
        legend,  # type: ignore[arg-type]
        settings,  # type: ignore[arg-type]
        domain,  # type: ignore[arg-type]
        basename,
        provenance,
        confidences=confidences,
        workers=workers,
        cache=cache,
        reader=reader or MOST_LIKELY,  # type: ignore[arg-type]
        ensemble=ensemble,  # type: ignore[arg-type]
    )
    return run_cover(request)
