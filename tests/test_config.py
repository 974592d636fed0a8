"""Config validation, the JSON schema, the CLI surface and the pins of envs/runtime.yml."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from conftest import ROOT

from s2ecosg.config import Config
from s2ecosg.config_files import json_schema, load_config, read_config_file
from s2ecosg.errors import InputError


def test_shipped_configs_are_valid() -> None:
    demo = read_config_file(ROOT / "config.yaml", ROOT / "config" / "demo.yaml")
    assert demo.imagery.bands == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert demo.cover.basename == "S2ECOSG_DEMO" and demo.model.encoder == "resnet50"
    assert (demo.train.epochs, demo.train.steps_per_epoch) == (4, 15)
    read_config_file(ROOT / "tests" / "workflow" / "config.yaml")


def test_config_yaml_holds_the_code_defaults() -> None:
    """Every key of every section is in config.yaml with the model's default: a copy of it sets no trap."""
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name, field in Config.model_fields.items():
        defaults = field.default_factory.model_construct().model_dump(mode="json")
        assert set(shipped[name]) == set(defaults), name
        for key, value in defaults.items():
            assert yaml.safe_load(yaml.safe_dump(shipped[name][key])) == value or str(shipped[name][key]) == str(
                value
            ), f"{name}.{key}: config.yaml {shipped[name][key]!r}, code {value!r}"
    with pytest.raises(InputError, match="config.yaml: imagery: imagery.paths is empty"):
        read_config_file(ROOT / "config.yaml")  # the template alone names no imagery: one line says so


def test_every_config_key_is_commented() -> None:
    for line in (ROOT / "config.yaml").read_text().splitlines():
        if re.match(r"^\s+\w+:\s*\S", line):
            assert "#" in line, line


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"shards": {"strid": 8}}, "shards.strid: unknown key"),
        ({"grid": {"tile_size": 2500}}, "multiple of 1000"),
        ({"imagery": {"paths": ["x.tif"], "bands": ["B02", "B13"]}}, "unknown Sentinel-2 band"),
        ({"imagery": {"source": "stac", "aoi": [1, 2, 3, 4]}}, "needs imagery.stac"),
        ({"imagery": {"paths": []}}, "imagery.paths is empty"),
        ({"cover": {"basename": "A" * 25}}, "cover.basename"),
        ({"predict": {"window": 64, "overlap": 64}}, "overlap must be smaller"),
        ({"labels": {"path": None}}, "labels.path is needed"),
        ({"train": {"backend": "mpi"}}, "train.backend"),
        ({"train": {"encoder_lr_factor": 2}}, "train.encoder_lr_factor"),
        ({"domain": {"name": "NOWHERE"}}, "domain: unknown domain; known: IRELAND25"),
        (
            {"shards": {"patch": 48, "stride": 16}},
            "shards.patch 48 must be a multiple of 32, the output stride of resnet50",
        ),
        ({"predict": {"window": 24, "overlap": 0}}, "predict.window 24 must be a multiple of 32 (the output stride of"),
        (
            {"predict": {"window": 32, "overlap": 0}},
            "predict.window 32 must be a multiple of 32 (the output stride of resnet50), ≥ 64",
        ),
        ({"predict": {"window": 200}}, "predict.window 200 must be a multiple of 32"),
        (
            {"model": {"encoder": "vgg16"}},
            "model.encoder: unknown encoder 'vgg16'; known: resnet18, resnet34, resnet50",
        ),
        ({"imagery": {"source": "s3", "paths": ["x.tif"]}}, "imagery.source: unknown source 's3'; known: local, stac"),
        (
            {"cover": {"basename": "S2ECOSG_IRELAND_2026X", "members": 2}, "predict": {"top2": True}},
            "S2ECOSG_IRELAND_2026X_M01 has 25 characters, SURFEX reads at most 24",
        ),
        ({"cover": {"members": 2}}, "set predict.top2 or predict.probabilities"),
        ({"cover": {"fractions": "soft"}}, "set predict.top2 or predict.probabilities"),
        ({"predict": {"probabilities": 5}}, "predict.probabilities: Input should be less than or equal to 4"),
    ],
)
def test_bad_config_is_one_line(raw: dict, message: str) -> None:
    raw = {"labels": {"path": "x.tif"}, "imagery": {"paths": ["x.tif"]}, **raw}
    with pytest.raises(InputError, match=re.escape(message)) as error:
        load_config(raw, "my.yaml")
    assert str(error.value).startswith("my.yaml: ") and "\n" not in str(error.value)


def test_schema_lists_every_section() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(Config.model_fields)
    assert schema["$defs"]["ShardsConfig"]["additionalProperties"] is False


def test_env_pins_agree_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["slurm"]:
        name, version = requirement.split("==")
        pins[name.lower().replace("_", "-")] = version
    conda = {"pytorch": "torch", "netcdf4": "netcdf4"}
    environment = yaml.safe_load((ROOT / "envs" / "runtime.yml").read_text())
    listed = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, str) and "=" in entry and not entry.startswith("python="):
            name, version = entry.split("=")
            listed[conda.get(name, name)] = version
    for name, version in pins.items():
        assert name in listed, f"{name} missing from envs/runtime.yml"
        # conda-forge has no ".postN" releases: the base version must agree.
        assert listed[name] == re.sub(r"\.post\d+$", "", version), name


def test_a_member_name_of_24_characters_is_accepted() -> None:
    raw = {"labels": {"path": "x.tif"}, "imagery": {"paths": ["x.tif"]}, "predict": {"top2": True}}
    config = load_config(raw | {"cover": {"basename": "S2ECOSG_IRELAND_2026", "members": 2}}, "my.yaml")
    assert len(f"{config.cover.basename}_M02") == 24
