"""Per-pixel median composite of the valid observations of a stack of scenes.

The scenes of a tile arrive as a (scenes, bands, rows, cols) uint16 stack with 0 where a scene is invalid.
Shifting by −1 (uint16 wraps, so 0 becomes 65535) makes invalid observations sort after every valid one;
the median is then read at the middle of the first ``count`` sorted values. Up to :data:`NETWORK_SCENES` scenes
are sorted by a sorting network of whole-plane minimum/maximum operations (4× faster than ``np.sort`` along a
non-contiguous axis at 8 scenes), more by ``np.sort``.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers

BLOCK_BYTES = 64 * 2**20  # uint16 stack of one row block, all scenes and bands, and its sorted copy
NETWORK_SCENES = 24  # above this, np.sort beats the sorting network (measured on 10 × 200 × 700 planes)


@functools.cache
def sorting_network(size: int) -> tuple[tuple[int, int], ...]:
    """Comparators (low index, high index) of Batcher's odd–even merge sort for ``size`` elements.

    Built for the next power of two and pruned of comparators that reach past ``size``: padding elements
    would be +∞ and such comparators never move them, so the pruned network still sorts.
    """
    pairs = []
    padded = 1 << max(0, (size - 1).bit_length())
    span = 1
    while span < padded:
        distance = span
        while distance >= 1:
            for start in range(distance % span, padded - distance, 2 * distance):
                for offset in range(min(distance, padded - start - distance)):
                    low = start + offset
                    if low // (2 * span) == (low + distance) // (2 * span):
                        pairs.append((low, low + distance))
            distance //= 2
        span *= 2
    return tuple((low, high) for low, high in pairs if high < size)


def sort_scenes(stack: NDArray[np.uint16]) -> NDArray[np.uint16]:
    """``stack`` sorted along its first axis (scenes); may sort in place and return ``stack`` itself."""
    if stack.shape[0] > NETWORK_SCENES:
        stack.sort(axis=0)
        return stack
    planes = list(stack)
    spare = np.empty_like(planes[0])
    for low, high in sorting_network(len(planes)):
        np.minimum(planes[low], planes[high], out=spare)
        np.maximum(planes[low], planes[high], out=planes[high])
        planes[low], spare = spare, planes[low]
    return np.stack(planes)


def median_composite(stack: NDArray[np.uint16]) -> tuple[NDArray[np.uint16], NDArray[np.uint8]]:
    """Per-pixel median over scenes of valid observations.

    Args:
        stack: (scenes, bands, rows, cols) uint16, 0 where invalid; a scene is valid or invalid in all bands of
            a pixel at once (as :func:`s2ecosg.stage.parts.scene_parts` makes it). Overwritten.

    Returns:
        (bands, rows, cols) uint16 composite, the mean of the two middle values rounded half to even (0 where
        no scene is valid), and (rows, cols) uint8 count.
    """
    count = (stack[:, 0] != 0).sum(axis=0, dtype=np.uint16)
    np.subtract(stack, 1, out=stack)  # uint16 wraps: invalid (0) becomes 65535 and sorts after every valid value
    planes = sort_scenes(stack)
    # The two middle values, at ranks (count - 1) // 2 and count // 2 of the sorted valid observations.
    low = middle_value(planes, np.maximum(count, 1) - 1 >> 1)
    high = middle_value(planes, np.minimum(count >> 1, len(planes) - 1))
    total = low.astype(np.uint32)
    total += high
    total += 2  # undoes the shift of both values; (a + b) / 2 ≤ 65535, so no overflow below
    half = total >> 1
    median = half + ((total & 1) & (half & 1))  # as np.rint: halves go to the even neighbour
    median *= count > 0
    return median.astype(np.uint16), np.minimum(count, 255).astype(np.uint8)


def middle_value(planes: NDArray[np.uint16], rank: Integers) -> NDArray[np.uint16]:
    """(bands, rows, cols) value of the sorted ``planes`` (scenes, bands, rows, cols) at a per-pixel ``rank``.

    One flat gather per band (5× faster than ``np.take_along_axis`` with an index broadcast over bands).
    """
    scenes, bands, rows, columns = planes.shape
    flat = np.ascontiguousarray(planes).reshape(-1)
    pixels = rows * columns
    index = rank.astype(np.intp).reshape(-1) * (bands * pixels) + np.arange(pixels)
    result = np.empty((bands, pixels), dtype=planes.dtype)
    for band in range(bands):
        flat.take(index + band * pixels, out=result[band])
    return result.reshape(bands, rows, columns)


def block_rows(n_scenes: int, n_bands: int, width: int) -> int:
    """Rows per block so that the uint16 stack of all scenes (and its sort) stays within :data:`BLOCK_BYTES`."""
    return int(max(8, min(1024, BLOCK_BYTES // max(1, n_scenes * n_bands * width * 4))))
