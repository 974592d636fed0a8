"""Train: fit the U-Net on the shards, on one process or data-parallel over many, and write the model bundle.

Inputs: ``shards/`` (patch arrays, ``stats.json``), the legend, optional pretrained weights (:mod:`s2ecosg.model.transfer`).
Outputs: ``train/checkpoints/{last,best}.pt`` + ``history.json`` (resumable, :mod:`s2ecosg.train.checkpoint`) and the
bundle ``model/weights.pt`` + ``model/bundle.json``.

One entry point whatever the launcher (:mod:`s2ecosg.train.launch`): each process joins its backend's group
(:mod:`s2ecosg.train.distributed`), trains on its slice of every global batch (:class:`s2ecosg.train.data.EpochBatches`),
and rank 0 alone writes checkpoints, history, bundle and log file. SIGUSR1/SIGTERM (SLURM's warning before a
time limit or preemption) make every rank stop at the next step: rank 0 writes ``last.pt`` and all exit with
:data:`EXIT_STOPPED`, and the resubmitted job resumes exactly there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import cast

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from s2ecosg.blocks import signature
from s2ecosg.config import Config, TrainConfig
from s2ecosg.config_files import config_hash
from s2ecosg.errors import InputError
from s2ecosg.io import write_json
from s2ecosg.legend import load_legend
from s2ecosg.metrics import Scores, confusion, scores
from s2ecosg.model.card import read_card
from s2ecosg.model.network import UNet, pick_device
from s2ecosg.model.transfer import load_pretrained
from s2ecosg.shards.index import ShardIndex, ShardStats, read_index, read_stats
from s2ecosg.train import checkpoint
from s2ecosg.train.calibrate import calibration_fit
from s2ecosg.train.data import EpochBatches, PatchDataset
from s2ecosg.train.distributed import World, join
from s2ecosg.train.losses import class_weights, labelled_weight, step_loss
from s2ecosg.train.parts import HorovodOptimizer, Parts, build_parts

LOG = logging.getLogger(__name__)
PatchLoader = DataLoader[tuple[torch.Tensor, torch.Tensor]]  # (images, labels) batches of PatchDataset
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on request with last.pt written; rerun the job to resume
STOP_AFTER_STEP = "S2ECOSG_STOP_AFTER_STEP"  # test hook: stop like a preempted job after this global step


class StopRequest:
    """Set by SIGUSR1/SIGTERM (or the test hook) and honoured by every rank at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        after = os.environ.get(STOP_AFTER_STEP)
        self.after_step = int(after) if after else None
        for number in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(number, self.handle)

    def handle(self, number: int, _frame: FrameType | None) -> None:
        """Signal handler: remember the request (the step in flight finishes first)."""
        LOG.warning("signal %d received: stopping after this step, then last.pt for a resume", number)
        self.requested = True

    def wanted(self, global_step: int) -> bool:
        """True when this rank wants to stop after ``global_step`` optimizer steps."""
        return self.requested or (self.after_step is not None and global_step >= self.after_step)


def make_loader(
    dataset: PatchDataset, batches: EpochBatches, settings: TrainConfig, device: torch.device
) -> PatchLoader:
    """Loader with workers, pinned memory and prefetch (the batch sampler runs in this process)."""
    workers, pinned = settings.workers, device.type == "cuda"
    if not workers:
        return DataLoader(dataset, batch_sampler=batches, num_workers=0, pin_memory=pinned)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=pinned,
        prefetch_factor=settings.prefetch,
        persistent_workers=True,
    )


def run_model(parts: Parts, image: torch.Tensor) -> torch.Tensor:
    """Logits of a batch on the training device: channels-last and autocast on CUDA as configured."""
    image = image.to(parts.device, non_blocking=True)
    if parts.device.type == "cuda" and parts.settings.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    dtype = parts.autocast_dtype
    with torch.autocast(parts.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        return parts.model(image)


def train_step(parts: Parts, image: torch.Tensor, label: torch.Tensor, stop: bool) -> tuple[float, bool]:
    """One optimizer step on this rank's batch; returns (loss, whether any rank asked to stop)."""
    label = label.to(parts.device, non_blocking=True)
    local = torch.stack([labelled_weight(label, parts.weights), torch.tensor(float(stop), device=parts.device)])
    reduced = parts.world.sum(local)
    logits = run_model(parts, image)
    loss = step_loss(logits, label, parts.weights, reduced[0], parts.world.size, parts.settings.loss)
    parts.optimizer.zero_grad()  # set_to_none by default (Horovod's optimizer takes no argument)
    parts.scaler.scale(loss).backward()
    if parts.world.backend == "horovod" and parts.scaler.is_enabled():
        horovod = cast(HorovodOptimizer, parts.optimizer)
        horovod.synchronize()  # Horovod + fp16: reduce before unscaling, then step without reducing again
        parts.scaler.unscale_(parts.optimizer)
        with horovod.skip_synchronize():
            parts.scaler.step(parts.optimizer)
    else:
        parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return float(loss.detach()), bool(reduced[1] > 0)


def epoch_batches(loader: PatchLoader) -> EpochBatches:
    """The batch sampler of a loader of :func:`make_loader`."""
    sampler = loader.batch_sampler
    if not isinstance(sampler, EpochBatches):
        raise TypeError("a training loader samples with EpochBatches")
    return sampler


def set_encoder_frozen(model: torch.nn.Module, frozen: bool) -> None:
    """Keep the encoder's batch-norm statistics fixed while its weights are frozen (lr 0)."""
    network = getattr(model, "module", model)  # unwrapped from DDP
    encoder = network.encoder
    if not isinstance(encoder, torch.nn.Module):
        raise TypeError("the network has no encoder module")
    for module in encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train(not frozen)


def train_epoch(
    parts: Parts, loader: PatchLoader, epoch: int, progress: checkpoint.Progress, stop: StopRequest
) -> bool:
    """Train one epoch from ``progress.step``; False when stopped for a resume (last.pt then written)."""
    batches, settings, world = epoch_batches(loader), parts.settings, parts.world
    steps = min(batches.steps(), settings.steps_per_epoch or batches.steps())
    last_save = time.monotonic()
    parts.model.train()
    set_encoder_frozen(parts.model, epoch < settings.freeze_encoder_epochs)
    bar = tqdm(total=steps, initial=progress.step, desc=f"epoch {epoch + 1}", disable=not world.main, mininterval=10)
    for image, label in loader:
        if progress.step >= steps:
            break
        global_step = epoch * steps + progress.step + 1
        loss, stopping = train_step(parts, image, label, stop.wanted(global_step))
        progress.step, progress.loss, progress.steps = progress.step + 1, progress.loss + loss, progress.steps + 1
        bar.update()
        if stopping or time.monotonic() - last_save > 60 * settings.checkpoint_minutes:
            state = checkpoint.training_state(parts, dataclasses.replace(progress, epoch=epoch))
            checkpoint.save(progress.folder / "last.pt", state, world.main)
            last_save = time.monotonic()
        if stopping:
            LOG.warning("stopped in epoch %d after step %d: last.pt written, rerun to resume", epoch + 1, progress.step)
            return False
    bar.close()
    return True


@torch.no_grad()
def validate(parts: Parts, loader: PatchLoader, n_classes: int) -> Scores:
    """Scores of the model on the validation patches, confusion matrices summed over ranks."""
    parts.model.eval()
    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    for image, label in loader:
        logits = run_model(parts, image)
        prediction = logits[:, 1:].argmax(dim=1) + 1
        matrix += confusion(label.numpy(), prediction.cpu().numpy(), n_classes)
    total = parts.world.sum(torch.from_numpy(matrix).to(parts.device)).cpu().numpy()
    result = scores(total)
    result["pixels"] = int(total.sum())
    return result


def epoch_record(
    epoch: int, progress: checkpoint.Progress, metrics: Scores | None, samples: int, parts: Parts
) -> checkpoint.HistoryRecord:
    """One line of the training history."""
    return {
        "epoch": epoch + 1,
        "loss": progress.loss / max(1, progress.steps),
        "steps": progress.steps,
        "samples": samples,
        "processes": parts.world.size,
        "learning_rates": [group["lr"] for group in parts.optimizer.param_groups],
        "validation_mean_iou": metrics["mean_iou"] if metrics else None,
        "validation_agreement": metrics["agreement"] if metrics else None,
        "validation_pixels": metrics["pixels"] if metrics else 0,
    }


def finish_epoch(
    parts: Parts, epoch: int, progress: checkpoint.Progress, loaders: tuple[PatchLoader, PatchLoader], n_classes: int
) -> None:
    """Schedule step, validation, history, best.pt and last.pt after a complete epoch."""
    train_loader, val_loader = loaders
    steps = progress.steps
    samples = int(
        parts.world.sum(
            torch.tensor([counted_samples(epoch_batches(train_loader), epoch, steps)], device=parts.device)
        )[0]
    )
    metrics = validate(parts, val_loader, n_classes) if epoch_batches(val_loader).size else None
    record = epoch_record(epoch, progress, metrics, samples, parts)
    parts.schedule.step()
    LOG.info(
        "epoch %d/%d: loss %.4f, %d patches, validation mIoU %s, agreement %s",
        epoch + 1,
        parts.settings.epochs,
        record["loss"],
        samples,
        record["validation_mean_iou"],
        record["validation_agreement"],
    )
    progress.history.append(record)
    score = (metrics["mean_iou"] if metrics else None) or 0.0
    progress.step, progress.loss, progress.steps = 0, 0.0, 0
    folder = progress.folder
    improved = score >= progress.best
    progress.best = max(progress.best, score)
    progress.epoch = epoch + 1
    state = checkpoint.training_state(parts, progress)
    if improved:
        checkpoint.save(folder / "best.pt", state, parts.world.main)
    checkpoint.save(folder / "last.pt", state, parts.world.main)
    if parts.world.main:
        write_json(folder / "history.json", progress.history)


def counted_samples(batches: EpochBatches, epoch: int, steps: int) -> int:
    """Patches this rank counted in the first ``steps`` steps of ``epoch`` (padding repeats excluded)."""
    batches.set_epoch(epoch)
    counted = sum(item[2] for _, batch in zip(range(steps), iter(batches), strict=False) for item in batch)
    return int(counted)


def bundle_up_to_date(bundle: str, training_digest: str) -> bool:
    """Whether ``bundle`` was trained on the same shards with the same settings (its card says so)."""
    try:
        card = read_card(bundle)
    except InputError:  # none yet, or one this version does not read: train
        return False
    return card.training_digest == training_digest and (Path(bundle) / "weights.pt").is_file()


def training_digest(index: ShardIndex, config: Config) -> str:
    """What a bundle was trained from: the shard index's digest and the model, train, labels and shards settings."""
    sections = {name: getattr(config, name).model_dump(mode="json") for name in ("model", "train", "labels", "shards")}
    return signature(index.digest, sections)


def training_world(settings: TrainConfig) -> tuple[World, torch.device]:
    """Join the backend's process group; the device of this rank (its GPU on a multi-GPU node)."""
    device = pick_device(settings.device, "train.device")
    world = join(settings.backend, device.type)
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return world, device


def run_train(shards: str, config: Config, checkpoints: str, bundle: str) -> None:
    """Train (resuming from ``checkpoints/last.pt`` when present) and write the bundle (rank 0).

    A bundle trained on the same shards (the index digest) with the same model, train, labels and shards settings
    is kept as it is: Snakemake reruns training whenever the shard index is rewritten, which a restaged tile without
    labels also does. A ``last.pt`` written over other shards is not resumed: training starts again on the new ones.
    The bundle records the run hash (:func:`~s2ecosg.config_files.config_hash` of the whole config).
    """
    settings, index = config.train, read_index(shards)
    legend, digest = load_legend(config.labels.legend), training_digest(index, config)
    if bundle_up_to_date(bundle, digest):
        LOG.info("bundle %s already trained on these shards with these settings: nothing to train", bundle)
        return
    world, device = training_world(settings)
    torch.manual_seed(settings.seed)
    stats = read_stats(shards)
    model = UNet(config.model.encoder, len(stats.bands), legend.n_classes)
    if config.model.weights:
        load_pretrained(model, config.model.weights, stats.bands)
    weights = class_weights(stats.class_pixels["train"], legend.n_classes, settings.class_weights)
    parts = build_parts(model, settings, world, device, weights)
    expected: dict[str, str | int] = {"legend": legend.digest, "patch": config.shards.patch}
    loaders = make_loaders(shards, stats, settings, world, device, expected)
    progress = checkpoint.resume(Path(checkpoints) / "last.pt", parts, index.digest)
    LOG.info(
        "training on %d process(es) (%s), %s, global batch %d",
        world.size,
        world.backend,
        device,
        settings.batch_size * world.size,
    )
    stop = StopRequest()
    for epoch in range(progress.epoch, settings.epochs):
        epoch_batches(loaders[0]).set_epoch(epoch, progress.step)
        if not train_epoch(parts, loaders[0], epoch, progress, stop):
            world.barrier()
            raise SystemExit(EXIT_STOPPED)
        finish_epoch(parts, epoch, progress, loaders, legend.n_classes)
    if world.main:
        write_trained_bundle(Path(checkpoints) / "best.pt", bundle, shards, config, (index, digest), world, device)
    world.barrier()
    world.close()


def write_trained_bundle(
    best: Path,
    bundle: str,
    shards: str,
    config: Config,
    trained_on: tuple[ShardIndex, str],
    world: World,
    device: torch.device,
) -> None:
    """Calibrate the best checkpoint's network and write the bundle with where it came from (rank 0)."""
    (index, digest), stats, legend = trained_on, read_stats(shards), load_legend(config.labels.legend)
    extra: dict[str, object] = {"epochs_trained": config.train.epochs, "run_hash": config_hash(config)}
    extra |= {"shards_digest": index.digest, "training_digest": digest, "processes": world.size}
    extra |= {"backend": world.backend}
    expected: dict[str, str | int] = {"legend": legend.digest, "patch": config.shards.patch}
    fit = calibration_fit(best, shards, stats, config, legend.n_classes, device, expected)
    if fit is not None:
        extra |= {"temperature": fit.temperature, "calibration": fit}
    checkpoint.write_bundle(best, bundle, config.model, legend, stats, extra)


def make_loaders(
    shards: str,
    stats: ShardStats,
    settings: TrainConfig,
    world: World,
    device: torch.device,
    expected: dict[str, str | int] | None = None,
) -> tuple[PatchLoader, PatchLoader]:
    """Training loader (shuffled or class-balanced, augmented) and validation loader, each over this rank's slice.

    ``expected``: fields the shard index must carry (legend digest, patch), from the run's config.
    """
    normalisation = stats.mean, stats.std
    train_set = PatchDataset(shards, "train", *normalisation, augment=True, seed=settings.seed, expected=expected)
    val_set = PatchDataset(shards, "val", *normalisation, expected=expected)
    weights = train_set.shards.balanced_weights() if settings.sampling == "balanced" else None
    batches = EpochBatches(
        len(train_set), settings.batch_size, world.rank, world.size, settings.seed, shuffle=True, weights=weights
    )
    val_batches = EpochBatches(len(val_set), settings.batch_size, world.rank, world.size, settings.seed, shuffle=False)
    return make_loader(train_set, batches, settings, device), make_loader(val_set, val_batches, settings, device)
