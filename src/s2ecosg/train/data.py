"""The training input pipeline: normalised, augmented patches of the shards, and the batches each rank trains on.

Patches come by global number from :class:`s2ecosg.shards.loader.ShardSet`. A batch item is
``(index, epoch, counted)``: the patch, the epoch (which seeds its flips and rotations, so a resumed or re-ranked
run sees the same augmentation) and whether it counts. :class:`EpochBatches` gives every
rank batches of the same size, so data-parallel ranks step together; the few items that pad the last global
batch repeat real patches with ``counted=False``, and their labels are blanked (id 0 is ignored by the loss
and the metrics), so every patch of an epoch is counted exactly once across all ranks. With class-balanced
sampling an epoch draws as many patches, with replacement, in proportion to their rare-class content.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from s2ecosg.model.inputs import normalise
from s2ecosg.shards.loader import ShardSet


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
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
        expected: dict[str, str | int] | None = None,
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
        weights: NDArray[np.float64] | None = None,
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

    def order(self) -> NDArray[np.int64]:
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
