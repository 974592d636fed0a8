"""The command line: one module per stage registered on one group; the run's whole config reaches every command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import ROOT

from s2ecosg.cli import MODULES, main
from s2ecosg.cli.common import command_config
from s2ecosg.config_files import config_hash, read_config_file, write_run_config


def test_every_command_of_every_stage_module_is_registered_and_has_help() -> None:
    names = [each.name for module in MODULES for each in module.COMMANDS]
    assert len(names) == len(set(names)) and set(names) == set(main.commands)
    runner = CliRunner()
    for name in names:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_every_rule_hands_its_command_the_run_config() -> None:
    """Each shell command of a rule that runs a stage passes --run-config (mosaic and baseline-predict need none)."""
    rules = "\n".join(path.read_text() for path in sorted((ROOT / "rules").glob("*.smk")))
    commands = re.findall(r'"(?:\{params\.launch\} )?s2ecosg ([a-z-]+) ([^"]*)"', rules)
    for name, arguments in commands:
        if name not in ("mosaic", "baseline-predict"):
            assert arguments.startswith("--run-config {resources.run_config}"), name


def test_the_run_config_file_gives_the_same_config_and_hash(tmp_path: Path) -> None:
    config = read_config_file(ROOT / "config.yaml", ROOT / "config" / "demo.yaml")
    path = tmp_path / "config" / f"{config_hash(config)}.json"
    write_run_config(config, path)
    loaded = command_config(str(path), None)
    assert loaded == config and config_hash(loaded) == config_hash(config)
    assert yaml.safe_load(path.read_text()) == json.loads(path.read_text())  # JSON: read as any config file


def test_settings_sections_take_defaults_for_the_rest() -> None:
    config = command_config(None, '{"predict": {"window": 128, "overlap": 32}}')
    assert config.predict.window == 128 and config.train.epochs == 30 and config.cover.basename
