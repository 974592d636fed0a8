"""The training input pipeline: patches of every tile shard by global number, and the batches each rank trains on.

:class:`ShardSet` indexes the patches of one split over all tile shards of ``shards/index.json``
(:mod:`s2ecosg.shard_index`): global patch ``i`` is a row of one tile's ``.npy`` arrays, read on demand with
``pread`` (nothing is copied into memory and nothing stays mapped, so a worker's resident memory does not grow
with the shard set). Each header is checked against the index, and the index against the run's config.

A batch item is ``(index, epoch, counted)``: the patch, the epoch (which seeds its flips and rotations, so a
resumed or re-ranked run sees the same augmentation) and whether it counts. :class:`EpochBatches` gives every
rank batches of the same size, so data-parallel ranks step together; the few items that pad the last global
batch repeat real patches with ``counted=False``, and their labels are blanked (id 0 is ignored by the loss
and the metrics), so every patch of an epoch is counted exactly once across all ranks. With class-balanced
sampling an epoch draws as many patches, with replacement, in proportion to their rare-class content.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from s2ecosg.errors import InputError


def normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(bands, H, W) uint16 reflectance × 10000 → float32 (x − mean) / std; nodata (0) → 0."""
    valid = (image > 0).all(axis=0)
    normalised = (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    normalised[:, ~valid] = 0.0
    return normalised


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
            count = os.preadv(descriptor, [memoryview(array).cast("B")], self.offset + row * self.row_bytes)
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
        from s2ecosg.io import read_json
        from s2ecosg.shard_index import CHECKED, check_header

        self.folder = Path(folder)
        index = read_json(self.folder / "index.json")
        check_header(
            index | {"dtype": {"images": "uint16", "labels": "uint8"}}, expected or {}, self.folder / "index.json"
        )
        self.bands, self.patch = index["bands"], index["patch"]
        self.files: list[tuple[NpyRows, NpyRows]] = []
        rows, files, self.classes = [], [], []
        for shard in index["shards"]:
            header = read_json(self.folder / shard["header"])
            check_header(header, {field: index[field] for field in CHECKED}, self.folder / shard["header"])
            chosen = [number for number, patch in enumerate(header["patches"]) if patch[2] == split]
            if not chosen:
                continue
            self.files.append(self.open_arrays(header))
            rows.append(np.asarray(chosen, dtype=np.int64))
            files.append(np.full(len(chosen), len(self.files) - 1, dtype=np.int32))
            self.classes += [header["classes"][number] for number in chosen]
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.file_of = np.concatenate(files) if files else np.zeros(0, np.int32)

    def open_arrays(self, header: dict[str, Any]) -> tuple[NpyRows, NpyRows]:
        """The image and label rows of one tile shard, their shapes checked against its header."""
        count, size = len(header["patches"]), header["patch"]
        images = NpyRows(self.folder / header["images"], (count, len(header["bands"]), size, size), "uint16")
        return images, NpyRows(self.folder / header["labels"], (count, size, size), "uint8")

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


class PatchDataset(Dataset):
    """Patches of one split, normalised, with optional flips and 90° rotations applied to image and label.

    Args:
        folder: The shards folder.
        split: ``train`` or ``val``.
        mean: Per-band mean (bands,).
        std: Per-band standard deviation (bands,).
        augment: Random flips / rotations (training only), drawn from (seed, epoch, index).
        seed: Seed of the augmentation.
        expected: Fields the shard index must carry (:class:`ShardSet`).
    """

    def __init__(
        self,
        folder: str | Path,
        split: str,
        mean: list[float],
        std: list[float],
        augment: bool = False,
        seed: int = 0,
        expected: dict[str, Any] | None = None,
    ) -> None:
        self.shards = ShardSet(folder, split, expected)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, item: int | tuple[int, int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """(bands, H, W) float32 image and (H, W) int64 label ids; the label is all 0 for an uncounted item."""
        index, epoch, counted = item if isinstance(item, tuple) else (item, 0, True)
        raw, label = self.shards.read(index)
        image = normalise(raw, self.mean, self.std)
        label = label if counted else np.zeros_like(label)
        if self.augment:
            turns, flip = np.random.default_rng([self.seed, epoch, index]).integers(0, [4, 2])
            image, label = np.rot90(image, turns, axes=(1, 2)), np.rot90(label, turns)
            if flip:
                image, label = image[:, :, ::-1], label[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label)).long()


class EpochBatches:
    """Batch sampler of one rank: the patches of an epoch in a seeded order, split across ranks by steps.

    Step ``s`` of the epoch takes items ``[s·B·W, (s+1)·B·W)`` of the (padded) order; rank ``r`` gets the
    ``r``-th slice of ``B`` of them. A global batch of ``B·W`` patches is therefore the same whatever the
    number of ranks, which makes a 2-rank run with batch N/2 equal to a 1-rank run with batch N.

    Args:
        size: Patches in the split.
        batch_size: Patches per step on this rank (B).
        rank: This rank (r).
        world: Number of ranks (W).
        seed: Seed of the order.
        shuffle: Shuffle per epoch (training) or keep the order (validation).
        weights: Per-patch sampling weights (class-balanced sampling): each epoch then draws ``size`` patches with
            replacement in proportion to them, from (seed, epoch), the same draw on every rank.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        shuffle: bool,
        weights: np.ndarray | None = None,
    ) -> None:
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.shuffle = seed, shuffle
        self.probabilities = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        self.epoch, self.start = 0, 0

    def steps(self) -> int:
        """Steps per epoch (the last global batch padded)."""
        return math.ceil(self.size / (self.batch_size * self.world)) if self.size else 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch and the step to start at (a resumed run skips the steps it has done)."""
        self.epoch, self.start = epoch, start

    def order(self) -> np.ndarray:
        """The epoch's patch order, padded by wrapping around to whole global batches."""
        order = np.arange(self.size)
        generator = np.random.default_rng([self.seed, self.epoch])
        if self.probabilities is not None:
            order = generator.choice(self.size, size=self.size, replace=True, p=self.probabilities)
        elif self.shuffle:
            order = generator.permutation(self.size)
        padded = self.steps() * self.batch_size * self.world
        return np.resize(order, padded)

    def __len__(self) -> int:
        return max(0, self.steps() - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        order, global_batch = self.order(), self.batch_size * self.world
        for step in range(self.start, self.steps()):
            first = step * global_batch + self.rank * self.batch_size
            yield [
                (int(order[position]), self.epoch, position < self.size)
                for position in range(first, first + self.batch_size)
            ]
