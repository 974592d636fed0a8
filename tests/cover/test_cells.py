"""The per-cell values from the non-zero counts against the dense definitions (majority, fractions)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ecosg.cover.aggregate import BlockCounts
from s2ecosg.cover.cells import block_values, fractions, majority
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.writers.table import share_codes
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import snap_grid


def dense_values(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The brute-force reference: every cover of every cell."""
    pixels = counts[..., 1:].sum(axis=-1)
    share = fractions(counts).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        majority_share = np.where(pixels > 0, counts[..., 1:].max(axis=-1) / pixels, np.nan)
        terms = np.where(share > 0, -share * np.log(share), 0.0)
    entropy = np.where(pixels > 0, terms.sum(axis=0) / np.log(N_COVERS), np.nan)
    return {
        "cover": majority(counts),
        "fraction": share_codes(fractions(counts)),
        "majority_share": share_codes(majority_share),
        "cover_entropy": entropy,
    }


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 9), columns=st.integers(1, 9), top=st.integers(1, 6))
def test_block_values_equal_the_dense_definitions(seed: int, rows: int, columns: int, top: int) -> None:
    # Few covers per cell, small counts (so ties are common), some empty cells and some pixels of no cover.
    rng = np.random.default_rng(seed)
    counts = np.zeros((rows, columns, N_COVERS + 1), np.int64)
    for row in range(rows):
        for column in range(columns):
            covers = rng.choice(N_COVERS + 1, size=rng.integers(0, 5), replace=False)
            counts[row, column, covers] = rng.integers(0, top, size=covers.size)
    totals = BlockCounts(counts, np.zeros((rows, columns)), np.zeros((rows, columns)))
    grid = snap_grid((10.0, 45.0, 10.0 + columns / 100, 45.0 + rows / 100), 0.01)
    values = block_values(totals, grid, (0, 0, rows, columns), GapFiller(None, None, 1))
    reference = dense_values(counts)
    assert np.array_equal(values["cover"], reference["cover"])
    assert np.array_equal(values["fraction"], reference["fraction"])
    assert np.array_equal(values["majority_share"], reference["majority_share"])
    # Entropy from float32 fractions in the reference: equal to within one code.
    entropy = np.where(values["cover_entropy"] == 255, np.nan, values["cover_entropy"] / 250)
    np.testing.assert_allclose(entropy, reference["cover_entropy"], atol=1 / 250 + 1e-6)
    assert np.array_equal(values["source"], (reference["cover"] > 0).astype(np.uint8))
    assert (values["model_confidence"] == 255).all()
