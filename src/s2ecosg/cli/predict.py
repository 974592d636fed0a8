"""Commands of the predict stage: ``s2ecosg predict`` (one block) and ``s2ecosg mosaic``."""

from __future__ import annotations

from pathlib import Path

import click

from s2ecosg.blocks import read_manifests
from s2ecosg.cli.common import command, log_option, with_config
from s2ecosg.config import Config
from s2ecosg.layout import folder_of_manifest
from s2ecosg.memory import check_memory, predict_need
from s2ecosg.predict.mosaic import write_mosaic


@click.command("predict")
@click.argument("stage_manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--card", required=True, type=click.Path(exists=True, dir_okay=False), help="The bundle's bundle.json")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="predict/blocks/<block>.json")
@log_option
@command
@with_config
def predict_command(config: Config, stage_manifests: tuple[str, ...], card: str, manifest: str) -> None:
    """Predict the tiles of a block (STAGE_MANIFESTS: the block's stage manifest, then its neighbours')."""
    from s2ecosg.predict.block import run_predict_block

    check_memory(predict_need(config, len(read_manifests(list(stage_manifests[:1])))), "predict")
    legend = config.labels.legend if config.labels.path else None  # no labels: nothing to compare the bundle with
    bundle = str(Path(card).parent)
    run_predict_block(bundle, config, list(stage_manifests), folder_of_manifest(manifest), manifest, legend)


@click.command("mosaic")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@log_option
@command
def mosaic_command(manifests: tuple[str, ...], out: str) -> None:
    """Write a VRT mosaic of the predicted tiles of every block (MANIFESTS: predict/blocks/<block>.json)."""
    tiles = read_manifests(list(manifests))
    write_mosaic([tiles[tile]["classes"] for tile in sorted(tiles)], out)


COMMANDS = [predict_command, mosaic_command]
