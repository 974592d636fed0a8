"""Command of the labels stage: ``s2ecosg labels``."""

from __future__ import annotations

import click

from s2ecosg.cli.common import command, grid_of, log_option, with_config
from s2ecosg.config import Config
from s2ecosg.layout import folder_of_manifest


@click.command("labels")
@click.option("--tiles", required=True, help="Comma-separated grid tile names.")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="labels/blocks/<block>.json")
@log_option
@command
@with_config
def labels_command(config: Config, tiles: str, manifest: str) -> None:
    """Rasterise the reference labels onto the grid tiles of a block."""
    from s2ecosg.labels.run import run_labels_block

    names = [tile for tile in tiles.split(",") if tile]
    run_labels_block(config.labels, names, grid_of(config), folder_of_manifest(manifest), manifest)


COMMANDS = [labels_command]
