"""Training losses: cross-entropy normalised over the global batch, class weights for rare classes, Dice.

Cross-entropy is summed over the labelled pixels of a rank's batch and divided by the labelled-pixel weight
of the *global* batch (all ranks), times the number of ranks: after DDP or Horovod average the gradients
over ranks, the update is exactly that of one process on the whole global batch, however the labelled pixels
fall across ranks. Label id 0 is "no label" and never contributes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional


def class_weights(class_pixels: dict[str, int], n_classes: int, method: str) -> torch.Tensor | None:
    """Per-id loss weights (n_classes + 1,), id 0 weighted 0; None for ``method == "none"``.

    ``inverse_sqrt``: 1/√(pixel share) of each class in the training patches, scaled to a pixel-weighted mean
    of 1 (classes absent from training get the largest weight seen, so they are not ignored if they appear).
    """
    if method == "none":
        return None
    counts = np.zeros(n_classes + 1, dtype=np.float64)
    for key, value in class_pixels.items():
        counts[int(key)] = value
    present = counts[1:] > 0
    weights = np.zeros(n_classes + 1, dtype=np.float64)
    share = counts[1:] / max(counts[1:].sum(), 1.0)
    weights[1:][present] = 1.0 / np.sqrt(share[present])
    weights[1:][~present] = weights[1:].max() if present.any() else 1.0
    weights[1:] /= max((weights[1:] * share).sum(), 1e-12) if present.any() else 1.0
    return torch.tensor(weights, dtype=torch.float32)


def labelled_weight(label: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Total loss weight of the labelled pixels of a batch (pixel count without class weights)."""
    if weights is None:
        return (label > 0).sum().float()
    return weights.to(label.device)[label].sum().float()


def dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in this batch's labels (labelled pixels only)."""
    probabilities = logits.float().softmax(dim=1)
    labelled = (label > 0).unsqueeze(1).float()
    target = functional.one_hot(label, logits.shape[1]).permute(0, 3, 1, 2).float() * labelled
    probabilities = probabilities * labelled
    overlap = (probabilities * target).sum(dim=(0, 2, 3))
    total = probabilities.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    present = target.sum(dim=(0, 2, 3))[1:] > 0
    if not present.any():
        return logits.sum() * 0.0
    return 1.0 - (2.0 * overlap[1:][present] / total[1:][present].clamp(min=1e-6)).mean()


def step_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    weights: torch.Tensor | None,
    global_weight: torch.Tensor,
    world_size: int,
    loss_name: str,
) -> torch.Tensor:
    """Loss of one rank's batch for a global batch whose labelled weight is ``global_weight``.

    Args:
        logits: (batch, n_classes + 1, H, W).
        label: (batch, H, W) int64 ids, 0 ignored.
        weights: Per-id class weights or None.
        global_weight: Labelled weight summed over all ranks' batches (see :func:`labelled_weight`).
        world_size: Number of ranks whose gradients are averaged.
        loss_name: ``ce`` or ``dice_ce`` (``train.loss``).
    """
    device_weights = weights.to(logits.device) if weights is not None else None
    summed = functional.cross_entropy(logits.float(), label, weight=device_weights, ignore_index=0, reduction="sum")
    loss = summed * world_size / global_weight.clamp(min=1.0)
    if loss_name == "dice_ce":
        loss = loss + dice_loss(logits, label)  # per-rank Dice: its gradient is averaged over ranks
    return loss
