"""Find Sentinel-2 scenes in a local archive and record which grid tiles each one touches.

Two layouts are read: loose band files named ``<prefix>_<band>.jp2|tif`` (one scene per prefix, as in
``GRANULE/*/IMG_DATA``) and GeoTIFF stacks whose band descriptions name the bands.

Outputs: ``stage/inventory.json`` — scenes (id, date, band files, CRS, footprint in the target CRS)
and, per grid tile, the scenes that touch it.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2ecosg.errors import InputError
from s2ecosg.grid import Bounds, TargetGrid, intersect

LOG = logging.getLogger(__name__)
BAND_FILE = re.compile(r"^(?P<prefix>.+)_(?P<band>B(?:0[1-9]|1[0-2]|8A))\.(?:jp2|tif|tiff)$", re.IGNORECASE)
DATE_IN_NAME = re.compile(r"(?P<year>20\d\d)-?(?P<month>[01]\d)-?(?P<day>[0-3]\d)")


@dataclass
class Scene:
    """One acquisition: where each band is (file and 1-based band index) and where it lies.

    Attributes:
        scene_id: Unique name (file prefix or stack stem).
        date: Acquisition date ``YYYY-MM-DD`` or ``""`` when the name has none.
        bands: Band name → [file path, band index].
        scale: Multiplier to reflectance × 10000 (10000 for float 0–1 stacks, 1 for DN).
        footprint: (left, bottom, right, top) in the target CRS.
    """

    scene_id: str
    date: str
    bands: dict[str, list[Any]]
    scale: float = 1.0
    footprint: Bounds = (0.0, 0.0, 0.0, 0.0)
    tiles: list[str] = field(default_factory=list)


def date_from_name(name: str) -> str:
    """The first YYYYMMDD or YYYY-MM-DD date in a file name, or ``""``."""
    match = DATE_IN_NAME.search(name)
    if not match:
        return ""
    try:
        return dt.date(int(match["year"]), int(match["month"]), int(match["day"])).isoformat()
    except ValueError:
        return ""


def expand_patterns(patterns: list[str]) -> list[Path]:
    """Files matching the glob patterns, sorted; a pattern that matches nothing is an error."""
    files: set[Path] = set()
    for pattern in patterns:
        matched = [Path(name) for name in glob.glob(pattern, recursive=True) if Path(name).is_file()]
        if not matched:
            raise InputError(pattern, "no imagery file matches this pattern (imagery.paths)")
        files.update(matched)
    return sorted(files)


def group_scenes(files: list[Path], stack_bands: list[str] | None) -> list[Scene]:
    """Group loose band files by prefix and read band names of stacks (headers only)."""
    loose: dict[str, dict[str, list[Any]]] = {}
    scenes = []
    for path in files:
        match = BAND_FILE.match(path.name)
        if match:
            prefix = str(path.parent / match["prefix"])
            loose.setdefault(prefix, {})[match["band"].upper()] = [str(path), 1]
        elif path.suffix.lower() in (".tif", ".tiff"):
            scenes.append(stack_scene(path, stack_bands))
        else:
            LOG.info("skipping %s: neither a band file nor a GeoTIFF stack", path)
    for prefix, bands in loose.items():
        scenes.append(Scene(Path(prefix).name, date_from_name(Path(prefix).name), bands))
    return sorted(scenes, key=lambda scene: (scene.date, scene.scene_id))


def stack_scene(path: Path, stack_bands: list[str] | None) -> Scene:
    """A GeoTIFF stack: band names from its descriptions, else from ``imagery.stack_bands``."""
    from s2ecosg.io import open_raster

    with open_raster(path) as source:
        names = [(name or "").upper() for name in source.descriptions]
        floating = source.dtypes[0].startswith("float")
    if not all(names):
        if stack_bands is None or len(stack_bands) != len(names):
            raise InputError(path, "bands have no names; set band descriptions or imagery.stack_bands")
        names = list(stack_bands)
    bands = {name: [str(path), index] for index, name in enumerate(names, start=1)}
    # Float stacks hold top-of-atmosphere reflectance 0..1; integer stacks already hold DN (× 10000).
    return Scene(path.stem, date_from_name(path.name), bands, scale=10000.0 if floating else 1.0)


def locate(scene: Scene, wanted: list[str], grid: TargetGrid) -> None:
    """Check the scene has every wanted band and store its footprint in the target CRS."""
    from rasterio.warp import transform_bounds

    from s2ecosg.io import open_raster

    missing = [band for band in wanted if band not in scene.bands]
    if missing:
        where = next(iter(scene.bands.values()))[0]
        raise InputError(where, f"scene {scene.scene_id} is missing band {', '.join(missing)}")
    footprints = []
    for band in wanted:
        path, index = scene.bands[band]
        with open_raster(path) as source:
            if source.crs is None:
                raise InputError(path, "raster has no CRS")
            if index > source.count:
                raise InputError(path, f"has {source.count} bands, band {band} expected at {index}")
            footprints.append(transform_bounds(source.crs, grid.crs, *source.bounds, densify_pts=21))
    scene.footprint = footprints[0]
    scene.bands = {band: scene.bands[band] for band in wanted}


def in_window(scene: Scene, dates: tuple[dt.date, dt.date] | None) -> bool:
    """True when there is no date window or the scene's date lies in it (inclusive)."""
    return dates is None or (bool(scene.date) and dates[0].isoformat() <= scene.date <= dates[1].isoformat())


def aoi_in_grid(aoi: tuple[float, float, float, float] | None, grid: TargetGrid) -> Bounds | None:
    """The lon/lat area of interest as a box in the target CRS."""
    if aoi is None:
        return None
    from rasterio.warp import transform_bounds

    return transform_bounds("EPSG:4326", grid.crs, *aoi, densify_pts=21)


def build_inventory(
    patterns: list[str],
    bands: list[str],
    grid: TargetGrid,
    *,
    stack_bands: list[str] | None = None,
    dates: tuple[dt.date, dt.date] | None = None,
    aoi: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """Scenes found under ``patterns`` and the grid tiles each touches (inside the AOI).

    Returns:
        ``{"grid": ..., "bands": [...], "scenes": [...], "tiles": {tile: [scene_id, ...]}}``.
    """
    aoi_box = aoi_in_grid(aoi, grid)
    scenes = [scene for scene in group_scenes(expand_patterns(patterns), stack_bands) if in_window(scene, dates)]
    tiles: dict[str, list[str]] = {}
    for scene in scenes:
        locate(scene, bands, grid)
        area = scene.footprint if aoi_box is None else intersect(scene.footprint, aoi_box)
        scene.tiles = grid.tiles_covering(area) if area else []
        for tile in scene.tiles:
            tiles.setdefault(tile, []).append(scene.scene_id)
        LOG.info("scene %s (%s): %d tile(s)", scene.scene_id, scene.date or "no date", len(scene.tiles))
    if not tiles:
        raise InputError(patterns[0], "no scene overlaps the area of interest (imagery.aoi)")
    grid_record = {"crs": grid.crs, "resolution": grid.resolution, "tile_size": grid.tile_size}
    return {
        "grid": grid_record,
        "bands": bands,
        "scenes": [asdict(scene) for scene in scenes if scene.tiles],
        "tiles": dict(sorted(tiles.items())),
    }


def inventory_tiles(path: str | Path) -> list[str]:
    """Tile names recorded in an ``inventory.json``."""
    from s2ecosg.io import read_json

    return list(read_json(path)["tiles"])
