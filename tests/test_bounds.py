"""Every accepted config runs in bounded memory; values that would not are one line naming the key (issue 30)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import BIN, run

from s2ecosg.cli import main
from s2ecosg.config import Config
from s2ecosg.config_files import load_config, validate_sections
from s2ecosg.errors import InputError
from s2ecosg.memory import Need, check_memory, cover_need, predict_need, stage_need

BASE = {"labels": {"path": "x"}, "imagery": {"paths": ["x"]}}


def numeric_keys() -> list[tuple[str, str, dict[str, Any]]]:
    """(section, key, schema) of every numeric key of the config schema that has a bound."""
    schema = Config.model_json_schema()
    sections = {name: schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]] for name, ref in schema["properties"].items()}
    keys = []
    for section, definition in sections.items():
        for key, field in definition.get("properties", {}).items():
            kinds = [field.get("type")] + [option.get("type") for option in field.get("anyOf", [])]
            bounded = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & set(field)
            if {"number", "integer"} & set(kinds) and bounded:
                keys.append((section, key, field))
    return keys


def check(section: str, key: str, value: Any) -> tuple[int, str]:
    """``s2ecosg check-config`` of the base config with one key set: (exit status, output)."""
    config = {**BASE, section: {**BASE.get(section, {}), key: value}}
    runner = CliRunner()
    with runner.isolated_filesystem():
        Path("x").touch()
        Path("c.yaml").write_text(yaml.safe_dump(config))
        result = runner.invoke(main, ["check-config", "c.yaml"])
    return result.exit_code, result.output


def values_at_and_beyond(field: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(values on the bounds, values just beyond them) of a numeric schema field."""
    integer = "integer" in (field.get("type"), *[option.get("type") for option in field.get("anyOf", [])])
    step = 1 if integer else 1e-6
    at, beyond = [], []
    if "minimum" in field:
        at.append(field["minimum"])
        beyond.append(field["minimum"] - step)
    if "exclusiveMinimum" in field:
        at.append(field["exclusiveMinimum"] + step)
        beyond.append(field["exclusiveMinimum"])
    if "maximum" in field:
        at.append(field["maximum"])
        beyond.append(field["maximum"] + step)
    if "exclusiveMaximum" in field:
        at.append(field["exclusiveMaximum"] - step)
        beyond.append(field["exclusiveMaximum"])
    return at, beyond


@pytest.mark.parametrize(("section", "key", "field"), numeric_keys(), ids=lambda item: str(item)[:30])
def test_every_numeric_key_at_its_bounds_and_beyond(section: str, key: str, field: dict[str, Any]) -> None:
    at, beyond = values_at_and_beyond(field)
    for value in beyond:
        status, output = check(section, key, value)
        assert status == 1 and len(output.strip().splitlines()) == 1, (value, output)
        assert f"{section}.{key}" in output and "unexpected" not in output, (value, output)
    for value in at:
        status, output = check(section, key, value)
        assert "unexpected" not in output and len(output.strip().splitlines()) >= 1
        if status == 0:  # accepted: each job's memory is known before it allocates
            config = validate_sections({**BASE, section: {**BASE.get(section, {}), key: value}})
            for need in (stage_need(config, 25), predict_need(config, 25), cover_need(config, 8)):
                assert 0 < need.megabytes < 10**6, (key, value, need)
        else:  # refused by a rule across sections: one line naming it
            assert len(output.strip().splitlines()) == 1, output
    if field.get("type") == "number" or "number" in str(field):
        for value in (math.inf, -math.inf, math.nan):
            status, output = check(section, key, value)
            assert status == 1 and f"{section}.{key}" in output and "finite" in output, output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cover": {"member_length_m": 1}}, r"cover\.member_length_m 1 m is below the pixel size"),
        ({"cover": {"member_length_m": math.inf}}, r"cover\.member_length_m: Input should be a finite number"),
        ({"predict": {"halo": 100000}}, r"predict\.halo 100000 px exceeds a grid tile \(1000 px\)"),
        ({"grid": {"tile_size": 100000}}, r"grid\.tile_size 100000 m .* at most 4000"),
        ({"cover": {"resolution_deg": 1e-6}}, r"cover\.resolution_deg 1e-06 is below one pixel"),
    ],
)
def test_the_reported_values_stop_when_the_config_is_read(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config({**BASE, **change})


def test_a_job_given_less_memory_than_it_needs_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    config = validate_sections({**BASE, "predict": {"batch_size": 1024, "window": 1024}})
    need = predict_need(config, 25)
    assert need.key == "predict.batch_size" and need.megabytes > 100_000
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4000")
    with pytest.raises(
        InputError,
        match=rf"predict\.batch_size: this predict job needs ≈ {need.megabytes} MB .* given 4000 MB \(SLURM_MEM_PER_NODE\)",
    ):
        check_memory(need, "predict")
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    monkeypatch.setenv("SLURM_MEM_PER_CPU", "100")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "2")
    with pytest.raises(InputError, match=r"given 200 MB \(SLURM_MEM_PER_CPU × SLURM_CPUS_ON_NODE\)"):
        check_memory(Need(300, "grid.block_tiles", "test"), "stage")


def test_a_cover_job_with_too_little_memory_stops_before_it_allocates(slovenia_run: Path) -> None:
    results = slovenia_run / "results" / "slovenia"
    config = next((results / "config").glob("*.json"))
    command = [
        str(BIN / "s2ecosg"),
        "cover",
        "--run-config",
        str(config),
        "--card",
        str(results / "model" / "bundle.json"),
    ]
    command += ["--binary", str(slovenia_run / "mem" / "M.dir"), "--threads", "4"]
    command += sorted(str(path) for path in (results / "predict" / "blocks").glob("*.json"))
    result = run(command, cwd=slovenia_run, check=False, env={"SLURM_MEM_PER_NODE": "500"})
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and len(lines) == 1 and "unexpected" not in result.stderr
    assert (
        "cover.resolution_deg: this cover job needs ≈ 1840 MB (4 worker(s) of ≈ 360 MB) but was given 500 MB"
        in lines[0]
    )
    assert not (slovenia_run / "mem").exists()


def test_cuda_without_a_gpu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from s2ecosg.model.network import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"predict\.device: cuda asked for, but this node has no GPU visible"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_a_checkpoint_of_another_network_is_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from s2ecosg.config import TrainConfig
    from s2ecosg.model.network import UNet
    from s2ecosg.train.checkpoint import resume
    from s2ecosg.train.distributed import World
    from s2ecosg.train.parts import build_parts

    torch.save({"shards_digest": "d", "model": UNet("resnet18", 4, 5).state_dict()}, tmp_path / "last.pt")
    # model.encoder changed under the same run.name: the run's own parts, as the training builds them
    parts = build_parts(UNet("resnet34", 4, 5), TrainConfig(), World("single"), torch.device("cpu"), None)
    progress = resume(tmp_path / "last.pt", parts, "d")
    assert progress.epoch == 0 and progress.step == 0 and progress.history == [] and progress.best == -1.0
    assert "was written by another network" in caplog.text and "training starts afresh" in caplog.text


def test_a_full_disk_while_the_netcdf_is_written_is_one_line(tmp_path: Path) -> None:
    """The cover of the Lanjarón tiles with a file size limit that the netCDF reaches (as a full disk would)."""
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
from pathlib import Path
from cover.test_parallel import lanjaron_tiles, write
tiles = lanjaron_tiles(Path({str(tmp_path)!r}))
resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))
write(tiles, Path({str(tmp_path / "out")!r}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "InputError" in last and "cannot write" in last and "TILES" in last, result.stderr[-2000:]
    assert not [path for path in (tmp_path / "out").glob("TILES*") if not path.name.startswith(".")]
