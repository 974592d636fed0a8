"""The parts of a training step: the network on its device and wrapped for the backend, optimizer, schedule, scaler.

Built once per training process (:func:`build_parts`) and saved and restored by :mod:`s2ecosg.train.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import torch

from s2ecosg.config import TrainConfig
from s2ecosg.model.network import UNet
from s2ecosg.train.distributed import World


class HorovodOptimizer(Protocol):
    """What Horovod's ``DistributedOptimizer`` adds to a torch optimizer: reducing gradients when asked."""

    def synchronize(self) -> None:
        """Reduce the gradients over the ranks now."""

    def skip_synchronize(self) -> AbstractContextManager[None]:
        """A block in which ``step`` does not reduce them again."""


@dataclasses.dataclass
class Parts:
    """What a training step needs."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    world: World
    device: torch.device
    weights: torch.Tensor | None
    settings: TrainConfig
    autocast_dtype: torch.dtype | None


def autocast_dtype(settings: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype: bf16 (auto) / fp16 on CUDA, None (fp32) on CPU or when asked."""
    if device.type != "cuda" or settings.precision == "fp32":
        return None
    return torch.float16 if settings.precision == "fp16" else torch.bfloat16


def lr_factors(settings: TrainConfig) -> list[Callable[[int], float]]:
    """Per-epoch learning-rate factors for the [encoder, decoder] groups: frozen encoder first, then × factor."""

    def shape(epoch: int) -> float:
        if settings.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / settings.epochs))
        return 1.0

    def encoder(epoch: int) -> float:
        return 0.0 if epoch < settings.freeze_encoder_epochs else settings.encoder_lr_factor * shape(epoch)

    return [encoder, shape]


def build_parts(
    model: UNet, settings: TrainConfig, world: World, device: torch.device, weights: torch.Tensor | None
) -> Parts:
    """Model on its device and wrapped for the backend, AdamW over [encoder, decoder] groups, schedule, scaler."""
    model = model.to(device)
    if device.type == "cuda" and settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    encoder = list(model.encoder.parameters())
    encoder_ids = {id(parameter) for parameter in encoder}
    rest = [parameter for parameter in model.parameters() if id(parameter) not in encoder_ids]
    groups = [{"params": encoder, "name": "encoder"}, {"params": rest, "name": "decoder"}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    optimizer = world.wrap_optimizer(optimizer, model)
    world.synchronise(model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factors(settings))
    dtype = autocast_dtype(settings, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Parts(world.wrap(model, device), optimizer, schedule, scaler, world, device, weights, settings, dtype)
