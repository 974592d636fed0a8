"""Stage: warp every scene of a grid tile once onto the target grid and take the median composite.

Inputs: ``stage/inventory.json`` (scenes and their band files, see :mod:`s2ecosg.scenes`).
Outputs: ``stage/{tile}.tif`` — uint16 reflectance × 10000, one band per ``imagery.bands`` entry,
nodata 0, band names as descriptions; ``stage/{tile}.count.tif`` — uint8 valid observations per pixel.

Each band is warped straight from its native 10/20/60 m grid to the 10 m target grid (bilinear), so
resampling and reprojection are one interpolation, not two. Work goes row-block by row-block so the
memory of a job is bounded by the block, not by the tile.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from affine import Affine

from s2ecosg.grid import TargetGrid, intersect

LOG = logging.getLogger(__name__)
BLOCK_ROWS = 256


def warp_band(path: str, index: int, transform: Affine, shape: tuple[int, int], crs: str) -> np.ndarray:
    """Warp one band onto a target window; float32, NaN where the source has no data (0 or outside).

    Args:
        path: Source raster (JP2 or GeoTIFF).
        index: 1-based band index in ``path``.
        transform: Target window transform (upper-left origin).
        shape: Target window (rows, cols).
        crs: Target CRS.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    from s2ecosg.io import open_raster

    destination = np.zeros(shape, dtype=np.float32)
    with open_raster(path) as source:
        try:
            reproject(
                rasterio.band(source, index),
                destination,
                src_nodata=0,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=0,
                resampling=Resampling.bilinear,
            )
        except rasterio.errors.RasterioError as error:
            from s2ecosg.errors import InputError

            raise InputError(path, f"cannot read band {index} ({error})") from error
    destination[destination <= 0] = np.nan
    return destination


def scene_block(
    scene: dict[str, Any], bands: list[str], transform: Affine, shape: tuple[int, int], crs: str
) -> np.ndarray:
    """All bands of one scene on a target window: (bands, rows, cols) float32 reflectance × 10000.

    A pixel is kept only when every band is valid, so the composite never mixes scenes within a pixel.
    """
    stack = np.stack([warp_band(*scene["bands"][band], transform, shape, crs) for band in bands])
    stack *= scene.get("scale", 1.0)
    stack[:, np.isnan(stack).any(axis=0)] = np.nan
    return stack


def median_composite(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over scenes of valid observations.

    Args:
        stack: (scenes, bands, rows, cols) float32, NaN where invalid.

    Returns:
        (bands, rows, cols) uint16 composite (0 where no scene is valid) and (rows, cols) uint8 count.
    """
    count = np.isfinite(stack[:, 0]).sum(axis=0)
    composite = np.zeros(stack.shape[1:], dtype=np.uint16)
    valid = count > 0
    if valid.any():
        with np.errstate(all="ignore"):
            median = np.nanmedian(stack[:, :, valid], axis=0)
        composite[:, valid] = np.clip(np.rint(median), 1, 65535).astype(np.uint16)
    return composite, np.minimum(count, 255).astype(np.uint8)


def composite_tile(inventory: dict[str, Any], tile: str) -> tuple[np.ndarray, np.ndarray]:
    """Median composite of all scenes that touch ``tile``: ((bands, n, n) uint16, (n, n) uint8)."""
    from tqdm import tqdm

    grid = TargetGrid(**inventory["grid"])
    bands = inventory["bands"]
    scenes = [scene for scene in inventory["scenes"] if scene["scene_id"] in inventory["tiles"].get(tile, [])]
    size = grid.tile_pixels
    composite = np.zeros((len(bands), size, size), dtype=np.uint16)
    count = np.zeros((size, size), dtype=np.uint8)
    tile_transform = grid.tile_transform(tile)
    for row in tqdm(range(0, size, BLOCK_ROWS), desc=f"stage {tile}", unit="block", mininterval=5):
        rows = min(BLOCK_ROWS, size - row)
        transform = tile_transform @ Affine.translation(0, row)
        box = (
            tile_transform.c,
            tile_transform.f - (row + rows) * grid.resolution,
            tile_transform.c + grid.tile_size,
            tile_transform.f - row * grid.resolution,
        )
        touching = [scene for scene in scenes if intersect(tuple(scene["footprint"]), box)]
        if not touching:
            continue
        stack = np.stack([scene_block(scene, bands, transform, (rows, size), grid.crs) for scene in touching])
        composite[:, row : row + rows], count[row : row + rows] = median_composite(stack)
    LOG.info("tile %s: %d scene(s), %.1f %% of pixels valid", tile, len(scenes), 100 * (count > 0).mean())
    return composite, count


def run_stage(inventory_path: str, tile: str, image_path: str, count_path: str) -> None:
    """Write the composite and the count raster of one grid tile."""
    from s2ecosg.io import read_json, write_raster

    inventory = read_json(inventory_path)
    grid = TargetGrid(**inventory["grid"])
    composite, count = composite_tile(inventory, tile)
    transform = grid.tile_transform(tile)
    write_raster(image_path, composite, crs=grid.crs, transform=transform, nodata=0, descriptions=inventory["bands"])
    write_raster(count_path, count, crs=grid.crs, transform=transform, nodata=None, descriptions=["valid_count"])
