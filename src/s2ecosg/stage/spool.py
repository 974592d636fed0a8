"""The spool of a stage job: warped scenes of one tile in an anonymous sparse temporary file."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from numpy.typing import NDArray

from s2ecosg.errors import InputError


class Spool:
    """Warped scenes of one tile in an anonymous temporary file: (scenes, bands, n, n) uint16, 0 = invalid.

    The file is sparse: rows a scene does not reach are never written and read back as 0. It is deleted on
    close or crash.
    """

    def __init__(self, folder: str, n_scenes: int, n_bands: int, size: int) -> None:

        self.folder = folder
        try:
            self.handle = tempfile.TemporaryFile(dir=folder)
            self.handle.truncate(n_scenes * n_bands * size * size * 2)
        except OSError as error:
            raise InputError(folder, f"cannot spool warped scenes here ({error.strerror})") from None
        self.n_bands, self.size, self.scenes = n_bands, size, 0
        self.rows: tuple[int, int] | None = None
        self.columns: tuple[int, int] | None = None

    def add(self, part: NDArray[np.uint16], window: tuple[slice[int, int, int], slice[int, int, int]]) -> None:
        """Store one scene's (bands, h, w) part of the tile at ``window``, as full-width rows."""
        rows, columns = window
        for band in range(self.n_bands):
            buffer = np.zeros((rows.stop - rows.start, self.size), dtype=np.uint16)
            buffer[:, columns] = part[band]
            try:
                os.pwrite(self.handle.fileno(), buffer.data, self.offset(self.scenes, band, rows.start))
            except OSError as error:
                raise InputError(self.folder, f"cannot spool warped scenes here ({error.strerror})") from None
        self.scenes += 1
        self.rows = union(self.rows, (rows.start, rows.stop))
        self.columns = union(self.columns, (columns.start, columns.stop))

    def offset(self, scene: int, band: int, row: int) -> int:
        """Byte offset of a row of one scene's band."""
        return ((scene * self.n_bands + band) * self.size + row) * self.size * 2

    def read(self, row: int, rows: int, scenes: list[int] | None = None) -> NDArray[np.uint16]:
        """(scenes, bands, rows, columns) uint16 of stored scenes (default: all) over the columns any scene reaches."""
        chosen = list(range(self.scenes)) if scenes is None else scenes
        column0, column1 = self.columns or (0, 0)
        stack = np.empty((len(chosen), self.n_bands, rows, column1 - column0), dtype=np.uint16)
        buffer = np.empty((rows, self.size), dtype=np.uint16)
        for position, scene in enumerate(chosen):
            for band in range(self.n_bands):
                os.preadv(self.handle.fileno(), [buffer.data], self.offset(scene, band, row))
                stack[position, band] = buffer[:, column0:column1]
        return stack

    def close(self) -> None:
        """Delete the file."""
        self.handle.close()


def union(span: tuple[int, int] | None, other: tuple[int, int]) -> tuple[int, int]:
    """Smallest half-open range holding both."""
    return other if span is None else (min(span[0], other[0]), max(span[1], other[1]))
