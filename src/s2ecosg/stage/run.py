"""Stage: warp every scene of a block of grid tiles onto the target grid, mask it and take the median composite.

Inputs: ``stage/scenes/{tile}.json`` (each tile's scenes, written by the inventory, see :mod:`s2ecosg.stage.inventory`).
Outputs: ``stage/{tile}.tif`` — uint16 reflectance × 10000 after the radiometric offset, one band per
``imagery.bands`` entry, nodata 0, band names as descriptions; ``stage/{tile}.count.tif`` — uint16 number of
valid observations per pixel (a band per season) and, last, the day (since 1970-01-01) of its newest valid one.

Each band is warped straight from its native 10/20/60 m grid to the 10 m target grid (bilinear), so
resampling and reprojection are one interpolation, done once per band and tile; each band file is decoded once
per job over the window covering every tile of the block it reaches (JPEG 2000 files are coded in 1024² px
tiles: a job per 10 km tile decodes them ~4× over), then sampled onto each tile. A pixel of a scene is invalid
when a band has no data or is saturated, or its Sen2Cor class (SCL, nearest) is one of ``imagery.scl_invalid``,
or s2cloudless calls it cloudy. Warped scenes are spooled to an anonymous temporary file and the median is
taken by row blocks sized to a fixed memory budget, so memory does not depend on the number of scenes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from s2ecosg.blocks import SIGNATURE_TAG, block_name, lookahead, report, signature, up_to_date, write_manifest
from s2ecosg.config import ImageryConfig
from s2ecosg.gdal_env import gdal_threads
from s2ecosg.grid import TargetGrid
from s2ecosg.io import write_raster
from s2ecosg.layout import NEWEST_BAND, tile_file
from s2ecosg.resample import PLANS
from s2ecosg.stage.composite import block_rows, median_composite
from s2ecosg.stage.inventory import TileList, read_tile_list
from s2ecosg.stage.parts import scene_parts
from s2ecosg.stage.scenes import Scene
from s2ecosg.stage.sources import source_of
from s2ecosg.stage.spool import Spool

LOG = logging.getLogger(__name__)
Season = tuple[dt.date, dt.date]  # first and last day (inclusive) of an ``imagery.seasons`` window


# Parts of one scene held at once across a block's tiles; below it the next scene is decoded while one is spooled.
LOOKAHEAD_BYTES = 256 * 2**20


def spool_scenes(
    scenes: list[Scene],
    listed: dict[str, set[str]],
    bands: list[str],
    grid: TargetGrid,
    settings: ImageryConfig,
    pool: ThreadPoolExecutor,
    spools: dict[str, Spool],
) -> dict[str, list[Scene]]:
    """Decode every scene once, sample it onto the tiles that list it, mask it and spool each tile's part.

    Returns, per tile, the scenes spooled in order (those without a valid pixel on the tile are skipped).
    """
    ahead = 1 if len(bands) * len(spools) * grid.tile_pixels**2 * 2 <= LOOKAHEAD_BYTES else 0
    spooled: dict[str, list[Scene]] = {tile: [] for tile in spools}
    started = (
        scene_parts(scene, bands, grid, [tile for tile in spools if scene.scene_id in listed[tile]], settings, pool)
        for scene in scenes
    )
    label = next(iter(spools)) if len(spools) == 1 else f"{len(spools)} tiles"
    progress = tqdm(
        zip(scenes, lookahead(started, ahead), strict=True),
        total=len(scenes),
        desc=f"warp {label}",
        unit="scene",
        mininterval=10,
    )
    for scene, finish in progress:
        for tile, (part, window) in finish().items():
            if not part[0].any():
                LOG.warning("scene %s has no valid pixel in tile %s: skipped", scene.scene_id, tile)
                continue
            spools[tile].add(part, window)
            spooled[tile].append(scene)
    return spooled


def median_of_spool(
    spool: Spool, chosen: list[int], days: list[int], pool: ThreadPoolExecutor, threads: int
) -> tuple[NDArray[np.uint16], NDArray[np.uint8], NDArray[np.uint16]]:
    """Median composite of the spooled scenes ``chosen`` (their dates as ``days`` since 1970-01-01).

    Returns ((bands, n, n) uint16 composite, (n, n) uint8 valid count, (n, n) uint16 day of the newest valid
    observation, 0 where none). Row blocks of the chosen scenes are read back over the rows and columns some scene
    reaches, ``threads`` blocks at once: memory holds the row blocks in flight, never all scenes of the tile.
    """
    size, n_bands = spool.size, spool.n_bands
    composite = np.zeros((n_bands, size, size), dtype=np.uint16)
    count = np.zeros((size, size), dtype=np.uint8)
    newest = np.zeros((size, size), dtype=np.uint16)
    if not chosen or spool.rows is None or spool.columns is None:
        return composite, count, newest
    (row0, row1), (column0, column1) = spool.rows, spool.columns
    step = max(8, block_rows(len(chosen), n_bands, column1 - column0) // threads)
    starts = range(row0, row1, step)
    chosen_days = np.asarray([days[index] for index in chosen], dtype=np.uint16)[:, None, None]

    def composite_rows(row: int) -> tuple[NDArray[np.uint16], NDArray[np.uint8], NDArray[np.uint16]]:
        stack = spool.read(row, min(step, row1 - row), chosen)
        last = np.where(stack[:, 0] != 0, chosen_days, 0).max(axis=0)  # before the median sorts the stack
        return (*median_composite(stack), last)

    blocks = (pool.submit(composite_rows, row) for row in starts)
    for row, block in zip(starts, lookahead(blocks, threads - 1), strict=True):
        rows = min(step, row1 - row)
        window = (slice(row, row + rows), slice(column0, column1))
        composite[(slice(None), *window)], count[window], newest[window] = block.result()
    return composite, count, newest


def scene_day(scene: Scene) -> int:
    """A scene's date as days since 1970-01-01 (0 when it has none)."""
    date = scene.date[:10]
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days if date else 0


def composite_block(
    tile_lists: list[TileList], settings: ImageryConfig, threads: int = 2, spool_folder: str = "."
) -> Iterator[tuple[str, NDArray[np.uint16], NDArray[np.uint16]]]:
    """Composites of the tiles of a block, each scene decoded once for all of them; yielded tile by tile.

    Per season (``imagery.seasons``, else one window) the median is stacked as bands. Yields:
        (tile, (bands × seasons, n, n) uint16 composite, (seasons, n, n) uint8 valid-observation counts).
    """
    grid, bands = TargetGrid(**tile_lists[0].grid), tile_lists[0].bands
    listed = {tile_list.tile: {scene.scene_id for scene in tile_list.scenes} for tile_list in tile_lists}
    scenes = list({scene.scene_id: scene for tile_list in tile_lists for scene in tile_list.scenes}.values())
    source = source_of(settings)
    scenes = [source.localise(scene, settings) for scene in scenes]
    try:
        with gdal_threads(threads) as pool:  # each thread opens, reads and closes its own files
            for strip in strips(grid, listed, len(bands)):
                yield from composite_strip(
                    scenes, {tile: listed[tile] for tile in strip}, bands, grid, settings, pool, threads, spool_folder
                )
    finally:
        PLANS.clear()  # the block's sampling plans, kept across its scenes


# Spooled bytes a job may hold at once: a block whose spool would exceed it is composited in strips of tile rows
# (each strip decodes its own window, so a strip edge costs one more decode of the JPEG 2000 tiles along it).
SPOOL_BYTES = 24 * 2**30


def strips(grid: TargetGrid, listed: dict[str, set[str]], n_bands: int) -> list[list[str]]:
    """The tiles of a block in strips of whole tile rows, north to south, each within :data:`SPOOL_BYTES`."""
    rows: dict[int, list[str]] = {}
    for tile in listed:
        rows.setdefault(grid.tile_index(tile)[1], []).append(tile)
    groups: list[list[str]] = []
    held = 0
    for row in sorted(rows, reverse=True):
        size = sum(len(listed[tile]) for tile in rows[row]) * n_bands * grid.tile_pixels**2 * 2
        if groups and held + size <= SPOOL_BYTES:
            groups[-1].extend(rows[row])
            held += size
        else:
            groups.append(list(rows[row]))
            held = size
    return groups


def composite_strip(
    scenes: list[Scene],
    listed: dict[str, set[str]],
    bands: list[str],
    grid: TargetGrid,
    settings: ImageryConfig,
    pool: ThreadPoolExecutor,
    threads: int,
    spool_folder: str,
) -> Iterator[tuple[str, NDArray[np.uint16], NDArray[np.uint16]]]:
    """:func:`composite_block` for the tiles of one strip."""
    wanted = set().union(*listed.values())
    scenes = [scene for scene in scenes if scene.scene_id in wanted]
    spools: dict[str, Spool] = {}
    try:
        for tile in listed:
            spools[tile] = Spool(spool_folder, len(listed[tile]), len(bands), grid.tile_pixels)
        spooled = spool_scenes(scenes, listed, bands, grid, settings, pool, spools)
        for tile, spool in spools.items():
            composites, counts, newest = [], [], np.zeros((grid.tile_pixels,) * 2, np.uint16)
            days = [scene_day(scene) for scene in spooled[tile]]
            seasons: list[Season | None] = [*settings.seasons] if settings.seasons else [None]
            for season in seasons:
                chosen = [index for index, scene in enumerate(spooled[tile]) if in_season(scene, season)]
                composite, count, last = median_of_spool(spool, chosen, days, pool, max(1, threads))
                composites.append(composite)
                counts.append(count)
                np.maximum(newest, last, out=newest)
            spool.close()
            LOG.info(
                "tile %s: %d scene(s), %.1f %% of pixels valid",
                tile,
                len(listed[tile]),
                100 * (counts[0] > 0).mean(),
            )
            yield tile, np.concatenate(composites), np.concatenate([np.stack(counts), newest[None]])
    finally:
        for spool in spools.values():
            spool.close()


def in_season(scene: Scene, season: Season | None) -> bool:
    """True when there are no seasons or the scene's date lies in ``season`` (inclusive)."""
    return season is None or season[0].isoformat() <= scene.date <= season[1].isoformat()


def band_names(bands: list[str], seasons: list[Season] | None) -> list[str]:
    """Band descriptions of the composite: ``B02``, or with seasons ``B02_s1``, ``B03_s1`` … ``B02_s2`` and so on."""
    if not seasons:
        return list(bands)
    return [f"{band}_s{index}" for index in range(1, len(seasons) + 1) for band in bands]


def write_tile(
    tile_list: TileList,
    settings: ImageryConfig,
    composite: NDArray[np.uint16],
    count: NDArray[np.uint16],
    outputs: tuple[str, str, dict[str, str] | None],
) -> None:
    """Write a tile's count raster, then its composite (which marks the tile complete), tagged with ``outputs.tags``.

    ``outputs``: (composite path, count path, tags).
    """
    grid = TargetGrid(**tile_list.grid)
    transform = grid.tile_transform(tile_list.tile)
    seasons = settings.seasons
    names = band_names(tile_list.bands, seasons)
    count_names = [f"valid_count_s{index}" for index in range(1, len(seasons) + 1)] if seasons else ["valid_count"]
    count_names.append(NEWEST_BAND)
    image_path, count_path, tags = outputs
    write_raster(
        count_path,
        count.astype(np.uint16),
        crs=grid.crs,
        transform=transform,
        nodata=None,
        descriptions=count_names,
        tags=tags,
    )
    write_raster(image_path, composite, crs=grid.crs, transform=transform, nodata=0, descriptions=names, tags=tags)


def run_stage(
    tile_list_path: str,
    settings: ImageryConfig,
    image_path: str,
    count_path: str,
    threads: int = 2,
    tags: dict[str, str] | None = None,
) -> None:
    """Write the composite and the count raster of one grid tile."""
    tile_list = read_tile_list(tile_list_path)
    Path(image_path).parent.mkdir(parents=True, exist_ok=True)
    for _, composite, count in composite_block([tile_list], settings, threads, str(Path(image_path).parent)):
        write_tile(tile_list, settings, composite, count, (image_path, count_path, tags))


def run_stage_block(
    tile_lists: list[str], settings: ImageryConfig, folder: str, manifest: str, threads: int = 2
) -> None:
    """Stage the tiles of one job block: ``{folder}/{tile}.tif`` and ``.count.tif`` each, then the manifest.

    Every scene is decoded once for all the block's tiles it reaches. Tiles whose files carry the signature of
    their current scene list and settings are kept (a rerun after a crash or a new scene redoes only what is
    missing or changed).
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    settings_record = settings.model_dump(mode="json")
    lists = {content.tile: content for content in (read_tile_list(path) for path in tile_lists)}
    entries, pending = {}, []
    for tile, content in lists.items():
        image_path, count_path = (tile_file(folder, "stage", role, tile) for role in ("image", "count"))
        wanted = signature(content.signature_content(), settings_record)
        entries[tile] = {"signature": wanted, "image": image_path, "count": count_path}
        if not up_to_date([image_path, count_path], entries[tile]["signature"]):
            pending.append(content)
    if pending:
        for tile, composite, count in composite_block(pending, settings, threads, folder):
            entry = entries[tile]
            write_tile(
                lists[tile],
                settings,
                composite,
                count,
                (entry["image"], entry["count"], {SIGNATURE_TAG: entry["signature"]}),
            )
    made = [content.tile for content in pending]
    report("stage", block_name(manifest), made, sorted(set(entries) - set(made)))
    write_manifest(manifest, block_name(manifest), entries)
