"""How a chunk of a prediction raster becomes classes per pixel: most likely, probability-weighted, or drawn.

The most likely class (hard fractions), every ranked class weighted by its probability (soft fractions), or an
ensemble member's draw (:class:`~s2ecosg.cover.members.MemberDraw`).

A reader answers :class:`PixelClasses`; the aggregation adds each pixel's classes (with their weights, if any) to
the output cell it falls in. A reader's ``repr`` is part of the block cache's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from affine import Affine
from numpy.typing import NDArray

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from rasterio.windows import Window


class PixelClasses(Protocol):
    """Classes of a chunk's pixels, from the open raster of a tile."""

    @property
    def weighted(self) -> bool:
        """Whether :meth:`read` gives weights (cover counts are then fractional)."""

    def read(
        self, raster: DatasetReader, window: Window, transform: Affine
    ) -> tuple[NDArray[np.uint8], NDArray[np.float64] | None]:
        """((K, rows, cols) uint8 class ids, 0 = none; (K, rows, cols) float64 weights summing to 1, or None)."""


@dataclass(frozen=True)
class MostLikely:
    """The class raster (``predict/{tile}.tif``): each pixel counts once for its most likely class (hard fractions)."""

    weighted: bool = False

    def read(
        self, raster: DatasetReader, window: Window, transform: Affine
    ) -> tuple[NDArray[np.uint8], NDArray[np.float64] | None]:
        """Band 1 of the chunk."""
        return raster.read(1, window=window)[None], None


@dataclass(frozen=True)
class Probabilities:
    """A ranked-classes raster (``probs.tif`` or ``top2.tif``): each pixel adds its K classes' probabilities.

    The probabilities are renormalised over the K (the mass of classes not on disk is shared in proportion), so a
    cell's cover counts sum to its pixels and its fractions are the expected cover shares: soft fractions.
    """

    weighted: bool = True

    def read(
        self, raster: DatasetReader, window: Window, transform: Affine
    ) -> tuple[NDArray[np.uint8], NDArray[np.float64] | None]:
        """Classes (bands 1, 3, …) and their renormalised probabilities (bands 2, 4, … over their sum)."""
        ranked = raster.read(window=window)
        codes = ranked[1::2].astype(np.float64)
        total = codes.sum(axis=0)
        return ranked[0::2], codes / np.where(total > 0, total, 1.0)
