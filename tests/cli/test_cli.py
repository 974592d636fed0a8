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


def rule_commands() -> dict[str, str]:
    """Rule name → its shell command (the string literals after ``shell:`` joined), for every rule with one."""
    commands = {}
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"^(?= *(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.MULTILINE)[1:]:
            name = re.match(r" *(?:rule|checkpoint) (\w+):", block).group(1)  # type: ignore[union-attr]
            shell = re.search(r"^( +)shell:\n((?:\1    .*\n?)+)", block, flags=re.MULTILINE)
            if shell:
                commands[name] = "".join(re.findall(r'"([^"]*)"', shell.group(2)))
    return commands


def test_every_rule_hands_its_command_the_run_config() -> None:
    """Each rule's shell runs s2ecosg with --run-config (mosaic and baseline-predict need none)."""
    commands = rule_commands()
    rules = "\n".join(path.read_text() for path in sorted((ROOT / "rules").glob("*.smk")))
    assert len(commands) == rules.count("    shell:") >= 12  # every rule's command was found and checked
    for rule, command in commands.items():
        assert re.match(r"^(\{params\.launch\} )?s2ecosg [a-z-]+ ", command), rule
        name = command.split("s2ecosg ", 1)[1].split()[0]
        assert name in main.commands, f"rule {rule} runs s2ecosg {name}, which is no command"
        if name not in ("mosaic", "baseline-predict"):
            assert "--run-config {resources.run_config}" in command, rule


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
