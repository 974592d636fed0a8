"""The ``s2ecosg`` command line: one subcommand per workflow rule.

Commands use dashes, options use dashes on the command line and underscores in Python. Heavy imports
(torch, rasterio) happen inside the commands so ``s2ecosg --help`` stays fast. Config sections reach a
command as one JSON string (``--settings``), so Snakemake re-runs a rule exactly when its sections change.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

LOG = logging.getLogger("s2ecosg")
# --log-path is the same option under a name no launcher mistakes for an abbreviation of its own --log-* options
# (torchrun and horovodrun parse the whole command line; the train rule uses it behind them).
log_option = click.option(
    "--log", "--log-path", "log_path", type=click.Path(dir_okay=False), help="Log file (also to stderr)."
)
settings_option = click.option("--settings", default="{}", help="Config sections as JSON (written by the workflow).")
tiles_option = click.option("--tiles", required=True, help="Comma-separated grid tile names.")


def command(function: Callable[..., Any] | None = None, *, append_log: bool = False) -> Any:
    """Set up logging and SIGTERM; every error ends the command with one line on stderr and exit status 1.

    A mistake a user can fix (:class:`InputError`, a file that cannot be read or written) is that one line,
    naming the file or key and the problem. Anything else is one line too, naming the log file that holds
    the traceback (a traceback is for developers: it goes to the log, never to the terminal). With
    ``append_log`` the log file keeps its history (``@command(append_log=True)``).
    """
    if function is None:
        return functools.partial(command, append_log=append_log)

    @functools.wraps(function)
    def wrapper(*args: Any, log_path: str | None = None, **kwargs: Any) -> Any:
        from s2ecosg.log import exit_on_sigterm, setup_logging

        setup_logging(log_path, append=append_log)
        exit_on_sigterm()
        try:
            return function(*args, **kwargs)
        except Exception as error:  # the one place where every error becomes one line
            from s2ecosg.log import one_line

            LOG.error("error: %s", one_line(error))
            sys.exit(1)

    return wrapper


def sections(text: str) -> Any:
    """Validate the ``--settings`` JSON: the sections present are checked, the others take defaults."""
    from s2ecosg.config_files import validate_sections
    from s2ecosg.errors import InputError

    try:
        raw = json.loads(text)
    except ValueError as error:
        raise InputError("--settings", f"not JSON ({error})") from error
    return validate_sections(raw)


def tile_paths(folder: str, tiles: str, suffix: str = ".tif") -> dict[str, str]:
    """Tile name → ``folder/<tile><suffix>``."""
    return {tile: str(Path(folder) / f"{tile}{suffix}") for tile in tiles.split(",") if tile}


def grid_of(config: Any) -> Any:
    """The :class:`~s2ecosg.grid.TargetGrid` of a config."""
    from s2ecosg.grid import TargetGrid

    return TargetGrid(config.grid.crs, config.grid.resolution, config.grid.tile_size)


@click.group()
@click.version_option(package_name="s2ecosg")
def main() -> None:
    """Sentinel-2 → CNN land cover → ECOCLIMAP-SG cover file for SURFEX."""


@main.command("inventory")
@settings_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="inventory.json to write.")
@click.option("--tile-lists", required=True, type=click.Path(file_okay=False), help="Folder of per-tile scene lists.")
@log_option
@command
def inventory_command(settings: str, out: str, tile_lists: str) -> None:
    """Find the scenes and the grid tiles they touch; update the per-tile scene lists that changed."""
    import datetime as dt

    from s2ecosg.inventory import build_inventory, inventory_area, record_found, stac_inventory, write_tile_lists
    from s2ecosg.io import write_json

    config = sections(settings)
    imagery = config.imagery
    area, area_name = inventory_area(imagery.aoi, config.domain)
    if imagery.source == "stac":
        inventory = stac_inventory(imagery, grid_of(config), area, area_name)
    else:
        inventory = build_inventory(
            imagery.paths,
            imagery.bands,
            grid_of(config),
            stack_bands=imagery.stack_bands,
            dates=imagery.dates,
            aoi=area,
            max_cloud=imagery.max_cloud,
            area_name=area_name,
        )
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


@main.command("stage")
@settings_option
@click.argument("tile_lists", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--folder", required=True, type=click.Path(file_okay=False), help="stage/: <tile>.tif, <tile>.count.tif")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="stage/blocks/<block>.json")
@click.option("--threads", default=2, show_default=True, help="Bands warped in parallel.")
@log_option
@command
def stage_command(settings: str, tile_lists: tuple[str, ...], folder: str, manifest: str, threads: int) -> None:
    """Warp, mask and composite the scenes of each grid tile of a block (TILE_LISTS: stage/scenes/<tile>.json)."""
    from s2ecosg.stage import run_stage_block

    run_stage_block(list(tile_lists), sections(settings).imagery, folder, manifest, threads)


@main.command("labels")
@settings_option
@tiles_option
@click.option("--folder", required=True, type=click.Path(file_okay=False), help="labels/: <tile>.tif")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="labels/blocks/<block>.json")
@log_option
@command
def labels_command(settings: str, tiles: str, folder: str, manifest: str) -> None:
    """Rasterise the reference labels onto the grid tiles of a block."""
    from s2ecosg.labels import run_labels_block

    config = sections(settings)
    run_labels_block(config.labels, [tile for tile in tiles.split(",") if tile], grid_of(config), folder, manifest)


@main.command("shards")
@settings_option
@click.option("--stage-manifest", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels-manifest", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--folder", required=True, type=click.Path(file_okay=False), help="shards/: <tile>.json, .npy arrays")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="shards/blocks/<block>.json")
@log_option
@command
def shards_command(settings: str, stage_manifest: str, labels_manifest: str, folder: str, manifest: str) -> None:
    """Cut the training and validation patches of the tiles of a block, one shard per tile."""
    from s2ecosg.shards import run_shards_block

    run_shards_block(sections(settings), stage_manifest, labels_manifest, folder, manifest)


@main.command("shards-index")
@settings_option
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--folder", required=True, type=click.Path(file_okay=False), help="shards/: index, stats, split")
@log_option
@command
def shards_index_command(settings: str, manifests: tuple[str, ...], folder: str) -> None:
    """List every tile shard (MANIFESTS: shards/blocks/<block>.json), merge their statistics, write the split."""
    from s2ecosg.shard_index import run_shards_index

    run_shards_index(sections(settings), list(manifests), folder)


@main.command("train")
@settings_option
@click.option("--shards", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoints", required=True, type=click.Path(file_okay=False))
@click.option("--bundle", required=True, type=click.Path(file_okay=False))
@log_option
@command
def train_command(settings: str, shards: str, checkpoints: str, bundle: str) -> None:
    """Train the U-Net and write the model bundle."""
    from s2ecosg.config import config_hash
    from s2ecosg.train import run_train

    config = sections(settings)
    digest = config_hash(config)
    run_train(
        shards, config.labels.legend, config.model, config.train, checkpoints, bundle, digest, config.shards.patch
    )


@main.command("predict")
@settings_option
@click.argument("stage_manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--folder", required=True, type=click.Path(file_okay=False), help="predict/: <tile>.tif, .conf.tif")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="predict/blocks/<block>.json")
@click.option("--legend", default=None, help="The run's legend (labels.legend): a bundle with another is refused.")
@log_option
@command
def predict_command(
    settings: str, stage_manifests: tuple[str, ...], bundle: str, folder: str, manifest: str, legend: str | None
) -> None:
    """Predict the tiles of a block (STAGE_MANIFESTS: the block's stage manifest, then its neighbours')."""
    from s2ecosg.predict_block import run_predict_block

    run_predict_block(bundle, sections(settings), list(stage_manifests), folder, manifest, legend or None)


@main.command("mosaic")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@log_option
@command
def mosaic_command(manifests: tuple[str, ...], out: str) -> None:
    """Write a VRT mosaic of the predicted tiles of every block (MANIFESTS: predict/blocks/<block>.json)."""
    from s2ecosg.blocks import read_manifests
    from s2ecosg.mosaic import write_mosaic

    tiles = read_manifests(list(manifests))
    write_mosaic([tiles[tile]["classes"] for tile in sorted(tiles)], out)


def run() -> None:
    """Console-script entry point: registers the cover/evaluate commands, then runs the group."""
    import s2ecosg.cli_cover  # noqa: F401  (registers commands on main)

    main()
