"""Resumable training state: ``train/checkpoints/last.pt`` (and ``best.pt``), and the bundle made from it.

A checkpoint holds everything a resubmitted job needs to continue as if it had never stopped: model,
optimizer, learning-rate schedule, gradient scaler, epoch and step within it, best score, history, and the
Python/NumPy/torch (and CUDA) random states. Patch order and augmentation are drawn from (seed, epoch, index),
so a run resumed mid-epoch sees exactly the batches it would have seen. Only rank 0 writes, atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

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


# One line of the training history (``history.json``): epoch, loss, steps, samples, processes, learning rates and
# the validation scores (None before any validation patch).
HistoryRecord = dict[str, float | int | list[float] | None]


@dataclasses.dataclass
class Progress:
    """Where training stands: the counters a checkpoint stores beside the weights and states.

    Attributes:
        epoch: Complete epochs.
        step: Steps done in the epoch under way.
        best: Best validation mean IoU so far (-1 before any).
        history: One record per complete epoch.
        loss: Sum of the training losses of the epoch under way, over ``steps`` steps.
        steps: Steps summed in ``loss``.
        shards_digest: Digest of the shards trained on (a checkpoint of other shards is not resumed).
        folder: Where ``last.pt``, ``best.pt`` and ``history.json`` go (not stored).
    """

    epoch: int = 0
    step: int = 0
    best: float = -1.0
    history: list[HistoryRecord] = dataclasses.field(default_factory=list)
    loss: float = 0.0
    steps: int = 0
    shards_digest: str | None = None
    folder: Path = Path(".")

    def stored(self) -> dict[str, object]:
        """The counters as a checkpoint holds them (the ``partial`` sums of the epoch under way as a dict)."""
        partial = {"loss": self.loss, "steps": self.steps} if self.steps else {}
        record = {"epoch": self.epoch, "step": self.step, "best": self.best, "history": list(self.history)}
        return record | {"partial": partial, "shards_digest": self.shards_digest}

    @classmethod
    def from_stored(cls, state: Mapping[str, object], folder: Path) -> Progress:
        """The counters of a checkpoint written by :meth:`stored`."""
        partial = state.get("partial") or {}
        assert isinstance(partial, dict)
        epoch, step, best, history, digest = (
            state[key] for key in ("epoch", "step", "best", "history", "shards_digest")
        )
        assert isinstance(epoch, int) and isinstance(step, int) and isinstance(best, float | int)
        assert isinstance(history, list) and (digest is None or isinstance(digest, str))
        loss, steps = float(partial.get("loss", 0.0)), int(partial.get("steps", 0))
        return cls(epoch, step, float(best), history, loss, steps, digest, folder)


class Trainable(Protocol):
    """What a checkpoint saves and restores of a training run (:class:`s2ecosg.train.parts.Parts` is one)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def training_state(parts: Trainable, progress: Progress) -> dict[str, Any]:
    """Checkpoint contents (torch state dicts) from the training parts and the progress counters."""
    model = getattr(parts.model, "module", parts.model)  # unwrap DDP
    return {
        "model": model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "scaler": parts.scaler.state_dict(),
        **progress.stored(),
    }


def resume(path: Path, parts: Trainable, shards_digest: str | None = None) -> Progress:
    """Load ``path`` into the training parts if it exists; return the progress to continue from.

    A checkpoint written while training on other shards (another ``shards_digest``), or by another network
    (``model.encoder``, bands or classes changed under the same ``run.name``), is not resumed: the run starts afresh
    (and overwrites it), saying so in its log.
    """
    fresh = Progress(shards_digest=shards_digest, folder=path.parent)
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
    return Progress.from_stored(state, path.parent)


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
