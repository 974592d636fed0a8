"""Find Sentinel-2 scenes in a local archive and record which grid tiles each one touches.

Three layouts are read: SAFE products (``*.SAFE`` folders, L1C and L2A, metadata from ``MTD_MSI*.xml``),
loose band files named ``<prefix>_<band>[_<res>m].jp2|tif`` (one scene per prefix, with an optional
``<prefix>_SCL[_20m]`` mask), and GeoTIFF stacks whose band descriptions (or ``imagery.stack_bands``)
name the bands (with an optional ``SCL`` file named like the stack with ``BOA`` → ``SCL``).

Outputs: ``stage/inventory.json`` (every scene: bands, offsets, mask, footprint in the target CRS, tiles)
and ``stage/scenes/{tile}.json`` (what one tile's stage job needs), rewritten only when its content changes,
so a nightly rerun restages only the tiles whose scenes changed.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2ecosg.errors import InputError
from s2ecosg.grid import Bounds, TargetGrid, intersect

LOG = logging.getLogger(__name__)
BAND_FILE = re.compile(
    r"^(?P<prefix>.+)_(?P<band>B(?:0[1-9]|1[0-2]|8A)|SCL)(?:_(?:10|20|60)m)?\.(?:jp2|tif|tiff)$", re.IGNORECASE
)
DATE_IN_NAME = re.compile(r"(?P<year>20\d\d)-?(?P<month>[01]\d)-?(?P<day>[0-3]\d)")
MGRS_IN_NAME = re.compile(r"(?:^|_)T(?P<zone>\d\d)(?P<band>[C-X])[A-Z]{2}(?:_|$)")


@dataclass
class Scene:
    """One acquisition: where each band is and how to turn its values into reflectance × 10000.

    Attributes:
        scene_id: Unique name (product, file prefix or stack stem).
        date: Acquisition date ``YYYY-MM-DD`` or ``""`` when unknown.
        bands: Band name → [file path, 1-based band index].
        offsets: Band name → radiometric offset added to the DN (−1000 from baseline 04.00).
        gain: Multiplier after the offset (10000 for float 0–1 stacks, 10000 / quantification otherwise).
        scl: Sen2Cor scene classification file (L2A), or None.
        cloud: Scene cloud cover in percent from the metadata, or None.
        footprint: (left, bottom, right, top) in the target CRS.
        tiles: Grid tiles the scene touches (inside the AOI).
        stamps: File path → [size in bytes, modification time in ns] of every file the scene is read from, so
            that a replaced or re-downloaded file changes the tile lists and restages its tiles.
    """

    scene_id: str
    date: str
    bands: dict[str, list[Any]]
    offsets: dict[str, int] = field(default_factory=dict)
    gain: float = 1.0
    scl: str | None = None
    cloud: float | None = None
    level: str = ""
    baseline: str = ""
    footprint: Bounds = (0.0, 0.0, 0.0, 0.0)
    tiles: list[str] = field(default_factory=list)
    cloud_bands: dict[str, list[Any]] = field(default_factory=dict)
    stamps: dict[str, list[int]] = field(default_factory=dict)


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
    """Files and ``*.SAFE`` folders matching the glob patterns, sorted; a pattern matching nothing is an error."""
    found: set[Path] = set()
    for pattern in patterns:
        matched = [Path(name) for name in glob.glob(pattern, recursive=True)]
        matched = [path for path in matched if path.is_file() or path.suffix.upper() == ".SAFE"]
        if not matched:
            raise InputError(pattern, "no imagery file matches this pattern (imagery.paths)")
        found.update(matched)
    return sorted(found)


def archive_fingerprint(paths: list[Path]) -> str:
    """Short hash of the size and modification time of every file (inside SAFE folders too) of the archive.

    The inventory rule carries it as a parameter, so a replaced, truncated or re-downloaded file reruns the
    inventory even when its new modification time is older than the inventory's (``cp -p``, ``rsync -t``).
    """
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(f"{file}\0{file_stamp(str(file))}\n".encode())
    return digest.hexdigest()[:16]


def safe_scene(product: Path) -> Scene:
    """A scene from a SAFE folder (metadata, offsets, SCL)."""
    from s2ecosg.safe import read_product

    record = read_product(product)
    return Scene(
        product.stem,
        record["date"],
        {band: [path, 1] for band, path in record["bands"].items()},
        offsets=record["offsets"],
        gain=10000.0 / record["quantification"],
        scl=record["scl"],
        cloud=record.get("cloud"),
        level=record["level"],
        baseline=record["baseline"],
    )


def group_scenes(paths: list[Path], stack_bands: list[str] | None) -> list[Scene]:
    """SAFE products, loose band files grouped by prefix, and stacks (headers only)."""
    loose: dict[str, dict[str, list[Any]]] = {}
    scenes = []
    for path in paths:
        match = BAND_FILE.match(path.name)
        if path.suffix.upper() == ".SAFE":
            scenes.append(safe_scene(path))
        elif match:
            prefix = str(path.parent / match["prefix"])
            loose.setdefault(prefix, {})[match["band"].upper()] = [str(path), 1]
        elif path.suffix.lower() in (".tif", ".tiff"):
            scenes.append(stack_scene(path, stack_bands))
        else:
            LOG.info("skipping %s: neither a SAFE product, a band file nor a GeoTIFF stack", path)
    for prefix, bands in loose.items():
        scl = bands.pop("SCL", [None])[0]
        scenes.append(Scene(Path(prefix).name, date_from_name(Path(prefix).name), bands, scl=scl))
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
    scl = path.with_name(path.name.replace("BOA", "SCL")) if "BOA" in path.name else None
    # Float stacks hold reflectance 0..1; integer stacks already hold reflectance × 10000.
    return Scene(
        path.stem,
        date_from_name(path.name),
        bands,
        gain=10000.0 if floating else 1.0,
        scl=str(scl) if scl is not None and scl.is_file() else None,
    )


def locate(scene: Scene, wanted: list[str], grid: TargetGrid) -> None:
    """Check the scene has every wanted band and store its footprint in the target CRS."""
    from rasterio.warp import transform_bounds

    from s2ecosg.io import open_raster

    missing = [band for band in wanted if band not in scene.bands]
    if missing:
        where = next(iter(scene.bands.values()))[0]
        raise InputError(where, f"scene {scene.scene_id} is missing band {', '.join(missing)}")
    for band in wanted:
        path, index = scene.bands[band]
        with open_raster(path) as source:
            if source.crs is None:
                raise InputError(path, "raster has no CRS")
            if index > source.count:
                raise InputError(path, f"has {source.count} bands, band {band} expected at {index}")
            check_utm_zone(path, source.crs)
            if band == wanted[0]:
                scene.footprint = transform_bounds(source.crs, grid.crs, *source.bounds, densify_pts=21)
    from s2ecosg.clouds import CLOUD_BANDS

    if scene.scl is None and all(band in scene.bands for band in CLOUD_BANDS):
        scene.cloud_bands = {band: scene.bands[band] for band in CLOUD_BANDS}
    scene.offsets = {band: scene.offsets.get(band, 0) for band in {*wanted, *scene.cloud_bands}}
    scene.bands = {band: scene.bands[band] for band in wanted}
    files = {path for path, _ in [*scene.bands.values(), *scene.cloud_bands.values()]} | ({scene.scl} - {None})
    scene.stamps = {path: file_stamp(path) for path in sorted(files)}


def file_stamp(path: str) -> list[int]:
    """[size in bytes, modification time in ns] of a file: what changes when it is replaced or re-downloaded."""
    status = Path(path).stat()
    return [status.st_size, status.st_mtime_ns]


def check_utm_zone(path: str, crs: Any) -> None:
    """Refuse a Sentinel-2 file named for an MGRS tile (``T33UUU``) whose CRS is another UTM zone's.

    A wrong CRS tag would otherwise put the scene, and the cover, hundreds of kilometres away.
    """
    match = MGRS_IN_NAME.search(Path(path).stem)
    epsg = crs.to_epsg() if match else None
    if not match or epsg is None or not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        return
    expected = (32600 if match["band"] >= "N" else 32700) + int(match["zone"])
    if epsg != expected:
        raise InputError(
            path,
            f"named for MGRS tile T{match['zone']}{match['band']}.. (UTM zone {int(match['zone'])}, EPSG:{expected}) "
            f"but its CRS is EPSG:{epsg}: wrong CRS tag",
        )


def keep_scene(scene: Scene, dates: tuple[dt.date, dt.date] | None, max_cloud: float) -> bool:
    """True when the scene's date lies in the window and its cloud cover (if known) is low enough."""
    if dates is not None and not (scene.date and dates[0].isoformat() <= scene.date <= dates[1].isoformat()):
        return False
    if scene.cloud is not None and scene.cloud > max_cloud:
        LOG.info("scene %s skipped: %.1f %% cloud > imagery.max_cloud %.1f", scene.scene_id, scene.cloud, max_cloud)
        return False
    return True


def inventory_area(
    aoi: tuple[float, float, float, float] | None, domain_settings: Any
) -> tuple[tuple[float, float, float, float] | None, str]:
    """The lon/lat box to stage and its name: ``imagery.aoi`` within the HARMONIE domain (+ margin) or ``domain.bbox``.

    Imagery beyond the domain is never staged: the cover cannot use it.
    """
    from s2ecosg.domain import resolve_domain

    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    if domain is not None:
        extent, name = (
            domain.lonlat_extent(domain_settings.margin),
            f"domain {domain.name} + {domain_settings.margin} cells",
        )
    elif domain_settings.bbox is not None:
        extent, name = tuple(domain_settings.bbox), "domain.bbox"
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
            "W {:.4f} S {:.4f} E {:.4f} N {:.4f} does not overlap {} W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(
                *aoi, name, *extent
            ),
        )
    return (west, south, east, north), f"imagery.aoi within {name}"


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
    max_cloud: float = 100.0,
    area_name: str = "imagery.aoi",
) -> dict[str, Any]:
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
    imagery: Any,
    grid: TargetGrid,
    area: tuple[float, float, float, float] | None = None,
    area_name: str = "imagery.aoi",
) -> dict[str, Any]:
    """Scenes found by a STAC search, footprints from the items (nothing is downloaded here).

    The search covers ``imagery.aoi``; tiles are kept inside ``area`` (default: the AOI itself).
    """
    from rasterio.warp import transform_bounds

    from s2ecosg.stac import asset_keys, item_scene, search

    keys = asset_keys(imagery.stac.provider)
    scenes = []
    for item in search(imagery.stac, imagery):
        scene = Scene(**item_scene(item, imagery.bands, keys))
        scene.footprint = transform_bounds("EPSG:4326", grid.crs, *item.bbox, densify_pts=21)
        if keep_scene(scene, imagery.dates, imagery.max_cloud):
            scenes.append(scene)
    return tile_scenes(scenes, imagery.bands, grid, area or imagery.aoi, imagery.stac.url, area_name)


def tile_scenes(
    scenes: list[Scene],
    bands: list[str],
    grid: TargetGrid,
    aoi: tuple[float, float, float, float] | None,
    source: str,
    area_name: str = "imagery.aoi",
) -> dict[str, Any]:
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
    grid_record = {"crs": grid.crs, "resolution": grid.resolution, "tile_size": grid.tile_size}
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
    from rasterio.warp import transform_bounds

    if not scenes:
        return "no scene found"
    boxes = [transform_bounds(grid.crs, "EPSG:4326", *scene.footprint, densify_pts=21) for scene in scenes]
    extent = min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    area = "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(*aoi) if aoi else "(none)"
    return (
        "the {} scene(s) span W {:.4f} S {:.4f} E {:.4f} N {:.4f}, which does not overlap {} {} "
        "(wrong CRS tag, wrong archive, or wrong area?)".format(len(scenes), *extent, area_name, area)
    )


def write_tile_lists(inventory: dict[str, Any], folder: str | Path) -> list[str]:
    """Write ``{folder}/{tile}.json`` for every tile, only where the content changed; return the changed tiles.

    Unchanged files keep their modification time, so Snakemake reruns only the tiles with new scenes.
    """
    from s2ecosg.io import write_json

    by_id = {scene["scene_id"]: scene for scene in inventory["scenes"]}
    changed = []
    for tile, scene_ids in inventory["tiles"].items():
        content = {
            "grid": inventory["grid"],
            "bands": inventory["bands"],
            "tile": tile,
            "scenes": [by_id[scene_id] for scene_id in scene_ids],
        }
        path = Path(folder) / f"{tile}.json"
        if path.exists() and json.loads(path.read_text()) == json.loads(json.dumps(content)):
            continue
        write_json(path, content)
        changed.append(tile)
    return changed


def record_found(inventory: dict[str, Any], folder: str | Path, now: str) -> None:
    """Add to every scene of the inventory when it was first found, kept across runs in ``{folder}/found.json``."""
    from s2ecosg.io import write_json

    path = Path(folder) / "found.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    new = {scene["scene_id"]: now for scene in inventory["scenes"] if scene["scene_id"] not in found}
    if new:
        write_json(path, {**found, **new})
    for scene in inventory["scenes"]:
        scene["found"] = found.get(scene["scene_id"], now)
    inventory["created"] = now


def inventory_tiles(path: str | Path) -> list[str]:
    """Tile names recorded in an ``inventory.json``."""
    from s2ecosg.io import read_json

    return list(read_json(path)["tiles"])
