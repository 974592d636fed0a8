"""The SURFEX DIRECT pair (``.dir`` + ``.hdr``), assembled from blocks into bands of rows (:mod:`s2ecosg.surfex`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers
from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.surfex import CoverStream


def header_comment(basename: str, provenance: dict[str, str]) -> str:
    """Line 1 of the ``.hdr`` (SURFEX skips it): provenance in brief."""
    scenes = len(provenance.get("scenes", "").split())
    return (
        f"{Path(basename).name} s2ecosg {provenance.get('s2ecosg_version', '')} bundle {provenance.get('bundle', '')} "
        f"run {provenance.get('run_hash', '')} scenes {scenes}"
    )


class DirectWriter:
    """Write ``<base>.dir`` band of rows by band of rows (blocks arrive row-major); ``finish`` writes the header.

    Only one band of block rows is held in memory (rows × cols bytes), and the file is written sequentially,
    north row first, so memory does not grow with the grid.
    """

    def __init__(
        self, stack: contextlib.ExitStack, basename: str, grid: LonLatGrid, provenance: dict[str, str]
    ) -> None:
        comment = header_comment(basename, provenance)
        self.grid, self.stream = grid, CoverStream(stack, basename, grid.bounds, (grid.rows, grid.cols), comment)
        self.band: NDArray[np.uint8] | None = None
        self.next_row = 0

    @property
    def paths(self) -> tuple[Path, Path]:
        """The temporary (header, binary) being written: what the checks read before the renames."""
        return self.stream.header, self.stream.binary

    def write(self, block: Block, values: dict[str, Integers]) -> None:
        """Store a block of covers (row 0 = north); a completed band of rows goes to the file."""
        row, column, rows, columns = block
        if row != self.next_row:
            raise ValueError(f"blocks must arrive row-major: expected row {self.next_row}, got {row}")
        if self.band is None:
            self.band = np.zeros((rows, self.grid.cols), dtype=np.uint8)
        self.band[:, column : column + columns] = values["cover"]
        if column + columns == self.grid.cols:
            self.stream.write_rows(self.band)
            self.band, self.next_row = None, row + rows

    def finish(self) -> None:
        """Check every row was written, then write the header."""
        self.stream.close()
