"""Find Sentinel-2 scenes in a local archive: bands, offsets, masks, dates and footprints in the target CRS.

Three layouts are read: SAFE products (``*.SAFE`` folders, L1C and L2A, metadata from ``MTD_MSI*.xml``),
loose band files named ``<prefix>_<band>[_<res>m].jp2|tif`` (one scene per prefix, with an optional
``<prefix>_SCL[_20m]`` mask), and GeoTIFF stacks whose band descriptions (or ``imagery.stack_bands``)
name the bands (with an optional ``SCL`` file named like the stack with ``BOA`` → ``SCL``).

:mod:`s2ecosg.stage.inventory` assigns the scenes found here to grid tiles.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from s2ecosg.errors import InputError
from s2ecosg.grid import Bounds, TargetGrid
from s2ecosg.io import open_raster
from s2ecosg.stage.eopf import PREFIX as EOPF_PREFIX
from s2ecosg.stage.eopf import is_product, product_of, product_record
from s2ecosg.stage.safe import archive_of, product_name, read_product

if TYPE_CHECKING:
    from rasterio.crs import CRS

LOG = logging.getLogger(__name__)
BAND_FILE = re.compile(
    r"^(?P<prefix>.+)_(?P<band>B(?:0[1-9]|1[0-2]|8A)|SCL)(?:_(?:10|20|60)m)?\.(?:jp2|tif|tiff)$", re.IGNORECASE
)
DATE_IN_NAME = re.compile(r"(?P<year>20\d\d)-?(?P<month>[01]\d)-?(?P<day>[0-3]\d)")
MGRS_IN_NAME = re.compile(r"(?:^|_)T(?P<zone>\d\d)(?P<band>[C-X])[A-Z]{2}(?:_|$)")
CLOUD_BANDS = ["B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]  # what s2cloudless reads
BandFile = tuple[str, int]  # (file path, GDAL name or URL; 1-based band index in it)


@dataclass
class Scene:
    """One acquisition: where each band is and how to turn its values into reflectance × 10000.

    Attributes:
        scene_id: Unique name (product, file prefix or stack stem).
        date: Acquisition date ``YYYY-MM-DD`` or ``""`` when unknown.
        bands: Band name → (file path, 1-based band index).
        offsets: Band name → radiometric offset added to the DN (−1000 from baseline 04.00; EOPF's are floats).
        gain: Multiplier after the offset (10000 for float 0–1 stacks, 10000 / quantification otherwise).
        scl: Sen2Cor scene classification file (L2A), or None.
        cloud: Scene cloud cover in percent from the metadata (a STAC catalogue may give an integer), or None.
        level: Processing level (``Level-1C``, ``Level-2A``) where the metadata says it.
        baseline: Processing baseline (``04.00``) where the metadata says it.
        collection: The STAC collection the scene came from ("" for a local archive).
        footprint: (left, bottom, right, top) in the target CRS.
        tiles: Grid tiles the scene touches (inside the AOI).
        cloud_bands: The bands s2cloudless reads (band → file, index) when the scene has no SCL layer.
        stamps: File path → [size in bytes, modification time in ns] of every file the scene is read from, so
            that a replaced or re-downloaded file changes the tile lists and restages its tiles.
    """

    scene_id: str
    date: str
    bands: dict[str, BandFile]
    # int | float: the file's numbers are read back as they were written (a scene list's signature hashes them).
    offsets: dict[str, int | float] = field(default_factory=dict)
    gain: float = 1.0
    scl: str | None = None
    cloud: int | float | None = None
    level: str = ""
    baseline: str = ""
    collection: str = ""
    footprint: Bounds = (0.0, 0.0, 0.0, 0.0)
    tiles: list[str] = field(default_factory=list)
    cloud_bands: dict[str, BandFile] = field(default_factory=dict)
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
        matched = [path for path in matched if path.is_file() or path.suffix.upper() in (".SAFE", ".ZARR")]
        if not matched:
            raise InputError(pattern, "no imagery file matches this pattern (imagery.paths)")
        found.update(matched)
    return sorted(found)


def archive_fingerprint(paths: list[Path]) -> str:
    """Short hash of the size and modification time of every file (inside SAFE folders too) of the archive.

    The inventory rule carries it as a parameter, so a replaced, truncated or re-downloaded file reruns the
    inventory even when its new modification time is older than the inventory's (``cp -p``, ``rsync -t``).
    """
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(f"{file}\0{file_stamp(str(file))}\n".encode())
    return digest.hexdigest()[:16]


def safe_scene(product: Path) -> Scene:
    """A scene from a SAFE folder or zipped product (metadata, offsets, SCL)."""
    record = read_product(product)
    return Scene(
        product_name(product),
        record["date"],
        {band: (path, 1) for band, path in record["bands"].items()},
        offsets=record["offsets"],
        gain=10000.0 / record["quantification"],
        scl=record["scl"],
        cloud=record.get("cloud"),
        level=record["level"],
        baseline=record["baseline"],
    )


def eopf_scene(product: Path) -> Scene:
    """A scene from an EOPF Zarr product (:mod:`s2ecosg.stage.eopf`)."""
    record = product_record(product)
    return Scene(
        product.name.removesuffix(".zarr"),
        record["date"],
        {band: (path, 1) for band, path in record["bands"].items()},
        offsets=record["offsets"],
        gain=record["gain"],
        scl=record["scl"],
        level=record["level"],
        baseline=record["baseline"],
    )


def group_scenes(paths: list[Path], stack_bands: list[str] | None) -> list[Scene]:
    """SAFE products, loose band files grouped by prefix, and stacks (headers only)."""
    loose: dict[str, dict[str, BandFile]] = {}
    scenes = []
    for path in paths:
        match = BAND_FILE.match(path.name)
        if path.suffix.upper() in (".SAFE", ".ZIP"):
            scenes.append(safe_scene(path))
        elif is_product(path):
            scenes.append(eopf_scene(path))
        elif match:
            prefix = str(path.parent / match["prefix"])
            loose.setdefault(prefix, {})[match["band"].upper()] = (str(path), 1)
        elif path.suffix.lower() in (".tif", ".tiff"):
            scenes.append(stack_scene(path, stack_bands))
        else:
            LOG.info("skipping %s: neither a SAFE product, a band file nor a GeoTIFF stack", path)
    for prefix, bands in loose.items():
        scl = bands.pop("SCL")[0] if "SCL" in bands else None
        scenes.append(Scene(Path(prefix).name, date_from_name(Path(prefix).name), bands, scl=scl))
    return sorted(scenes, key=lambda scene: (scene.date, scene.scene_id))


def stack_scene(path: Path, stack_bands: list[str] | None) -> Scene:
    """A GeoTIFF stack: band names from its descriptions, else from ``imagery.stack_bands``."""
    with open_raster(path) as source:
        names = [(name or "").upper() for name in source.descriptions]
        floating = source.dtypes[0].startswith("float")
    if not all(names):
        if stack_bands is None or len(stack_bands) != len(names):
            raise InputError(path, "bands have no names; set band descriptions or imagery.stack_bands")
        names = list(stack_bands)
    bands = {name: (str(path), index) for index, name in enumerate(names, start=1)}
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
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    missing = [band for band in wanted if band not in scene.bands]
    if missing:
        where = source_file(next(iter(scene.bands.values()))[0])  # a zipped or Zarr product: the product
        raise InputError(where, f"scene {scene.scene_id} is missing band {', '.join(missing)} (no *_{missing[0]}*.jp2)")
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

    if scene.scl is None and all(band in scene.bands for band in CLOUD_BANDS):
        scene.cloud_bands = {band: scene.bands[band] for band in CLOUD_BANDS}
    # In band order (a set's order changes between processes: the scene lists would not be byte-stable).
    scene.offsets = {band: scene.offsets.get(band, 0) for band in dict.fromkeys([*wanted, *scene.cloud_bands])}
    scene.bands = {band: scene.bands[band] for band in wanted}
    files = {str(path) for path, _ in [*scene.bands.values(), *scene.cloud_bands.values()]}
    files |= {scene.scl} if scene.scl else set()
    scene.stamps = {path: file_stamp(path) for path in sorted(files)}


def source_file(path: str) -> str:
    """The file (or product folder) a band is read from: an EOPF product, the zip of a member, or the file."""
    return product_of(path) if path.startswith(EOPF_PREFIX) else archive_of(path)


def file_stamp(path: str) -> list[int]:
    """[size in bytes, modification time in ns] of a file (of its zip for a member): what a re-download changes."""
    status = Path(source_file(path)).stat()
    return [status.st_size, status.st_mtime_ns]


def check_utm_zone(path: str, crs: CRS) -> None:
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
