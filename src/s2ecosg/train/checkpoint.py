"""Resumable training state: ``train/checkpoints/last.pt`` (and ``best.pt``), and the bundle made from it.

A checkpoint holds everything a resubmitted job needs to continue as if it had never stopped: model,
optimizer, learning-rate schedule, gradient scaler, epoch and step within it, best score, history, and the
Python/NumPy/torch (and CUDA) random states. Patch order and augmentation are drawn from (seed, epoch, index),
so a run resumed mid-epoch sees exactly the batches it would have seen. Only rank 0 writes, atomically.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

import s2ecosg
from s2ecosg.config import ModelConfig
from s2ecosg.io import atomic_path
from s2ecosg.legend import Legend
from s2ecosg.model.bundle import save_bundle, state_mismatch
from s2ecosg.model.card import BundleCard
from s2ecosg.shards.index import ShardStats

LOG = logging.getLogger(__name__)


def random_states() -> dict[str, Any]:
    """The random states of Python, NumPy, torch and CUDA (when present)."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the random states saved by :func:`random_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, state: dict[str, Any], main: bool) -> None:
    """Write a checkpoint atomically on rank 0 (other ranks hold the same weights and write nothing)."""
    if not main:
        return
    with atomic_path(path) as temporary:
        torch.save(state | {"random": random_states(), "written_by_rank": 0}, temporary)


def training_state(parts: Any, progress: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint contents from the training parts (model, optimizer, schedule, scaler) and progress counters."""
    model = getattr(parts.model, "module", parts.model)  # unwrap DDP
    return {
        "model": model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "scaler": parts.scaler.state_dict(),
        **progress,
    }


def resume(path: Path, parts: Any, shards_digest: str | None = None) -> dict[str, Any]:
    """Load ``path`` into the training parts if it exists; return the progress counters to continue from.

    A checkpoint written while training on other shards (another ``shards_digest``), or by another network
    (``model.encoder``, bands or classes changed under the same ``run.name``), is not resumed: the run starts afresh
    (and overwrites it), saying so in its log.
    """
    fresh = {"epoch": 0, "step": 0, "best": -1.0, "history": [], "partial": {}, "shards_digest": shards_digest}
    if not path.exists():
        return fresh
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("shards_digest") != shards_digest:
        LOG.warning("%s was written over other shards: training starts afresh on the current ones", path)
        return fresh
    network = getattr(parts.model, "module", parts.model)
    mismatch = state_mismatch(network, state.get("model", {}))
    if mismatch:  # another encoder, band list or legend than this run's model.encoder, imagery.bands, labels
        LOG.warning("%s was written by another network (%s): training starts afresh", path, mismatch)
        return fresh
    network.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["schedule"])
    parts.scaler.load_state_dict(state["scaler"])
    restore_random_states(state["random"])
    LOG.info("resumed from %s at epoch %d, step %d", path, state["epoch"] + 1, state["step"])
    return {key: state[key] for key in fresh}


def write_bundle(
    checkpoint: Path, bundle: str, model_settings: ModelConfig, legend: Legend, stats: ShardStats, extra: dict[str, Any]
) -> None:
    """Write the bundle (:mod:`s2ecosg.model.bundle`: weights and card) from a checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    card = BundleCard(
        arch=model_settings.arch,
        encoder=model_settings.encoder,
        bands=stats.bands,
        mean=stats.mean,
        std=stats.std,
        n_classes=legend.n_classes,
        legend=legend.to_records(),
        legend_name=legend.source,
        trained_classes=sorted(int(key) for key in stats.class_pixels["train"]),
        patch=stats.patch,
        best_epoch=state["epoch"],
        validation_mean_iou=state["best"],
        s2ecosg_version=s2ecosg.__version__,
        torch_version=torch.__version__,
        **extra,
    )
    save_bundle(bundle, state["model"], card)
    LOG.info("bundle written to %s", bundle)
