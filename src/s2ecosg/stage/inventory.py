"""The inventory: which grid tiles each scene touches, inside the area to stage, and the tile lists stage jobs read.

Outputs: ``stage/inventory.json`` (every scene: bands, offsets, mask, footprint in the target CRS, tiles)
and ``stage/scenes/{tile}.json`` (what one tile's stage job needs), rewritten only when its content changes,
so a nightly rerun restages only the tiles whose scenes changed. Scenes are found by :mod:`s2ecosg.stage.scenes`
(local archives) or :mod:`s2ecosg.stage.stac`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import NotRequired

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict  # the one pydantic validates on Python 3.11

from s2ecosg.config import DomainConfig, ImageryConfig
from s2ecosg.domain import resolve_domain
from s2ecosg.errors import InputError
from s2ecosg.grid import Bounds, TargetGrid, intersect
from s2ecosg.io import read_record, write_json
from s2ecosg.layout import tile_file
from s2ecosg.stage.scenes import Scene, expand_patterns, group_scenes, locate
from s2ecosg.stage.stac import asset_keys, item_scene, search

LOG = logging.getLogger(__name__)
SceneFields = dict[str, object]  # a Scene as JSON values (its dataclass fields), with ``found`` in inventory.json


class GridFields(TypedDict):
    """The target grid of an inventory (:class:`~s2ecosg.grid.TargetGrid`'s arguments)."""

    crs: str
    resolution: float
    tile_size: float


class Inventory(TypedDict):
    """``stage/inventory.json``: grid, bands, every scene that touches a tile, tile → scene ids, creation time.

    Each scene carries when it was first found (``found``) once :func:`record_found` has run, as does ``created``.
    """

    grid: GridFields
    bands: list[str]
    scenes: list[SceneFields]
    tiles: dict[str, list[str]]
    created: NotRequired[str]


def keep_scene(scene: Scene, dates: tuple[dt.date, dt.date] | None, max_cloud: float) -> bool:
    """True when the scene's date lies in the window and its cloud cover (if known) is low enough."""
    if dates is not None and not (scene.date and dates[0].isoformat() <= scene.date <= dates[1].isoformat()):
        return False
    if scene.cloud is not None and scene.cloud > max_cloud:
        LOG.info("scene %s skipped: %.1f %% cloud > imagery.max_cloud %.1f", scene.scene_id, scene.cloud, max_cloud)
        return False
    return True


def box_text(box: tuple[float, float, float, float]) -> str:
    """``W … S … E … N …`` of a (west, south, east, north) box in degrees."""
    return "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(*box)


def inventory_area(
    aoi: tuple[float, float, float, float] | None, domain_settings: DomainConfig
) -> tuple[tuple[float, float, float, float] | None, str]:
    """The lon/lat box to stage and its name: ``imagery.aoi`` within the HARMONIE domain (+ margin) or ``domain.bbox``.

    Imagery beyond the domain is never staged: the cover cannot use it.
    """
    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    if domain is not None:
        extent, name = (
            domain.lonlat_extent(domain_settings.margin),
            f"domain {domain.name} + {domain_settings.margin} cells",
        )
    elif domain_settings.bbox is not None:
        extent, name = domain_settings.bbox, "domain.bbox"
    else:
        return aoi, "imagery.aoi"
    if aoi is None:
        return extent, name
    west, south, east, north = (
        max(aoi[0], extent[0]),
        max(aoi[1], extent[1]),
        min(aoi[2], extent[2]),
        min(aoi[3], extent[3]),
    )
    if west >= east or south >= north:
        raise InputError(
            "imagery.aoi",
            f"{box_text(aoi)} does not overlap {name} {box_text(extent)}",
        )
    return (west, south, east, north), f"imagery.aoi within {name}"


def aoi_in_grid(aoi: tuple[float, float, float, float] | None, grid: TargetGrid) -> Bounds | None:
    """The lon/lat area of interest as a box in the target CRS."""
    if aoi is None:
        return None
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    return transform_bounds("EPSG:4326", grid.crs, *aoi, densify_pts=21)


def build_inventory(
    patterns: list[str],
    bands: list[str],
    grid: TargetGrid,
    *,
    stack_bands: list[str] | None = None,
    dates: tuple[dt.date, dt.date] | None = None,
    aoi: tuple[float, float, float, float] | None = None,
    max_cloud: float = 100.0,
    area_name: str = "imagery.aoi",
) -> Inventory:
    """Scenes found under ``patterns`` and the grid tiles each touches (inside the AOI).

    Args:
        patterns: Glob patterns of the archive (``imagery.paths``).
        bands: Bands every scene must have, in model order.
        grid: The target grid.
        stack_bands: Band names of stacks without band descriptions.
        dates: Date window [start, end], inclusive; None: all.
        aoi: Lon/lat box to stage; None: all imagery.
        max_cloud: Largest scene cloud cover (%).
        area_name: What ``aoi`` is, for the message when no scene overlaps it (e.g. ``domain IRELAND25``).

    Returns:
        ``{"grid": ..., "bands": [...], "scenes": [...], "tiles": {tile: [scene_id, ...]}}``.
    """
    found = group_scenes(expand_patterns(patterns), stack_bands)
    scenes = [scene for scene in found if keep_scene(scene, dates, max_cloud)]
    if found and not scenes:
        raise InputError(patterns[0], none_kept(found, dates, max_cloud))
    for scene in scenes:
        locate(scene, bands, grid)
    return tile_scenes(scenes, bands, grid, aoi, patterns[0], area_name)


def none_kept(found: list[Scene], dates: tuple[dt.date, dt.date] | None, max_cloud: float) -> str:
    """Why none of the scenes found is used: the date window, or the cloud limit."""
    known = sorted(scene.date for scene in found if scene.date)
    span = f"dated {known[0]} to {known[-1]}" if known else "none with a date in its name or metadata"
    if dates is not None and not any(keep_scene(scene, dates, 100.0) for scene in found):
        return f"none of the {len(found)} scene(s) found ({span}) lies in imagery.dates {dates[0]}..{dates[1]}"
    return f"every one of the {len(found)} scene(s) found ({span}) has more cloud than imagery.max_cloud {max_cloud}"


def stac_inventory(
    imagery: ImageryConfig,
    grid: TargetGrid,
    area: tuple[float, float, float, float] | None = None,
    area_name: str = "imagery.aoi",
) -> Inventory:
    """Scenes found by a STAC search, footprints from the items (nothing is downloaded here).

    The search covers ``imagery.aoi``; tiles are kept inside ``area`` (default: the AOI itself).
    """
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    stac = imagery.stac_settings
    keys = asset_keys(stac.provider)
    scenes = []
    for item in search(stac, imagery):
        scene = Scene(**item_scene(item, imagery.bands, keys))
        scene.footprint = transform_bounds("EPSG:4326", grid.crs, *item.bbox, densify_pts=21)
        if keep_scene(scene, imagery.dates, imagery.max_cloud):
            scenes.append(scene)
    return tile_scenes(scenes, imagery.bands, grid, area or imagery.aoi, stac.url, area_name)


def tile_scenes(
    scenes: list[Scene],
    bands: list[str],
    grid: TargetGrid,
    aoi: tuple[float, float, float, float] | None,
    source: str,
    area_name: str = "imagery.aoi",
) -> Inventory:
    """List, per grid tile, the located scenes touching it (scenes outside the AOI are dropped)."""
    aoi_box = aoi_in_grid(aoi, grid)
    tiles: dict[str, list[str]] = {}
    for scene in scenes:
        area = scene.footprint if aoi_box is None else intersect(scene.footprint, aoi_box)
        scene.tiles = grid.tiles_covering(area) if area else []
        for tile in scene.tiles:
            tiles.setdefault(tile, []).append(scene.scene_id)
        LOG.info("scene %s (%s): %d tile(s)", scene.scene_id, scene.date or "no date", len(scene.tiles))
    if not tiles:
        raise InputError(no_overlap_source(scenes, source), no_overlap(scenes, grid, aoi, area_name))
    grid_record = GridFields(crs=grid.crs, resolution=grid.resolution, tile_size=grid.tile_size)
    return {
        "grid": grid_record,
        "bands": bands,
        "scenes": [asdict(scene) for scene in scenes if scene.tiles],
        "tiles": dict(sorted(tiles.items())),
    }


def no_overlap_source(scenes: list[Scene], source: str) -> str:
    """The file to name when no scene overlaps the area: the one scene's first band file, else the source."""
    if len(scenes) == 1 and scenes[0].bands:
        return str(next(iter(scenes[0].bands.values()))[0])
    return source


def no_overlap(
    scenes: list[Scene], grid: TargetGrid, aoi: tuple[float, float, float, float] | None, area_name: str
) -> str:
    """The message when no scene overlaps the area: both extents in degrees."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    if not scenes:
        return "no scene found"
    boxes = [transform_bounds(grid.crs, "EPSG:4326", *scene.footprint, densify_pts=21) for scene in scenes]
    extent = min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    area = "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(*aoi) if aoi else "(none)"
    return (
        "the {} scene(s) span {}, which does not overlap {} {} (wrong CRS tag, wrong archive, or wrong area?)".format(
            len(scenes), "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(*extent), area_name, area
        )
    )


class TileList(BaseModel):
    """``stage/scenes/<tile>.json``: a tile's scenes, the grid and the bands to stage."""

    model_config = ConfigDict(extra="forbid")

    tile: str
    grid: GridFields
    bands: list[str]
    scenes: list[Scene]

    def signature_content(self) -> dict[str, object]:
        """The list as JSON values: what a staged tile's signature hashes (the file's own content)."""
        return self.model_dump(mode="json")


def read_tile_list(path: str | Path) -> TileList:
    """A tile's scene list (the inventory writes them: :func:`write_tile_lists`), checked."""
    return read_record(path, TileList, "not a scene list")


def read_inventory(path: str | Path) -> Inventory:
    """``stage/inventory.json``: grid, bands, scenes (with when each was first found), tiles, creation time."""
    return read_record(path, Inventory, "not an inventory")


def write_tile_lists(inventory: Inventory, folder: str | Path) -> list[str]:
    """Write ``{folder}/{tile}.json`` for every tile, only where the content changed; return the changed tiles.

    Unchanged files keep their modification time, so Snakemake reruns only the tiles with new scenes.
    """
    by_id = {scene["scene_id"]: scene for scene in inventory["scenes"]}
    changed = []
    for tile, scene_ids in inventory["tiles"].items():
        content = {
            "grid": inventory["grid"],
            "bands": inventory["bands"],
            "tile": tile,
            "scenes": [by_id[scene_id] for scene_id in scene_ids],
        }
        path = Path(tile_file(folder, "scenes", "list", tile))
        if path.exists() and json.loads(path.read_text()) == json.loads(json.dumps(content)):
            continue
        write_json(path, content)
        changed.append(tile)
    return changed


def record_found(inventory: Inventory, folder: str | Path, now: str) -> None:
    """Add to every scene of the inventory when it was first found, kept across runs in ``{folder}/found.json``."""
    path = Path(folder) / "found.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    new = {scene["scene_id"]: now for scene in inventory["scenes"] if scene["scene_id"] not in found}
    if new:
        write_json(path, {**found, **new})
    for scene in inventory["scenes"]:
        scene["found"] = found.get(scene["scene_id"], now)
    inventory["created"] = now


def inventory_tiles(path: str | Path) -> list[str]:
    """Tile names recorded in an ``inventory.json``, read once per version of the file.

    The workflow asks for them in the input functions of every block job (a country: hundreds of times per DAG).
    """
    status = os.stat(path)
    return list(recorded_tiles(str(path), status.st_mtime_ns, status.st_size))


@functools.lru_cache(maxsize=4)
def recorded_tiles(path: str, modified_ns: int, size: int) -> tuple[str, ...]:
    """:func:`inventory_tiles` without the cache (the modification time and size only key it)."""
    return tuple(read_inventory(path)["tiles"])
