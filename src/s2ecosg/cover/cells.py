"""What each output cell of a block gets from its cover counts: majority cover, fractions, majority share.

Per cell, only a few of the 33 covers have pixels, so the values are computed from the non-zero counts alone
(:func:`block_values`); :func:`majority` and :func:`fractions` are the plain dense definitions they equal.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers, Numbers
from s2ecosg.cover.aggregate import BlockCounts
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.writers.table import share_codes
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import Block, LonLatGrid


def majority(counts: Numbers) -> NDArray[np.uint8]:
    """Most frequent cover per cell (ties: the lowest cover number); 0 where a cell has no pixel."""
    best = counts[..., 1:].argmax(axis=-1) + 1
    return np.where(counts[..., 1:].sum(axis=-1) > 0, best, 0).astype(np.uint8)


def fractions(counts: Numbers) -> NDArray[np.float32]:
    """(33, rows, cols) float32 share of each cover 1..33 among a cell's valid pixels (0 where none)."""
    total = counts[..., 1:].sum(axis=-1, keepdims=True)
    share = np.divide(counts[..., 1:], total, out=np.zeros(counts[..., 1:].shape, dtype=np.float64), where=total > 0)
    return np.moveaxis(share, -1, 0).astype(np.float32)


class SparseCells(NamedTuple):
    """Per cell of a block (flattened): the values :func:`sparse_cells` computes from its non-zero counts."""

    cover: NDArray[np.uint8]  # majority cover, 0 where the cell has no pixel
    fraction: NDArray[np.uint8]  # (33, cells) share codes
    majority_share: NDArray[np.float64]  # NaN where the cell has no pixel
    entropy: NDArray[np.float64]  # 0..1, NaN where the cell has no pixel


def sparse_cells(counts: Numbers) -> SparseCells:
    """Majority cover (uint8, 0 where none), fraction codes (33, cells), majority share and entropy of every cell.

    The entropy is Shannon's, −Σ f ln f over the cell's cover fractions, divided by ln 33 (0: one cover, 1: all 33
    equally); NaN where the cell has no pixel.

    Args:
        counts: (cells, 34) pixel counts per cover (column 0: pixels of no cover, ignored).
    """
    cells, covers = np.nonzero(counts)  # by cell, then by cover; on the contiguous array (its [:, 1:] is slow)
    kept = covers > 0
    cells, covers = cells[kept], covers[kept]
    values = counts[cells, covers]
    covers -= 1
    size = counts.shape[0]
    cover, codes = np.zeros(size, np.uint8), np.zeros((N_COVERS, size), np.uint8)
    majority_share, entropy = np.full(size, np.nan), np.full(size, np.nan)
    if values.size == 0:
        return SparseCells(cover, codes, majority_share, entropy)
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    occupied, lengths = cells[starts], np.diff(np.r_[starts, values.size])
    pixels, largest = np.add.reduceat(values, starts), np.maximum.reduceat(values, starts)
    # The first (lowest) cover reaching the cell's largest count, as argmax picks it.
    at_largest = np.flatnonzero(values == np.repeat(largest, lengths))
    first = at_largest[np.r_[True, cells[at_largest[1:]] != cells[at_largest[:-1]]]]
    cover[occupied] = covers[first] + 1
    share = values / np.repeat(pixels, lengths)
    codes[covers, cells] = share_codes(share.astype(np.float32))
    majority_share[occupied] = largest / pixels
    entropy[occupied] = np.maximum(np.add.reduceat(-share * np.log(share), starts), 0.0) / np.log(N_COVERS)
    return SparseCells(cover, codes, majority_share, entropy)


def member_spread(members: list[BlockCounts]) -> NDArray[np.float64]:
    """(33, rows, cols) standard deviation over the members of each cover fraction; NaN where no member has pixels.

    A member without pixels in a cell has no fractions there and is left out of that cell's spread.
    """
    shares = np.stack([fractions(member.counts).astype(np.float64) for member in members])
    present = np.stack([member.counts[..., 1:].sum(axis=-1) > 0 for member in members])[:, None]
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present, shares, 0.0).sum(axis=0) / count
        variance = np.where(present, (shares - mean) ** 2, 0.0).sum(axis=0) / count
    return np.where(count > 0, np.sqrt(variance), np.nan)


def data_score(totals: BlockCounts, grid: LonLatGrid, block: Block, pixel_area: float) -> dict[str, Integers]:
    """What each cell's cover rests on, as CLC+ Backbone's data score: observations, their age, predicted area.

    ``clear_observations``: the mean number of valid (clear) observations of the cell's predicted pixels, rounded,
    uint8 (255 = unknown); ``newest_observation``: the day (since 1970-01-01) of the newest clear observation of
    any of them, uint16 (0 = unknown); ``predicted_share``: the share of the cell's area its predicted pixels
    (``pixel_area`` m² each) cover, as a share code.
    """
    pixels = totals.counts[..., 1:].sum(axis=-1).astype(np.float64)
    assert totals.observation_sum is not None and totals.newest_day is not None
    known = (pixels > 0) & (totals.observation_sum > 0)
    mean = np.divide(totals.observation_sum, pixels, out=np.zeros_like(pixels), where=known)
    observations = np.where(known, np.minimum(np.rint(mean), 254), 255).astype(np.uint8)
    share = np.minimum(pixels * pixel_area / grid.cell_areas(block), 1.0)
    return {
        "clear_observations": observations,
        "newest_observation": totals.newest_day.astype(np.uint16),
        "predicted_share": share_codes(share),
    }


def block_values(
    totals: BlockCounts,
    grid: LonLatGrid,
    block: Block,
    filler: GapFiller,
    members: list[BlockCounts] | None = None,
    pixel_area: float = 100.0,
) -> dict[str, Integers]:
    """Everything written for one block from its counts: cover, source flag, fractions, shares, data score.

    Fractions, majority share, confidence, entropy and (with ensemble ``members``' counts) the between-member
    spread of each fraction come as share codes (:func:`~s2ecosg.cover.writers.table.share_codes`); they equal the
    dense definitions (:func:`majority`, :func:`fractions`), filled cells at share 1 of their cover. The data score
    (:func:`data_score`) takes predicted pixels of ``pixel_area`` m².
    """
    shape = block[2:]
    cells = sparse_cells(totals.counts.reshape(-1, N_COVERS + 1))
    predicted = cells.cover.reshape(shape)
    cover, flags = filler.fill(predicted, grid, block)
    fraction = cells.fraction.reshape(N_COVERS, *shape)
    filled = (predicted == 0) & (cover > 0)
    entropy = cells.entropy.reshape(shape)
    if filled.any():
        fraction[cover[filled] - 1, *np.nonzero(filled)] = share_codes(np.ones(1, np.float32))[0]
        entropy[filled] = 0.0  # one cover, from the fill
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(totals.confidence_pixels > 0, totals.confidence_sum / totals.confidence_pixels, np.nan)
    values = {
        "cover": cover,
        "source": flags,
        "fraction": fraction,
        "majority_share": share_codes(cells.majority_share.reshape(shape)),
        "model_confidence": share_codes(confidence),
        "cover_entropy": share_codes(entropy),
    }
    values |= data_score(totals, grid, block, pixel_area)
    if members:  # else the variable is never written: its chunks stay unallocated and read as missing
        values["fraction_spread"] = share_codes(member_spread(members))
    return values
