"""Commands of the shards stage: ``s2ecosg shards`` (one block) and ``s2ecosg shards-index``."""

from __future__ import annotations

from pathlib import Path

import click

from s2ecosg.cli.common import command, log_option, with_config
from s2ecosg.config import Config
from s2ecosg.layout import folder_of_manifest


@click.command("shards")
@click.option("--stage-manifest", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels-manifest", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="shards/blocks/<block>.json")
@log_option
@command
@with_config
def shards_command(config: Config, stage_manifest: str, labels_manifest: str, manifest: str) -> None:
    """Cut the training and validation patches of the tiles of a block, one shard per tile."""
    from s2ecosg.shards.cut import run_shards_block

    run_shards_block(config, stage_manifest, labels_manifest, folder_of_manifest(manifest), manifest)


@click.command("shards-index")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--index", required=True, type=click.Path(dir_okay=False), help="shards/index.json to write")
@log_option
@command
@with_config
def shards_index_command(config: Config, manifests: tuple[str, ...], index: str) -> None:
    """List every tile shard (MANIFESTS: shards/blocks/<block>.json), merge their statistics, write the split."""
    from s2ecosg.shards.index import run_shards_index

    run_shards_index(config, list(manifests), str(Path(index).parent))


COMMANDS = [shards_command, shards_index_command]
