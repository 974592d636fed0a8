"""Commands of the cover stage: ``s2ecosg cover``, ``s2ecosg domain`` and ``s2ecosg validate-cover``."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import click

import s2ecosg
from s2ecosg.blocks import read_manifests
from s2ecosg.cli.common import LOG, command, log_option, with_config
from s2ecosg.config import Config, CoverConfig, DomainConfig
from s2ecosg.config_files import config_hash, read_config_file
from s2ecosg.domain import resolve_domain
from s2ecosg.errors import InputError
from s2ecosg.lonlat import snap_grid
from s2ecosg.memory import check_memory, cover_need
from s2ecosg.model.card import card_legend, read_card
from s2ecosg.stage.inventory import read_tile_list
from s2ecosg.validate import domain_problems, validate_cover
from s2ecosg.values import degrees


def file_digest(path: str | Path) -> str:
    """First 12 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def cover_provenance(config: Config, card: str, scene_lists: list[str]) -> dict[str, str]:
    """Provenance recorded in the netCDF, the header comment and the README (the run hash as in bundle.json).

    Besides the scenes, where they came from: the processing baselines (products of several are on one scale
    already) and, for a STAC API, the collections, each with its number of scenes.
    """
    scenes = {scene.scene_id: scene for path in scene_lists for scene in read_tile_list(path).scenes}
    recorded = read_card(Path(card).parent).weights_sha256
    return {
        "s2ecosg_version": s2ecosg.__version__,
        "bundle": recorded[:12] if recorded else file_digest(Path(card).parent / "weights.pt"),
        "run_hash": config_hash(config),
        "scenes": " ".join(sorted(scenes)) or "unknown",
        "newest_scene": max((scene.date for scene in scenes.values()), default="") or "unknown",
        "processing_baselines": tally(scene.baseline or "unknown" for scene in scenes.values()),
        "collections": tally(scene.collection or "local archive" for scene in scenes.values()),
        "created": creation_time(),
    }


def tally(values: Iterable[str]) -> str:
    """``04.00: 12 scenes; 05.09: 3 scenes`` (sorted)."""
    counted = collections.Counter(values)
    return (
        "; ".join(f"{value}: {count} scene{'s' * (count != 1)}" for value, count in sorted(counted.items())) or "none"
    )


def creation_time() -> str:
    """Now in UTC, or ``SOURCE_DATE_EPOCH`` where it is set (reproducible files: two runs give the same bytes)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    moment = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch.isdigit() else dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command("cover")
@click.argument("predict_manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--card", required=True, type=click.Path(exists=True, dir_okay=False), help="The bundle's bundle.json")
@click.option("--scene-list", "scene_lists", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--binary", required=True, type=click.Path(dir_okay=False), help="cover/<BASENAME>.dir to write")
@click.option("--threads", default=1, show_default=True, help="Processes aggregating blocks of the output grid.")
@click.option("--cache", type=click.Path(file_okay=False), help="Folder of block counts kept for the next run.")
@click.option(
    "--stage-manifest",
    "stage_manifests",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="stage/blocks/<block>.json: the tiles' observation counts (the netCDF's data score).",
)
@log_option
@command
@with_config
def cover_command(
    config: Config,
    predict_manifests: tuple[str, ...],
    card: str,
    scene_lists: tuple[str, ...],
    binary: str,
    threads: int,
    cache: str | None,
    stage_manifests: tuple[str, ...],
) -> None:
    """Aggregate predicted classes to ECOSG covers and write the SURFEX DIRECT pair and its companions.

    PREDICT_MANIFESTS: predict/blocks/<block>.json (the predicted tiles); --scene-list: each tile's scene list.
    """
    # The cover stage's modules take seconds to import (GDAL, PROJ, SciPy): loaded by this command only.
    from s2ecosg.cover.aggregate import MOST_LIKELY
    from s2ecosg.cover.readers import Probabilities
    from s2ecosg.cover.run import CoverRequest, run_cover, run_members

    check_memory(cover_need(config, threads), "cover")
    classes, confidences, ranked = predicted_rasters(list(predict_manifests), config.cover)
    legend = card_legend(read_card(Path(card).parent), Path(card).parent)
    basename = binary.removesuffix(".dir")
    provenance = cover_provenance(config, card, list(scene_lists))
    soft = config.cover.fractions == "soft"
    reader = Probabilities() if soft else MOST_LIKELY
    with tempfile.TemporaryDirectory(prefix="members-") as scratch:
        # Members first: the deterministic cover's netCDF takes the spread of each fraction from their block counts.
        members = CoverRequest(ranked, legend, config.cover, config.domain, basename, provenance, workers=threads)
        ensemble = run_members(dataclasses.replace(members, cache=cache or scratch))
        request = dataclasses.replace(
            members,
            rasters=ranked if soft else classes,
            confidences=confidences,
            observations=observation_rasters(list(predict_manifests), list(stage_manifests)),
            cache=cache,
            reader=reader,
            ensemble=ensemble,
        )
        run_cover(request)
    LOG.info("cover file: %s", binary)


@click.command("tree")
@click.argument("predict_manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--card", required=True, type=click.Path(exists=True, dir_okay=False), help="The bundle's bundle.json")
@click.option("--scene-list", "scene_lists", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--binary", required=True, type=click.Path(exists=True, dir_okay=False), help="The run's cover .dir")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="tree/ECOCLIMAP-SG to write")
@click.option("--threads", default=1, show_default=True, help="Processes aggregating blocks of a patched map.")
@log_option
@command
@with_config
def tree_command(
    config: Config,
    predict_manifests: tuple[str, ...],
    card: str,
    scene_lists: tuple[str, ...],
    binary: str,
    out: str,
    threads: int,
) -> None:
    """Write the ECOCLIMAP-SG data tree with the run's cover as COVER/ecosg_final_map (and one per member).

    PREDICT_MANIFESTS: predict/blocks/<block>.json; --binary: the run's cover/<BASENAME>.dir.
    """
    from s2ecosg.cover.tree import TreeRequest, run_tree

    classes, _, ranked = predicted_rasters(list(predict_manifests), config.cover)
    legend = card_legend(read_card(Path(card).parent), Path(card).parent)
    provenance = cover_provenance(config, card, list(scene_lists))
    request = TreeRequest(config, legend, classes, ranked, binary.removesuffix(".dir"), Path(out), provenance, threads)
    for tree in run_tree(request):
        LOG.info("ECOSG tree: %s (ECOSG_DATA_PATH / ecosg_data_path)", tree)


def observation_rasters(predict_manifests: list[str], stage_manifests: list[str]) -> list[str | None]:
    """Each predicted tile's stage count raster (in :func:`predicted_rasters`' order), None where not given."""
    staged = read_manifests(stage_manifests) if stage_manifests else {}
    return [staged.get(tile, {}).get("count") for tile in sorted(read_manifests(predict_manifests))]


def predicted_rasters(manifests: list[str], settings: CoverConfig) -> tuple[list[str], list[str | None], list[str]]:
    """Each predicted tile's class raster, confidence raster (None if absent) and ranked-classes raster.

    The ranked classes (``probs.tif``, else ``top2.tif``; "" if neither) are needed by soft fractions and members.
    """
    tiles = read_manifests(manifests)
    names = sorted(tiles)
    classes = [tiles[tile]["classes"] for tile in names]
    confidences = [tiles[tile]["confidence"] if Path(tiles[tile]["confidence"]).exists() else None for tile in names]
    ranked = [str(tiles[tile].get("probabilities") or tiles[tile].get("top2") or "") for tile in names]
    if (settings.members or settings.fractions == "soft") and not all(ranked):
        raise InputError(manifests[0], "a tile has no probabilities file (probs.tif, top2.tif)")
    return classes, confidences, ranked


@click.command("domain")
@click.argument("name", required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take the domain of a config.")
@command
def domain_command(name: str | None, config_path: str | None) -> None:
    """Print a HARMONIE domain's extent, the output grid and the PGD grid namelists."""
    config = read_config_file(config_path) if config_path else None
    domain_settings = config.domain if config else DomainConfig(name=name)
    cover_settings = config.cover if config else CoverConfig()
    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    if domain is None:
        raise InputError(config_path or "domain", "no HARMONIE domain given (a name or domain.harmonie keys)")
    extent = domain.lonlat_extent(domain_settings.margin)
    grid = snap_grid(extent, degrees(cover_settings.resolution_deg))
    click.echo(
        f"domain {domain.name}: NIMAX {domain.nimax} × NJMAX {domain.njmax} cells of {domain.gsize} m; {domain.proj4}"
    )
    click.echo(
        "extent with margin {}: west {:.6f} south {:.6f} east {:.6f} north {:.6f}".format(
            domain_settings.margin, *extent
        )
    )
    click.echo(
        "output grid: {} rows × {} cols of {:.10g}°, edges west {:.6f} south {:.6f} east {:.6f} north {:.6f}".format(
            grid.rows, grid.cols, grid.step, *grid.bounds
        )
    )
    click.echo(domain.namelists(), nl=False)


@click.command("validate-cover")
@click.argument("basename")
@click.option("--domain", "domain_name", help="Also check that the file covers this named domain (+ margin).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take the domain of a config.")
@click.option(
    "--margin", type=int, default=None, help="Model cells around the domain that must be covered (default 2)."
)
@command
def validate_cover_command(basename: str, domain_name: str | None, config_path: str | None, margin: int | None) -> None:
    """Check a cover pair against SURFEX's format rules (and a domain); one line per problem, exit 1 if any."""
    problems = validate_cover(basename)
    domain_settings = read_config_file(config_path).domain if config_path else None
    domain = (
        resolve_domain(domain_name, None)
        if domain_name
        else (resolve_domain(domain_settings.name, domain_settings.harmonie) if domain_settings else None)
    )
    if domain is not None and not problems:
        chosen_margin = margin if margin is not None else (domain_settings.margin if domain_settings else 2)
        problems += domain_problems(basename, domain, chosen_margin)
    for problem in problems:
        click.echo(f"{basename}: {problem}")
    if problems:
        sys.exit(1)
    click.echo(f"{basename}: ok")


COMMANDS = [cover_command, tree_command, domain_command, validate_cover_command]
