"""Stage: warp every scene of a grid tile once onto the target grid, mask it and take the median composite.

Inputs: ``stage/scenes/{tile}.json`` (the tile's scenes, written by the inventory, see :mod:`s2ecosg.scenes`).
Outputs: ``stage/{tile}.tif`` — uint16 reflectance × 10000 after the radiometric offset, one band per
``imagery.bands`` entry, nodata 0, band names as descriptions; ``stage/{tile}.count.tif`` — uint8 number of
valid observations per pixel.

Each band is warped straight from its native 10/20/60 m grid to the 10 m target grid (bilinear), so
resampling and reprojection are one interpolation. A pixel of a scene is invalid when a band has no data
or is saturated, or its Sen2Cor class (SCL, nearest) is one of ``imagery.scl_invalid``. Work goes by
row blocks sized so that all scenes of a block fit a fixed memory budget, whatever the number of scenes.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from affine import Affine

from s2ecosg.clouds import cloud_mask, mask_method, rows_at_full_resolution
from s2ecosg.grid import TargetGrid, intersect

LOG = logging.getLogger(__name__)
BLOCK_BYTES = 64 * 2**20  # float32 stack of one row block, all scenes and bands
SATURATED = 65535


def warp(path: str, index: int, transform: Affine, shape: tuple[int, int], crs: str, nearest: bool = False) -> np.ndarray:
    """Warp one band onto a target window: float32, NaN where the source has no data (or is saturated).

    Args:
        path: Source raster (JP2 or GeoTIFF).
        index: 1-based band index in ``path``.
        transform: Target window transform (upper-left origin).
        shape: Target window (rows, cols).
        crs: Target CRS.
        nearest: Nearest-neighbour (class rasters such as SCL) instead of bilinear.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    from s2ecosg.errors import InputError
    from s2ecosg.io import open_raster

    destination = np.full(shape, np.nan, dtype=np.float32)
    with open_raster(path) as source:
        nodata = source.nodata if source.nodata is not None else 0
        try:
            reproject(rasterio.band(source, index), destination, src_nodata=nodata, dst_transform=transform,
                      dst_crs=crs, dst_nodata=np.nan,
                      resampling=Resampling.nearest if nearest else Resampling.bilinear)
        except rasterio.errors.RasterioError as error:
            raise InputError(path, f"cannot read band {index} ({str(error).splitlines()[0]})") from error
    if not nearest:
        destination[(destination <= 0) | (destination >= SATURATED - 0.5)] = np.nan
    return destination


def scene_block(scene: dict[str, Any], bands: list[str], window: tuple[Affine, tuple[int, int], str], settings: Any,
                pool: ThreadPoolExecutor, clouds: np.ndarray | None = None) -> np.ndarray:
    """All bands of one scene on a target window: (bands, rows, cols) float32 reflectance × 10000, NaN = invalid.

    A pixel is kept only when every band is valid and its SCL class is not excluded, so the composite never
    mixes clear and cloudy observations of one scene within a pixel.
    """
    transform, shape, crs = window
    warped = list(pool.map(lambda band: warp(*scene["bands"][band], transform, shape, crs), bands))
    stack = np.stack(warped)
    for index, band in enumerate(bands):
        stack[index] = (stack[index] + scene.get("offsets", {}).get(band, 0)) * scene.get("gain", 1.0)
    np.maximum(stack, 1.0, out=stack, where=np.isfinite(stack))  # reflectance 0 is nodata in the composite
    invalid = np.isnan(stack).any(axis=0)
    if scene.get("scl") and settings.scl_invalid and mask_method(scene, settings.cloud_mask) == "scl":
        classes = warp(scene["scl"], 1, transform, shape, crs, nearest=True)
        invalid |= np.isin(classes, settings.scl_invalid) | np.isnan(classes)
    if clouds is not None:
        invalid |= clouds
    stack[:, invalid] = np.nan
    return stack


def median_composite(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over scenes of valid observations.

    Args:
        stack: (scenes, bands, rows, cols) float32, NaN where invalid; a scene is valid or invalid in all bands
            of a pixel at once (as :func:`scene_block` makes it). Sorted in place.

    Returns:
        (bands, rows, cols) uint16 composite (0 where no scene is valid) and (rows, cols) uint8 count.
    """
    count = np.isfinite(stack[:, 0]).sum(axis=0)
    stack.sort(axis=0)  # NaN sorts last, so the first `count` entries are the valid observations
    low = np.broadcast_to(np.maximum(count - 1, 0) // 2, stack.shape[1:])[np.newaxis]
    high = np.broadcast_to(count // 2, stack.shape[1:])[np.newaxis]
    high = np.minimum(high, stack.shape[0] - 1)
    median = (np.take_along_axis(stack, low, axis=0)[0] + np.take_along_axis(stack, high, axis=0)[0]) / 2
    composite = np.where(count > 0, np.clip(np.rint(np.nan_to_num(median)), 1, 65535), 0).astype(np.uint16)
    return composite, np.minimum(count, 255).astype(np.uint8)


def block_rows(n_scenes: int, n_bands: int, width: int) -> int:
    """Rows per block so that the float32 stack of all scenes stays within :data:`BLOCK_BYTES`."""
    return int(max(8, min(1024, BLOCK_BYTES // max(1, n_scenes * n_bands * width * 4))))


def composite_scenes(scenes: list[dict[str, Any]], bands: list[str], grid: TargetGrid, tile: str, settings: Any,
                     pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """Median composite of a set of scenes on one tile: ((bands, n, n) uint16, (n, n) uint8 count)."""
    from tqdm import tqdm

    size, tile_transform = grid.tile_pixels, grid.tile_transform(tile)
    composite = np.zeros((len(bands), size, size), dtype=np.uint16)
    count = np.zeros((size, size), dtype=np.uint8)
    seen = dict.fromkeys((scene["scene_id"] for scene in scenes), 0)
    step = block_rows(len(scenes), len(bands), size)
    clouds = {scene["scene_id"]: cloud_mask(scene, tile_transform, grid.tile_size, grid.crs) for scene in scenes
              if mask_method(scene, settings.cloud_mask) == "s2cloudless"}
    for row in tqdm(range(0, size, step), desc=f"stage {tile}", unit="block", mininterval=10):
        rows = min(step, size - row)
        window = (tile_transform @ Affine.translation(0, row), (rows, size), grid.crs)
        box = (tile_transform.c, tile_transform.f - (row + rows) * grid.resolution,
               tile_transform.c + grid.tile_size, tile_transform.f - row * grid.resolution)
        touching = [scene for scene in scenes if intersect(tuple(scene["footprint"]), box)]
        if not touching:
            continue
        stack = np.empty((len(touching), len(bands), rows, size), dtype=np.float32)
        for index, scene in enumerate(touching):
            clouds_here = (rows_at_full_resolution(clouds[scene["scene_id"]], row, rows, size, grid.resolution)
                           if scene["scene_id"] in clouds else None)
            stack[index] = scene_block(scene, bands, window, settings, pool, clouds_here)
            seen[scene["scene_id"]] += int(np.isfinite(stack[index, 0]).sum())
        composite[:, row : row + rows], count[row : row + rows] = median_composite(stack)
    for scene_id in (scene_id for scene_id, pixels in seen.items() if pixels == 0):
        LOG.warning("scene %s has no valid pixel in tile %s: skipped", scene_id, tile)
    return composite, count


def in_season(scene: dict[str, Any], season: tuple[Any, Any] | None) -> bool:
    """True when there are no seasons or the scene's date lies in ``season`` (inclusive)."""
    return season is None or season[0].isoformat() <= scene.get("date", "") <= season[1].isoformat()


def composite_tile(tile_list: dict[str, Any], settings: Any, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Composite of one tile: per season (``imagery.seasons``, else one window) stacked as bands.

    Returns:
        (bands × seasons, n, n) uint16 composite and (seasons, n, n) uint8 valid-observation counts.
    """
    grid, bands, tile, scenes = TargetGrid(**tile_list["grid"]), tile_list["bands"], tile_list["tile"], tile_list["scenes"]
    if getattr(settings, "stac", None) is not None:
        from s2ecosg.stac import localise

        scenes = [localise(scene, settings.stac) for scene in scenes]
    composites, counts = [], []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for season in getattr(settings, "seasons", None) or [None]:
            chosen = [scene for scene in scenes if in_season(scene, season)]
            composite, count = composite_scenes(chosen, bands, grid, tile, settings, pool)
            composites.append(composite)
            counts.append(count)
    LOG.info("tile %s: %d scene(s), %.1f %% of pixels valid", tile, len(scenes), 100 * (counts[0] > 0).mean())
    return np.concatenate(composites), np.stack(counts)


def band_names(bands: list[str], seasons: list[Any] | None) -> list[str]:
    """Band descriptions of the composite: ``B02`` or, with seasons, ``B02_s1``, ``B03_s1``, …, ``B02_s2``, …"""
    if not seasons:
        return list(bands)
    return [f"{band}_s{index}" for index in range(1, len(seasons) + 1) for band in bands]


def run_stage(tile_list_path: str, settings: Any, image_path: str, count_path: str, threads: int = 2) -> None:
    """Write the composite and the count raster of one grid tile."""
    from s2ecosg.io import read_json, write_raster

    tile_list = read_json(tile_list_path)
    grid = TargetGrid(**tile_list["grid"])
    composite, count = composite_tile(tile_list, settings, threads)
    transform = grid.tile_transform(tile_list["tile"])
    seasons = getattr(settings, "seasons", None)
    names = band_names(tile_list["bands"], seasons)
    write_raster(image_path, composite, crs=grid.crs, transform=transform, nodata=0, descriptions=names)
    count_names = [f"valid_count_s{index}" for index in range(1, len(seasons) + 1)] if seasons else ["valid_count"]
    write_raster(count_path, count, crs=grid.crs, transform=transform, nodata=None, descriptions=count_names)
