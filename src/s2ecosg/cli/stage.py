"""Commands of the stage: ``s2ecosg inventory`` and ``s2ecosg stage``."""

from __future__ import annotations

import datetime as dt

import click

from s2ecosg.cli.common import LOG, command, grid_of, log_option, with_config
from s2ecosg.config import Config
from s2ecosg.io import write_json
from s2ecosg.layout import folder_of_manifest
from s2ecosg.memory import check_memory, stage_need


@click.command("inventory")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="inventory.json to write.")
@click.option("--tile-lists", required=True, type=click.Path(file_okay=False), help="Folder of per-tile scene lists.")
@log_option
@command
@with_config
def inventory_command(config: Config, out: str, tile_lists: str) -> None:
    """Find the scenes and the grid tiles they touch; update the per-tile scene lists that changed."""
    from s2ecosg.stage.inventory import inventory_area, record_found, write_tile_lists
    from s2ecosg.stage.sources import source_of

    area, area_name = inventory_area(config.imagery.aoi, config.domain)
    inventory = source_of(config.imagery).inventory(config.imagery, grid_of(config), area, area_name)
    changed = write_tile_lists(inventory, tile_lists)
    record_found(inventory, tile_lists, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    write_json(out, inventory)
    LOG.info(
        "%d scene(s), %d tile(s); scene lists changed for %d tile(s): %s",
        len(inventory["scenes"]),
        len(inventory["tiles"]),
        len(changed),
        ",".join(changed) or "none",
    )


@click.command("stage")
@click.argument("tile_lists", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="stage/blocks/<block>.json")
@click.option("--threads", default=2, show_default=True, help="Bands warped in parallel.")
@log_option
@command
@with_config
def stage_command(config: Config, tile_lists: tuple[str, ...], manifest: str, threads: int) -> None:
    """Warp, mask and composite the scenes of each grid tile of a block (TILE_LISTS: stage/scenes/<tile>.json)."""
    from s2ecosg.stage.run import run_stage_block

    check_memory(stage_need(config, len(tile_lists)), "stage")
    run_stage_block(list(tile_lists), config.imagery, folder_of_manifest(manifest), manifest, threads)


COMMANDS = [inventory_command, stage_command]
