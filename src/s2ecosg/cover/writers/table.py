"""The 33 ECOSG covers as the writers name and colour them (``data/ecosg_covers.csv``), and how shares are stored."""

from __future__ import annotations

import csv

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Floats
from s2ecosg.io import package_csv

FRACTION_SCALE = 1 / 250  # fractions and shares stored as uint8 × 1/250 (255 = missing)
MISSING_SHARE = 255


def share_codes(shares: Floats) -> NDArray[np.uint8]:
    """0..1 shares (NaN = missing) as their uint8 codes: round(share / FRACTION_SCALE), NaN → MISSING_SHARE.

    The arithmetic is netCDF4's packing with ``add_offset`` 0 and ``scale_factor`` FRACTION_SCALE read back as
    float64 (so the codes equal what the library wrote when it packed the floats itself).
    """
    missing = np.isnan(shares)
    with np.errstate(invalid="ignore"):  # NaN's codes are undefined until overwritten below
        codes = np.around((shares - np.float64(0.0)) / np.float64(FRACTION_SCALE)).astype(np.uint8)
    codes[missing] = MISSING_SHARE
    return codes


def ecosg_table() -> list[dict[str, str]]:
    """The 33 ECOSG covers: number, name, SURFEX tile, colour."""
    with package_csv("ecosg_covers.csv") as handle:
        return list(csv.DictReader(handle))
