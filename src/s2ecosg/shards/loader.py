"""Reading tile shards back: the patches of one split over every tile shard of an index, by global patch number.

:class:`ShardSet` indexes the patches of ``shards/index.json`` (:mod:`s2ecosg.shards.index`): global patch ``i`` is a
row of one tile's ``.npy`` arrays, read on demand with ``pread`` (nothing is copied into memory and nothing stays
mapped, so a reader's resident memory does not grow with the shard set). Each header is checked against the index,
and the index against the run's config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.errors import InputError
from s2ecosg.shards.cut import ShardHeader, read_header
from s2ecosg.shards.index import CHECKED, SHARD_DTYPES, check_header, checked_fields, read_index


class NpyRows:
    """Rows of a C-order ``.npy`` file read one at a time with ``pread`` (no memory map, no open file kept).

    Args:
        path: The ``.npy`` file.
        shape: Expected (rows, …) shape; another shape or dtype is refused naming the file.
        dtype: Expected dtype.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str) -> None:
        try:
            with open(path, "rb") as file:
                major, _ = np.lib.format.read_magic(file)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                found, fortran, found_dtype = read_header(file)
                self.offset = file.tell()
        except (OSError, ValueError) as error:
            raise InputError(path, f"not a readable .npy shard ({error})") from error
        if tuple(found) != tuple(shape) or fortran or found_dtype != np.dtype(dtype):
            raise InputError(
                path, f"holds {dtype_text(found, found_dtype)}, its header says {dtype_text(shape, dtype)}"
            )
        self.path, self.shape, self.dtype = str(path), tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        size = Path(path).stat().st_size
        if size < self.offset + shape[0] * self.row_bytes:
            raise InputError(path, f"truncated: {size} bytes for {shape[0]} patches of {self.row_bytes} bytes")

    def read(self, row: int) -> np.ndarray:
        """Row ``row`` as a new (writable) array of shape ``shape[1:]``, read straight into it."""
        array = np.empty(self.shape[1:], dtype=self.dtype)
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            count = os.preadv(descriptor, [array.data.cast("B")], self.offset + row * self.row_bytes)
        finally:
            os.close(descriptor)
        if count != self.row_bytes:
            raise InputError(self.path, f"truncated: row {row} of {self.shape[0]} cannot be read")
        return array


def dtype_text(shape: Any, dtype: Any) -> str:
    """``(n, …) dtype`` for messages."""
    return f"{tuple(shape)} {np.dtype(dtype).name}"


class ShardSet:
    """The patches of one split over all tile shards of an index, by global patch number.

    Patch numbers follow the tiles in name order and, inside a tile, its planning order: the order the single
    shards job of earlier versions wrote. Per patch, ``classes`` holds its [class id, pixels] pairs.

    Args:
        folder: The shards folder (``index.json`` and the tile shards).
        split: ``train`` or ``val``.
        expected: Fields the index must carry (``bands``, ``patch``, ``legend`` digest), from the run's config.
    """

    def __init__(self, folder: str | Path, split: str, expected: dict[str, Any] | None = None) -> None:

        self.folder = Path(folder)
        index = read_index(self.folder)
        shared = index.model_dump(include=set(CHECKED))
        check_header(shared | {"dtype": SHARD_DTYPES}, expected or {}, self.folder / "index.json")
        self.bands, self.patch = index.bands, index.patch
        self.files: list[tuple[NpyRows, NpyRows]] = []
        rows, files, self.classes = [], [], []
        for shard in index.shards:
            header = read_header(self.folder / shard.header)
            check_header(checked_fields(header), shared, self.folder / shard.header)
            chosen = [number for number, patch in enumerate(header.patches) if patch[2] == split]
            if not chosen:
                continue
            self.files.append(self.open_arrays(header))
            rows.append(np.asarray(chosen, dtype=np.int64))
            files.append(np.full(len(chosen), len(self.files) - 1, dtype=np.int32))
            self.classes += [header.classes[number] for number in chosen]
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.file_of = np.concatenate(files) if files else np.zeros(0, np.int32)

    def open_arrays(self, header: ShardHeader) -> tuple[NpyRows, NpyRows]:
        """The image and label rows of one tile shard, their shapes checked against its header."""
        count, size = len(header.patches), header.patch
        if header.images is None or header.labels is None:
            raise InputError(self.folder / f"{header.tile}.json", "the header lists patches but names no arrays")
        images = NpyRows(self.folder / header.images, (count, len(header.bands), size, size), "uint16")
        return images, NpyRows(self.folder / header.labels, (count, size, size), "uint8")

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Patch ``index``: (bands, P, P) uint16 reflectance and (P, P) uint8 class ids."""
        images, labels = self.files[self.file_of[index]]
        row = int(self.rows[index])
        return images.read(row), labels.read(row)

    def balanced_weights(self) -> np.ndarray:
        """Per-patch sampling weights for class balance: the mean over its labelled pixels of 1 / class frequency.

        A class's frequency is its share of this split's labelled pixels, so a patch of one rare class weighs as
        much as all the patches of a common class that hold as many pixels.
        """
        totals: dict[int, int] = {}
        for pairs in self.classes:
            for class_id, count in pairs:
                totals[class_id] = totals.get(class_id, 0) + count
        everything = sum(totals.values())
        weights = np.zeros(len(self.classes))
        for number, pairs in enumerate(self.classes):
            pixels = sum(count for _, count in pairs)
            weights[number] = sum(count * everything / totals[class_id] for class_id, count in pairs) / max(pixels, 1)
        return weights
