"""Cloud masks for Level-1C scenes without a Sen2Cor SCL: s2cloudless at 160 m, as its authors recommend.

The ten bands s2cloudless uses are averaged onto a 160 m grid aligned with the tile, the LightGBM model that
ships inside the ``s2cloudless`` package gives a cloud mask there (threshold 0.4, averaging disk 4, dilation
disk 2), and the mask is taken back to 10 m by nearest neighbour. Running at 160 m instead of 10 m costs
about 1/256 of the pixels (at 10 m it took 24 s for the small Brandenburg scene).
"""

from __future__ import annotations

import logging

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.arrays import Mask
from s2ecosg.stage.scenes import CLOUD_BANDS, Scene
from s2ecosg.warp import warp

LOG = logging.getLogger(__name__)
CLOUD_RESOLUTION = 160.0


def mask_method(scene: Scene, choice: str) -> str:
    """``scl``, ``s2cloudless`` or ``none`` for a scene, from ``imagery.cloud_mask`` and what the scene has."""
    has_scl, has_bands = bool(scene.scl), bool(scene.cloud_bands)
    if choice == "auto":
        return "scl" if has_scl else ("s2cloudless" if has_bands else "none")
    if choice == "s2cloudless" and not has_bands:
        LOG.warning(
            "scene %s lacks bands for s2cloudless (%s): not cloud-masked", scene.scene_id, ",".join(CLOUD_BANDS)
        )
        return "none"
    return choice if choice != "scl" or has_scl else "none"


def coarse_reflectance(scene: Scene, transform: Affine, size: int, crs: str) -> NDArray[np.float64]:
    """(size, size, 10) top-of-atmosphere reflectance 0..1 of the cloud bands, averaged to the coarse grid."""
    planes = []
    for band in CLOUD_BANDS:
        path, index = scene.cloud_bands[band]
        plane = warp(path, index, transform, (size, size), crs, resampling="average")
        offset = scene.offsets.get(band, 0)
        planes.append((plane + offset) * scene.gain / 10000.0)
    return np.nan_to_num(np.stack(planes, axis=-1), nan=0.0)


def cloud_mask(scene: Scene, tile_transform: Affine, tile_size: float, crs: str) -> Mask:
    """Boolean cloud mask of a scene on a 160 m grid aligned with the tile's upper-left corner."""
    from s2cloudless import S2PixelCloudDetector  # 1.1 s to import: loaded where used

    size = int(np.ceil(tile_size / CLOUD_RESOLUTION))
    transform = Affine(CLOUD_RESOLUTION, 0, tile_transform.c, 0, -CLOUD_RESOLUTION, tile_transform.f)
    reflectance = coarse_reflectance(scene, transform, size, crs)
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=False)
    mask = detector.get_cloud_masks(reflectance[np.newaxis])[0].astype(bool)
    LOG.info("scene %s: s2cloudless marks %.1f %% of the tile cloudy", scene.scene_id, 100 * mask.mean())
    return mask


def rows_at_full_resolution(mask: Mask, row: int, rows: int, width: int, resolution: float) -> Mask:
    """The (rows, width) part of a 160 m mask at the target resolution, starting at target row ``row``."""
    factor = resolution / CLOUD_RESOLUTION
    row_index = ((row + np.arange(rows)) * factor).astype(np.int64)
    column_index = (np.arange(width) * factor).astype(np.int64)
    return mask[np.ix_(row_index, column_index)]
