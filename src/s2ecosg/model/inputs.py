"""What the network is fed: reflectance normalised by the bundle's band statistics (training and prediction alike)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers


def normalise(image: Integers, mean: NDArray[np.float32], std: NDArray[np.float32]) -> NDArray[np.float32]:
    """(bands, H, W) uint16 reflectance × 10000 → float32 (x − mean) / std; nodata (0) → 0."""
    valid = (image > 0).all(axis=0)
    normalised = (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    normalised[:, ~valid] = 0.0
    return normalised
