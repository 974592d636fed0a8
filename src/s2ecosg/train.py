"""Train: fit the U-Net on the shards and write the model bundle.

Inputs: ``shards/`` (patch arrays, ``stats.json``), the legend, optional encoder weights.
Outputs: ``train/checkpoints/{last,best}.pt`` (resumable: model, optimizer, scheduler, epoch, RNG) and
the bundle ``model/weights.pt`` + ``model/bundle.json`` (everything prediction needs: arch, encoder,
bands, band mean/std, legend, patch size, config hash, versions).

Plain torch loop; cross-entropy that ignores id 0; AdamW; CUDA with mixed precision when present.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from s2ecosg.data import PatchDataset
from s2ecosg.metrics import confusion, scores
from s2ecosg.model import UNet, load_encoder_weights, pick_device

LOG = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a preempted job never leaves a truncated ``last.pt``)."""
    from s2ecosg.io import atomic_path

    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def train_epoch(model: UNet, loader: DataLoader, optimizer: Any, settings: Any, device: torch.device) -> float:
    """One pass (capped at ``settings.steps_per_epoch``); returns the mean loss."""
    from tqdm import tqdm

    model.train()
    loss_function = torch.nn.CrossEntropyLoss(ignore_index=0)
    steps = min(len(loader), settings.steps_per_epoch or len(loader))
    losses = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step, (image, label) in enumerate(tqdm(loader, total=steps, desc="train", mininterval=10)):
        if step >= steps:
            break
        image, label = image.to(device, non_blocking=True), label.to(device, non_blocking=True)
        with autocast:
            loss = loss_function(model(image).float(), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def validate(model: UNet, loader: DataLoader, n_classes: int, device: torch.device) -> dict[str, Any]:
    """Confusion-matrix scores of the model on the validation patches."""
    model.eval()
    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    for image, label in loader:
        logits = model(image.to(device))
        prediction = logits[:, 1:].argmax(dim=1) + 1
        matrix += confusion(label.numpy(), prediction.cpu().numpy(), n_classes)
    return scores(matrix)


def build_model(encoder: str, bands: list[str], n_classes: int, weights: str | None) -> UNet:
    """The U-Net, with encoder weights from a local file when given."""
    model = UNet(encoder, len(bands), n_classes)
    if weights:
        load_encoder_weights(model, weights, bands)
    return model


def make_loaders(shards: str, stats: dict[str, Any], settings: Any) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and sequential validation loader."""
    generator = torch.Generator().manual_seed(settings.seed)
    train_set = PatchDataset(shards, "train", stats["mean"], stats["std"], augment=True)
    val_set = PatchDataset(shards, "val", stats["mean"], stats["std"])
    common = {
        "batch_size": settings.batch_size,
        "num_workers": settings.workers,
        "pin_memory": torch.cuda.is_available(),
    }
    return (
        DataLoader(
            train_set, shuffle=True, generator=generator, drop_last=len(train_set) > settings.batch_size, **common
        ),
        DataLoader(val_set, shuffle=False, **common),
    )


def run_train(
    shards: str, legend_name: str, model_settings: Any, settings: Any, checkpoints: str, bundle: str, config_digest: str
) -> None:
    """Train (resuming from ``checkpoints/last.pt`` when present) and write the bundle."""
    from s2ecosg.io import read_json
    from s2ecosg.legend import load_legend

    seed_everything(settings.seed)
    stats = read_json(Path(shards) / "stats.json")
    legend = load_legend(legend_name)
    device = pick_device(settings.device)
    model = build_model(model_settings.encoder, stats["bands"], legend.n_classes, model_settings.weights).to(device)
    train_loader, val_loader = make_loaders(shards, stats, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = make_schedule(optimizer, settings)
    state = resume(Path(checkpoints) / "last.pt", model, optimizer, schedule)
    for epoch in range(state["epoch"], settings.epochs):
        loss = train_epoch(model, train_loader, optimizer, settings, device)
        schedule.step()
        metrics = validate(model, val_loader, legend.n_classes, device) if len(val_loader.dataset) else {}
        score = metrics.get("mean_iou") or 0.0
        LOG.info(
            "epoch %d/%d: loss %.4f, validation mIoU %.4f, agreement %s",
            epoch + 1,
            settings.epochs,
            loss,
            score,
            metrics.get("agreement"),
        )
        state = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "best": max(state["best"], score),
            "rng": torch.get_rng_state(),
        }
        if score >= state["best"]:
            save_checkpoint(Path(checkpoints) / "best.pt", state)
        save_checkpoint(Path(checkpoints) / "last.pt", state)
    write_bundle(Path(checkpoints) / "best.pt", bundle, model_settings, legend, stats, config_digest)


def make_schedule(optimizer: Any, settings: Any) -> Any:
    """Per-epoch learning-rate schedule: constant or cosine decay to zero."""
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def resume(path: Path, model: UNet, optimizer: Any, schedule: Any) -> dict[str, Any]:
    """Restore state from a checkpoint if one exists; return the epoch to start from and best score."""
    if not path.exists():
        return {"epoch": 0, "best": -1.0}
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    LOG.info("resumed from %s at epoch %d", path, state["epoch"])
    return {"epoch": state["epoch"], "best": state["best"]}


def write_bundle(
    checkpoint: Path, bundle: str, model_settings: Any, legend: Any, stats: dict[str, Any], config_digest: str
) -> None:
    """Write ``weights.pt`` and ``bundle.json`` from a checkpoint."""
    import s2ecosg
    from s2ecosg.io import atomic_path, write_json

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    with atomic_path(Path(bundle) / "weights.pt") as temporary:
        torch.save(state["model"], temporary)
    write_json(
        Path(bundle) / "bundle.json",
        {
            "arch": model_settings.arch,
            "encoder": model_settings.encoder,
            "bands": stats["bands"],
            "mean": stats["mean"],
            "std": stats["std"],
            "n_classes": legend.n_classes,
            "legend": legend.to_records(),
            "trained_classes": sorted(int(key) for key in stats["class_pixels"]["train"]),
            "patch": stats["patch"],
            "epochs_trained": state["epoch"],
            "validation_mean_iou": state["best"],
            "config_hash": config_digest,
            "s2ecosg_version": s2ecosg.__version__,
            "torch_version": torch.__version__,
        },
    )
    LOG.info("bundle written to %s", bundle)
