"""Stage: warp every scene of a grid tile once onto the target grid, mask it and take the median composite.

Inputs: ``stage/scenes/{tile}.json`` (the tile's scenes, written by the inventory, see :mod:`s2ecosg.scenes`).
Outputs: ``stage/{tile}.tif`` — uint16 reflectance × 10000 after the radiometric offset, one band per
``imagery.bands`` entry, nodata 0, band names as descriptions; ``stage/{tile}.count.tif`` — uint8 number of
valid observations per pixel.

Each band is warped straight from its native 10/20/60 m grid to the 10 m target grid (bilinear), so
resampling and reprojection are one interpolation, done once per band and tile. A pixel of a scene is invalid
when a band has no data or is saturated, or its Sen2Cor class (SCL, nearest) is one of ``imagery.scl_invalid``,
or s2cloudless calls it cloudy. Warped scenes are spooled to an anonymous temporary file and the median is
taken by row blocks sized to a fixed memory budget, so memory does not depend on the number of scenes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from affine import Affine

from s2ecosg.blocks import SIGNATURE_TAG, lookahead
from s2ecosg.clouds import cloud_mask, mask_method, rows_at_full_resolution
from s2ecosg.composite import block_rows, median_composite
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid, intersect
from s2ecosg.io import warp

LOG = logging.getLogger(__name__)


def scene_reflectance(
    scene: dict[str, Any],
    band: str,
    tile: tuple[Affine, tuple[int, int], str],
    part: tuple[slice, slice],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """One band of a scene on part of a tile: uint16 reflectance × 10000 after offset and gain, 0 where invalid.

    With ``out`` (uint16, the part's shape), the result is written there and returned.
    """
    values = warp(*scene["bands"][band], *tile, part=part)
    invalid = np.isnan(values)
    offset, gain = scene.get("offsets", {}).get(band, 0), scene.get("gain", 1.0)
    if offset:
        values += offset
    if gain != 1.0:
        values *= gain
    check_scale(values, invalid, scene["bands"][band], gain)
    # In place, one pass each: this runs for every band, scene and tile. Reflectance 0 is nodata in the
    # composite, so dark valid pixels are kept at 1.
    np.rint(values, out=values)
    np.clip(values, 1, 65535, out=values)
    np.copyto(values, 0, where=invalid)
    if out is None:
        return values.astype(np.uint16)
    np.copyto(out, values, casting="unsafe")
    return out


# Median reflectance × 10000 of a band above which the values cannot be reflectance (snow and thick cloud reach
# about 1.0-1.5; 2.0 is beyond any surface), at or below which they are reflectance 0..1 stored as integers.
LARGEST_MEDIAN, SMALLEST_MEDIAN = 20000.0, 1.0


def check_scale(values: np.ndarray, invalid: np.ndarray, band_file: list[Any], gain: float) -> None:
    """Refuse a band whose values are not reflectance × 10000 after offset and gain (e.g. a float stack of DN).

    Judged on the median of at most about 4 000 of the pixels that hold data (cheap beside the warp, and a band
    off scale is off everywhere).
    """
    valid = values[~invalid]
    if valid.size < 16:
        return
    sample = valid[:: max(1, valid.size // 4096)]
    median = float(np.median(sample))
    path, index = band_file
    if median > LARGEST_MEDIAN:
        kind = "a float stack must hold reflectance 0..1" if gain == 10000.0 else "expected DN or reflectance × 10000"
        raise InputError(
            path,
            f"band {index}: median value {median:.0f} as reflectance × 10000 (> {LARGEST_MEDIAN:.0f}) is not a "
            f"reflectance; {kind}",
        )
    if median <= SMALLEST_MEDIAN:
        raise InputError(
            path,
            f"band {index}: median value {median:.3g} as reflectance × 10000: looks like reflectance 0..1 stored "
            "as integers (store reflectance × 10000, or floats 0..1)",
        )


def footprint_window(footprint: tuple[float, ...], transform: Affine, size: int) -> tuple[slice, slice] | None:
    """Rows and columns of a tile that a scene footprint (target CRS) can reach, one pixel of slack; None if none."""
    left, bottom, right, top = footprint
    column0 = max(0, int(np.floor((left - transform.c) / transform.a)) - 1)
    column1 = min(size, int(np.ceil((right - transform.c) / transform.a)) + 1)
    row0 = max(0, int(np.floor((transform.f - top) / -transform.e)) - 1)
    row1 = min(size, int(np.ceil((transform.f - bottom) / -transform.e)) + 1)
    if column0 >= column1 or row0 >= row1:
        return None
    return slice(row0, row1), slice(column0, column1)


def scene_tile(
    scene: dict[str, Any],
    bands: list[str],
    tile: tuple[Affine, tuple[int, int], str],
    settings: Any,
    pool: ThreadPoolExecutor,
    grid: TargetGrid,
) -> Callable[[], tuple[np.ndarray, tuple[slice, slice]]] | None:
    """Start warping all bands of one scene onto the part of a tile its footprint reaches; None if it misses.

    Each band (and the SCL layer and the s2cloudless mask) is one task in ``pool``, warped once per tile (one
    decode, one resampling). The returned function waits for them and gives ((bands, h, w) uint16, part), 0
    where invalid: a pixel is kept only when every band is valid, its SCL class is not excluded and
    s2cloudless (if used) calls it clear, so the composite never mixes clear and cloudy observations.
    """
    tile_transform, (size, _), _ = tile
    window = footprint_window(tuple(scene["footprint"]), tile_transform, size)
    if window is None:
        return None
    rows, columns = window
    part = np.empty((len(bands), rows.stop - rows.start, columns.stop - columns.start), dtype=np.uint16)
    planes = [
        pool.submit(scene_reflectance, scene, band, tile, window, part[index]) for index, band in enumerate(bands)
    ]
    classes = None
    if scene.get("scl") and settings.scl_invalid and mask_method(scene, settings.cloud_mask) == "scl":
        classes = pool.submit(warp, scene["scl"], 1, *tile, resampling="nearest", part=window)
    clouds = None
    if mask_method(scene, settings.cloud_mask) == "s2cloudless":
        clouds = pool.submit(cloud_mask, scene, tile_transform, grid.tile_size, grid.crs)

    def finish() -> tuple[np.ndarray, tuple[slice, slice]]:
        invalid = planes[0].result() == 0
        for plane in planes[1:]:
            invalid |= plane.result() == 0
        if classes is not None:
            scene_classes = classes.result()
            invalid |= np.isin(scene_classes, settings.scl_invalid) | np.isnan(scene_classes)
        if clouds is not None:
            mask = clouds.result()
            invalid |= rows_at_full_resolution(mask, rows.start, rows.stop - rows.start, size, grid.resolution)[
                :, columns
            ]
        np.multiply(part, ~invalid, out=part)
        return part, window

    return finish


class Spool:
    """Warped scenes of one tile in an anonymous temporary file: (scenes, bands, n, n) uint16, 0 = invalid.

    The file is sparse: rows a scene does not reach are never written and read back as 0. It is deleted on
    close or crash.
    """

    def __init__(self, folder: str, n_scenes: int, n_bands: int, size: int) -> None:
        import tempfile

        self.folder = folder
        try:
            self.handle = tempfile.TemporaryFile(dir=folder)
            self.handle.truncate(n_scenes * n_bands * size * size * 2)
        except OSError as error:
            raise InputError(folder, f"cannot spool warped scenes here ({error.strerror})") from None
        self.n_bands, self.size, self.scenes = n_bands, size, 0
        self.rows: tuple[int, int] | None = None
        self.columns: tuple[int, int] | None = None

    def add(self, part: np.ndarray, window: tuple[slice, slice]) -> None:
        """Store one scene's (bands, h, w) part of the tile at ``window``, as full-width rows."""
        import os

        rows, columns = window
        for band in range(self.n_bands):
            buffer = np.zeros((rows.stop - rows.start, self.size), dtype=np.uint16)
            buffer[:, columns] = part[band]
            try:
                os.pwrite(self.handle.fileno(), buffer, self.offset(self.scenes, band, rows.start))
            except OSError as error:
                raise InputError(self.folder, f"cannot spool warped scenes here ({error.strerror})") from None
        self.scenes += 1
        self.rows = union(self.rows, (rows.start, rows.stop))
        self.columns = union(self.columns, (columns.start, columns.stop))

    def offset(self, scene: int, band: int, row: int) -> int:
        """Byte offset of a row of one scene's band."""
        return ((scene * self.n_bands + band) * self.size + row) * self.size * 2

    def read(self, row: int, rows: int) -> np.ndarray:
        """(scenes, bands, rows, columns) uint16 of the stored scenes over the columns any scene reaches."""
        import os

        column0, column1 = self.columns or (0, 0)
        stack = np.empty((self.scenes, self.n_bands, rows, column1 - column0), dtype=np.uint16)
        buffer = np.empty((rows, self.size), dtype=np.uint16)
        for scene in range(self.scenes):
            for band in range(self.n_bands):
                os.preadv(self.handle.fileno(), [buffer], self.offset(scene, band, row))
                stack[scene, band] = buffer[:, column0:column1]
        return stack

    def close(self) -> None:
        """Delete the file."""
        self.handle.close()


def union(span: tuple[int, int] | None, other: tuple[int, int]) -> tuple[int, int]:
    """Smallest half-open range holding both."""
    return other if span is None else (min(span[0], other[0]), max(span[1], other[1]))


def warp_scenes(
    scenes: list[dict[str, Any]], bands: list[str], grid: TargetGrid, tile: str, settings: Any, spool: Spool, pool: Any
) -> None:
    """Warp every scene onto the tile, mask it and store it in ``spool``; scenes with no valid pixel are skipped.

    The next scene's bands are already being warped while one scene is masked and spooled, and at most two
    scenes are in flight, so memory does not grow with the number of scenes.
    """
    from tqdm import tqdm

    size, tile_transform = grid.tile_pixels, grid.tile_transform(tile)
    target = (tile_transform, (size, size), grid.crs)
    started = (scene_tile(scene, bands, target, settings, pool, grid) for scene in scenes)
    for scene, finish in tqdm(
        zip(scenes, lookahead(started, 1), strict=True),
        total=len(scenes),
        desc=f"warp {tile}",
        unit="scene",
        mininterval=10,
    ):
        warped = None if finish is None else finish()
        if warped is None or not warped[0][0].any():
            LOG.warning("scene %s has no valid pixel in tile %s: skipped", scene["scene_id"], tile)
            continue
        spool.add(*warped)


def composite_scenes(
    scenes: list[dict[str, Any]],
    bands: list[str],
    grid: TargetGrid,
    tile: str,
    settings: Any,
    pool: ThreadPoolExecutor,
    spool_folder: str,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Median composite of a set of scenes on one tile: ((bands, n, n) uint16, (n, n) uint8 count).

    Each scene is warped once for the whole tile and spooled to disk; the median then reads row blocks of all
    scenes back, over the rows and columns some scene reaches, ``threads`` blocks at once. Memory holds
    two scenes' tiles or the row blocks in flight, never all scenes' tiles.
    """
    size = grid.tile_pixels
    box = grid.tile_bounds(tile)
    scenes = [scene for scene in scenes if intersect(tuple(scene["footprint"]), box)]
    composite = np.zeros((len(bands), size, size), dtype=np.uint16)
    count = np.zeros((size, size), dtype=np.uint8)
    if not scenes:
        return composite, count
    spool = Spool(spool_folder, len(scenes), len(bands), size)
    try:
        warp_scenes(scenes, bands, grid, tile, settings, spool, pool)
        if spool.rows is None or spool.columns is None:
            return composite, count
        (row0, row1), (column0, column1) = spool.rows, spool.columns
        step = max(8, block_rows(spool.scenes, len(bands), column1 - column0) // threads)
        starts = range(row0, row1, step)
        blocks = (
            pool.submit(lambda row: median_composite(spool.read(row, min(step, row1 - row))), row) for row in starts
        )
        for row, block in zip(starts, lookahead(blocks, threads - 1), strict=True):
            rows = min(step, row1 - row)
            composite[:, row : row + rows, column0:column1], count[row : row + rows, column0:column1] = block.result()
    finally:
        spool.close()
    return composite, count


def in_season(scene: dict[str, Any], season: tuple[Any, Any] | None) -> bool:
    """True when there are no seasons or the scene's date lies in ``season`` (inclusive)."""
    return season is None or season[0].isoformat() <= scene.get("date", "") <= season[1].isoformat()


def composite_tile(
    tile_list: dict[str, Any], settings: Any, threads: int = 2, spool_folder: str = "."
) -> tuple[np.ndarray, np.ndarray]:
    """Composite of one tile: per season (``imagery.seasons``, else one window) stacked as bands.

    Returns:
        (bands × seasons, n, n) uint16 composite and (seasons, n, n) uint8 valid-observation counts.
    """
    grid, bands, tile, scenes = (
        TargetGrid(**tile_list["grid"]),
        tile_list["bands"],
        tile_list["tile"],
        tile_list["scenes"],
    )
    if getattr(settings, "stac", None) is not None:
        from s2ecosg.stac import localise

        scenes = [localise(scene, settings.stac) for scene in scenes]
    composites, counts = [], []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for season in getattr(settings, "seasons", None) or [None]:
            chosen = [scene for scene in scenes if in_season(scene, season)]
            composite, count = composite_scenes(chosen, bands, grid, tile, settings, pool, spool_folder, threads)
            composites.append(composite)
            counts.append(count)
    LOG.info("tile %s: %d scene(s), %.1f %% of pixels valid", tile, len(scenes), 100 * (counts[0] > 0).mean())
    return np.concatenate(composites), np.stack(counts)


def band_names(bands: list[str], seasons: list[Any] | None) -> list[str]:
    """Band descriptions of the composite: ``B02``, or with seasons ``B02_s1``, ``B03_s1`` … ``B02_s2`` and so on."""
    if not seasons:
        return list(bands)
    return [f"{band}_s{index}" for index in range(1, len(seasons) + 1) for band in bands]


def run_stage(
    tile_list_path: str,
    settings: Any,
    image_path: str,
    count_path: str,
    threads: int = 2,
    tags: dict[str, str] | None = None,
) -> None:
    """Write the composite and the count raster of one grid tile (the count first: the image marks it complete)."""
    from s2ecosg.io import read_json, use_read_settings, write_raster

    use_read_settings()
    tile_list = read_json(tile_list_path)
    grid = TargetGrid(**tile_list["grid"])
    from pathlib import Path

    spool = Path(image_path).parent
    spool.mkdir(parents=True, exist_ok=True)
    composite, count = composite_tile(tile_list, settings, threads, str(spool))
    transform = grid.tile_transform(tile_list["tile"])
    seasons = getattr(settings, "seasons", None)
    names = band_names(tile_list["bands"], seasons)
    count_names = [f"valid_count_s{index}" for index in range(1, len(seasons) + 1)] if seasons else ["valid_count"]
    write_raster(count_path, count, crs=grid.crs, transform=transform, nodata=None, descriptions=count_names, tags=tags)
    write_raster(image_path, composite, crs=grid.crs, transform=transform, nodata=0, descriptions=names, tags=tags)


def run_stage_block(tile_lists: list[str], settings: Any, folder: str, manifest: str, threads: int = 2) -> None:
    """Stage the tiles of one job block: ``{folder}/{tile}.tif`` and ``.count.tif`` each, then the manifest.

    Tiles whose files carry the signature of their current scene list and settings are kept (a rerun after a
    crash or a new scene redoes only what is missing or changed).
    """
    from pathlib import Path

    from s2ecosg.blocks import block_name, report, signature, up_to_date, write_manifest
    from s2ecosg.io import read_json

    settings_record = settings.model_dump(mode="json")
    tiles, made, kept = {}, [], []
    for path in tile_lists:
        tile = read_json(path)["tile"]
        image, count = str(Path(folder) / f"{tile}.tif"), str(Path(folder) / f"{tile}.count.tif")
        wanted = signature(read_json(path), settings_record)
        if up_to_date([image, count], wanted):
            kept.append(tile)
        else:
            run_stage(path, settings, image, count, threads, tags={SIGNATURE_TAG: wanted})
            made.append(tile)
        tiles[tile] = {"signature": wanted, "image": image, "count": count}
    report("stage", block_name(manifest), made, kept)
    write_manifest(manifest, block_name(manifest), tiles)
