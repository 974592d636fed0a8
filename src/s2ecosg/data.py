"""Torch datasets over the shard arrays written by :mod:`s2ecosg.shards`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


def normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(bands, H, W) uint16 reflectance × 10000 → float32 (x − mean) / std; nodata (0) → 0."""
    valid = (image > 0).all(axis=0)
    normalised = (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    normalised[:, ~valid] = 0.0
    return normalised


class PatchDataset(Dataset):
    """Patches of one split, normalised, with optional flips and 90° rotations applied to image and label.

    Args:
        folder: The shards folder.
        split: ``train`` or ``val``.
        mean: Per-band mean (bands,).
        std: Per-band standard deviation (bands,).
        augment: Random flips / rotations (training only).
    """

    def __init__(
        self, folder: str | Path, split: str, mean: list[float], std: list[float], augment: bool = False
    ) -> None:
        self.images = np.load(Path(folder) / f"{split}_images.npy", mmap_mode="r")
        self.labels = np.load(Path(folder) / f"{split}_labels.npy", mmap_mode="r")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = normalise(np.asarray(self.images[index]), self.mean, self.std)
        label = np.array(self.labels[index])  # a writable copy of the memory-mapped patch
        if self.augment:
            turns, flip = np.random.randint(4), np.random.randint(2)
            image, label = np.rot90(image, turns, axes=(1, 2)), np.rot90(label, turns)
            if flip:
                image, label = image[:, :, ::-1], label[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label)).long()
