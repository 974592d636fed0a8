"""What the network is fed: reflectance normalised by the bundle's band statistics (training and prediction alike)."""

from __future__ import annotations

import numpy as np


def normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(bands, H, W) uint16 reflectance × 10000 → float32 (x − mean) / std; nodata (0) → 0."""
    valid = (image > 0).all(axis=0)
    normalised = (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    normalised[:, ~valid] = 0.0
    return normalised
