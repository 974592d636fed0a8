"""Commands about configs and finished runs: ``check-config``, ``config-schema``, ``summary``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from s2ecosg.cli.common import command
from s2ecosg.config_files import check_input_paths, json_schema, read_config_file
from s2ecosg.errors import InputError
from s2ecosg.layout import RunLayout
from s2ecosg.surfex import read_cover
from s2ecosg.validate import validate_cover


@click.command("check-config")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@command
def check_config_command(paths: tuple[str, ...]) -> None:
    """Validate config files (layered in order, as `snakemake --configfile A B`); print the config the workflow runs.

    Input files and folders the config names must exist (as the workflow checks at start).
    """
    config = read_config_file(*paths)
    check_input_paths(config, " + ".join(paths))
    click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


@click.command("config-schema")
@command
def config_schema_command() -> None:
    """Print the JSON schema of config.yaml."""
    click.echo(json.dumps(json_schema(), indent=2))


@click.command("summary")
@click.argument("config_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@command
def summary_command(config_paths: tuple[str, ...]) -> None:
    """Print where a finished run's cover file is, its format check and the agreement metrics."""
    config = read_config_file(*config_paths)
    layout = RunLayout(config.run.name)
    base = layout.cover(config.cover.basename)
    if not Path(f"{base}.dir").exists():
        raise InputError(f"{base}.dir", f"no cover yet for run {config.run.name} (run the workflow first)")
    problems = validate_cover(base)
    if problems:
        raise InputError(f"{base}.dir", f"format check failed: {problems[0]}")
    cover, header = read_cover(base)
    click.echo(
        f"cover file: {base}.dir (+ .hdr, .nam): {int(header['rows'])} rows × {int(header['cols'])} cols, "
        f"{100 * (cover > 0).mean():.1f} % of cells with a cover; format check: ok"
    )
    metrics = Path(layout.evaluate("metrics.md"))
    if metrics.exists():
        click.echo(metrics.read_text())
        click.echo(f"picture: {layout.evaluate('panels.png')}")


COMMANDS = [check_config_command, config_schema_command, summary_command]
