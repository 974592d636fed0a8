"""One scene onto the tiles of a block: each band decoded once, sampled onto every tile, masked.

A pixel of a scene is invalid when a band has no data or is saturated, or its Sen2Cor class (SCL, nearest) is one
of ``imagery.scl_invalid``, or s2cloudless calls it cloudy. Bands off the reflectance × 10000 scale are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.arrays import Floats, Mask
from s2ecosg.config import ImageryConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import Bounds, TargetGrid
from s2ecosg.stage.clouds import cloud_mask, mask_method, rows_at_full_resolution
from s2ecosg.warp import decode_band, warp_decoded

if TYPE_CHECKING:
    from concurrent.futures import Future

    from s2ecosg.stage.scenes import BandFile, Scene

LOG = logging.getLogger(__name__)
Window: TypeAlias = "tuple[slice[int, int, int], slice[int, int, int]]"  # rows and columns of a tile
Target: TypeAlias = (
    "tuple[tuple[Affine, tuple[int, int], str], Window]"  # (tile transform, shape, CRS), the part's window
)
Part: TypeAlias = (
    "tuple[NDArray[np.uint16], Window]"  # (bands, h, w) reflectance × 10000 of a scene on a tile, 0 = invalid
)


# Median reflectance × 10000 of a band above which the values cannot be reflectance (snow and thick cloud reach
# about 1.0-1.5; 2.0 is beyond any surface), at or below which they are reflectance 0..1 stored as integers.
LARGEST_MEDIAN, SMALLEST_MEDIAN = 20000.0, 1.0


def check_scale(values: NDArray[np.float32], invalid: Mask, band_file: BandFile, gain: float) -> None:
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


def footprint_window(footprint: tuple[float, ...], transform: Affine, size: int) -> Window | None:
    """Rows and columns of a tile that a scene footprint (target CRS) can reach, one pixel of slack; None if none."""
    left, bottom, right, top = footprint
    column0 = max(0, int(np.floor((left - transform.c) / transform.a)) - 1)
    column1 = min(size, int(np.ceil((right - transform.c) / transform.a)) + 1)
    row0 = max(0, int(np.floor((transform.f - top) / -transform.e)) - 1)
    row1 = min(size, int(np.ceil((transform.f - bottom) / -transform.e)) + 1)
    if column0 >= column1 or row0 >= row1:
        return None
    return slice(row0, row1), slice(column0, column1)


def to_reflectance(values: NDArray[np.float32], scene: Scene, band: str, out: NDArray[np.uint16]) -> None:
    """Warped DN (float32, NaN = invalid) into ``out``: uint16 reflectance × 10000 after offset and gain, 0 = invalid."""
    invalid = np.isnan(values)
    offset, gain = scene.offsets.get(band, 0), scene.gain
    if offset:
        values += offset
    if gain != 1.0:
        values *= gain
    check_scale(values, invalid, scene.bands[band], gain)
    # In place, one pass each: this runs for every band, scene and tile. Reflectance 0 is nodata in the
    # composite, so dark valid pixels are kept at 1.
    np.rint(values, out=values)
    np.clip(values, 1, 65535, out=values)
    np.copyto(values, 0, where=invalid)
    np.copyto(out, values, casting="unsafe")


def band_onto_tiles(
    scene: Scene,
    band: str,
    position: int,
    targets: dict[str, Target],
    area: Bounds,
    parts: dict[str, NDArray[np.uint16]],
) -> None:
    """Decode one band of a scene once over ``area`` and sample it onto plane ``position`` of every tile's part."""
    path, index = scene.bands[band]
    crs = next(iter(targets.values()))[0][2]
    decoded = decode_band(path, index, area, crs)
    for tile, (target, window) in targets.items():
        values = warp_decoded(decoded, path, index, target, window)
        to_reflectance(values, scene, band, parts[tile][position])


def classes_onto_tiles(path: str, targets: dict[str, Target], area: Bounds) -> dict[str, Floats]:
    """A class layer (SCL) decoded once over ``area`` and sampled (nearest) onto every tile's part: float32."""
    crs = next(iter(targets.values()))[0][2]
    decoded = decode_band(path, 1, area, crs)
    return {
        tile: warp_decoded(decoded, path, 1, target, window, "nearest") for tile, (target, window) in targets.items()
    }


def scene_targets(scene: Scene, grid: TargetGrid, tiles: list[str]) -> dict[str, Target]:
    """Each tile the scene's footprint reaches: its (transform, shape, CRS) and the rows and columns reached."""
    size = grid.tile_pixels
    targets: dict[str, Target] = {}
    for tile in tiles:
        transform = grid.tile_transform(tile)
        window = footprint_window(scene.footprint, transform, size)
        if window is not None:
            targets[tile] = ((transform, (size, size), grid.crs), window)
    return targets


def scene_parts(
    scene: Scene,
    bands: list[str],
    grid: TargetGrid,
    tiles: list[str],
    settings: ImageryConfig,
    pool: ThreadPoolExecutor,
) -> Callable[[], dict[str, Part]]:
    """Start decoding a scene over the tiles it reaches, each band once, and sampling it onto each tile.

    Each band (and the SCL layer) is one task in ``pool``: one decode of the window covering all the tiles, one
    resampling per tile. The returned function waits for them and gives tile → ((bands, h, w) uint16 part, its
    rows and columns in the tile), 0 where invalid: a pixel is kept only when every band is valid, its SCL class
    is not excluded and s2cloudless (if used, per tile at 160 m) calls it clear.
    """
    targets = scene_targets(scene, grid, tiles)
    if not targets:
        return lambda: {}
    area = covered_area(targets, grid.resolution)
    parts = {
        tile: np.empty((len(bands), rows.stop - rows.start, columns.stop - columns.start), dtype=np.uint16)
        for tile, (_, (rows, columns)) in targets.items()
    }
    planes = [
        pool.submit(band_onto_tiles, scene, band, position, targets, area, parts) for position, band in enumerate(bands)
    ]
    method = mask_method(scene, settings.cloud_mask)
    classes = None
    if scene.scl and settings.scl_invalid and method == "scl":
        classes = pool.submit(classes_onto_tiles, scene.scl, targets, area)
    clouds = {}
    if method == "s2cloudless":
        clouds = {
            tile: pool.submit(cloud_mask, scene, target[0], grid.tile_size, grid.crs)
            for tile, (target, _) in targets.items()
        }

    def finish() -> dict[str, Part]:
        for plane in planes:
            plane.result()
        scene_classes = classes.result() if classes is not None else {}
        return {
            tile: (
                mask_part(part, targets[tile][1], scene_classes.get(tile), clouds.get(tile), settings, grid),
                targets[tile][1],
            )
            for tile, part in parts.items()
        }

    return finish


def mask_part(
    part: NDArray[np.uint16],
    window: Window,
    classes: Floats | None,
    clouds: Future[Mask] | None,
    settings: ImageryConfig,
    grid: TargetGrid,
) -> NDArray[np.uint16]:
    """Zero a tile part wherever a band is invalid, its SCL class is excluded or s2cloudless (a future) says cloud."""
    rows, columns = window
    invalid = (part == 0).any(axis=0)
    if classes is not None:
        invalid |= np.isin(classes, settings.scl_invalid) | np.isnan(classes)
    if clouds is not None:
        mask = rows_at_full_resolution(
            clouds.result(), rows.start, rows.stop - rows.start, grid.tile_pixels, grid.resolution
        )
        invalid |= mask[:, columns]
    np.multiply(part, ~invalid, out=part)
    return part


def covered_area(targets: dict[str, Target], resolution: float) -> Bounds:
    """The box (target CRS) of every tile part in ``targets``."""
    boxes = []
    for (transform, _, _), (rows, columns) in targets.values():
        left, top = transform.c + columns.start * resolution, transform.f - rows.start * resolution
        boxes.append(
            (left, top - (rows.stop - rows.start) * resolution, left + (columns.stop - columns.start) * resolution, top)
        )
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
