"""A service's own ECOSG cover map (global or regional DIRECT pair, any size) patched with a run's predictions.

The map is copied at disk speed (its holes kept: :func:`s2ecosg.io.copy_file`), then only the cells of the map's
own grid that the run's predicted area reaches are visited, block by block: each gets the most frequent cover of
the 10 m pixels whose centres fall in it (as the cover stage aggregates, :func:`~s2ecosg.cover.aggregate.
aggregate_block`), and is replaced when predicted pixels cover at least :data:`MIN_PREDICTED` of its area; every
other byte stays the map's own. Memory holds one block of cells (256 × 256); an 8.4 GB global map costs its copy.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from s2ecosg.arrays import Mask
from s2ecosg.cover.aggregate import CoverMapping, Source, aggregate_block, reaching
from s2ecosg.cover.cells import majority
from s2ecosg.cover.parallel import block_outputs
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.errors import InputError
from s2ecosg.io import copy_file
from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.surfex import header_text, parse_header

LOG = logging.getLogger(__name__)
MIN_PREDICTED = 0.5  # share of a cell's area its predicted pixels must cover for the cell to take their cover
BLOCK_CELLS = 256


@dataclass(frozen=True)
class CoverMap:
    """A DIRECT cover map on disk: its grid (edges as its header states them) and its files."""

    base: str
    grid: LonLatGrid
    south: float
    east: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) edges exactly as the header states them."""
        return self.grid.west, self.south, self.east, self.grid.north

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.grid.rows, self.grid.cols

    @classmethod
    def read(cls, base: str | Path) -> CoverMap:
        """The map's grid from its header; cells that are not square, or a ``.dir`` of another size, are refused."""
        header = parse_header(f"{base}.hdr")
        rows, cols = int(header["rows"]), int(header["cols"])
        west, east, north, south = (float(header[key]) for key in ("west", "east", "north", "south"))
        step_x, step_y = (east - west) / cols, (north - south) / rows
        if not math.isclose(step_x, step_y, rel_tol=1e-9):
            raise InputError(f"{base}.hdr", f"cells are not square ({step_x:.10g}° × {step_y:.10g}°): cannot patch")
        size = Path(f"{base}.dir").stat().st_size if Path(f"{base}.dir").exists() else -1
        if size != rows * cols:
            raise InputError(f"{base}.dir", f"has {size} bytes, its header says {rows} × {cols}")
        return cls(str(base), LonLatGrid(west, north, step_x, rows, cols), south, east)

    def window(self, bounds: tuple[float, float, float, float]) -> LonLatGrid | None:
        """The part of the map's grid that a (west, south, east, north) box reaches, on the map's own cells."""
        grid, (west, south, east, north) = self.grid, bounds
        first_column = max(0, math.floor((west - grid.west) / grid.step + 1e-9))
        last_column = min(grid.cols, math.ceil((east - grid.west) / grid.step - 1e-9))
        first_row = max(0, math.floor((grid.north - north) / grid.step + 1e-9))
        last_row = min(grid.rows, math.ceil((grid.north - south) / grid.step - 1e-9))
        if first_column >= last_column or first_row >= last_row:
            return None
        return LonLatGrid(
            grid.west + first_column * grid.step,
            grid.north - first_row * grid.step,
            grid.step,
            last_row - first_row,
            last_column - first_column,
        )


@dataclass(frozen=True)
class PatchJob:
    """What every block of a patch needs: the predicted rasters, the window of the map, the legend's covers."""

    sources: list[Source]
    grid: LonLatGrid
    mapping: CoverMapping
    reader: PixelClasses
    pixel_area: float  # m² of a predicted pixel


def patch_block(job: PatchJob, block: Block) -> tuple[Block, NDArray[np.uint8], Mask]:
    """(block, majority cover of the predicted pixels, cells to replace) of one block of the map's window."""
    counts = aggregate_block(job.sources, job.grid, block, job.mapping, job.reader).counts
    predicted = counts[..., 1:].sum(axis=-1) * job.pixel_area
    replace = predicted >= MIN_PREDICTED * job.grid.cell_areas(block)
    return block, majority(counts), replace & (predicted > 0)


def patch_blocks(job: PatchJob) -> Iterator[Block]:
    """The blocks of the map's window that a predicted raster reaches (the others keep the map's values)."""
    for block in job.grid.blocks(BLOCK_CELLS):
        if reaching(job.sources, job.grid.block_bounds(block)):
            yield block


def write_patch(
    handle: int, cover_map: CoverMap, window: LonLatGrid, result: tuple[Block, NDArray[np.uint8], Mask]
) -> int:
    """Write one block's replaced cells into the copy ``handle`` of the map (row by row); return cells replaced."""
    (row, column, rows, columns), cover, replace = result
    if not replace.any():
        return 0
    first_row = round((cover_map.grid.north - window.north) / window.step) + row
    first_column = round((window.west - cover_map.grid.west) / window.step) + column
    for offset in np.flatnonzero(replace.any(axis=1)):
        start = int((first_row + offset) * cover_map.grid.cols + first_column)
        line = bytearray(os.pread(handle, columns, start))
        values = np.frombuffer(line, dtype=np.uint8).copy()
        values[replace[offset]] = cover[offset][replace[offset]]
        os.pwrite(handle, values.tobytes(), start)
    return int(replace.sum())


def patch_map(cover_map: CoverMap, target: Path, job: PatchJob, workers: int, comment: str) -> int:
    """Write ``target``: the map copied, the cells the run predicts replaced, its header; return cells replaced.

    The header keeps the map's edges exactly (full precision) under a provenance comment (line 1).
    """
    copy_file(f"{cover_map.base}.dir", f"{target}.dir")
    blocks = list(patch_blocks(job))
    replaced = 0
    handle = os.open(f"{target}.dir", os.O_RDWR)
    try:
        with block_outputs(job, blocks, workers, patch_block) as results:
            for result in tqdm(results, total=len(blocks), desc="patch", unit="block", mininterval=10):
                replaced += write_patch(handle, cover_map, job.grid, result)
    finally:
        os.close(handle)
    Path(f"{target}.hdr").write_text(header_text(comment, cover_map.bounds, cover_map.shape))
    LOG.info("%s: %d of %d cells replaced in %d block(s)", target, replaced, job.grid.rows * job.grid.cols, len(blocks))
    return replaced
