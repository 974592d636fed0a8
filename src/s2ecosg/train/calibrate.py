"""Calibration: one temperature fitted on the validation patches, so that the probabilities mean what they say.

A network trained with cross-entropy is over-confident on pixels it has not seen: a 0.9 softmax is right less than
90 % of the time. Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 before the softmax;
T minimises the negative log-likelihood of the validation pixels (the spatial blocks training never saw). A
window's argmax does not change, so class maps stay as they are (but for the rare pixel where overlapping windows
disagree and their blend tips); confidences, top-2 and anything drawn from the probabilities do. Reported before
and after: the expected calibration error (:data:`BINS` equal-width bins of the top probability), the multi-class
Brier score and the NLL, with the reliability table of each bin.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from s2ecosg.config import Config
from s2ecosg.model.card import CalibrationFit, Reliability, ReliabilityBin
from s2ecosg.model.network import UNet
from s2ecosg.shards.index import ShardStats
from s2ecosg.train.data import EpochBatches, PatchDataset

LOG = logging.getLogger(__name__)
BINS = 15
MAX_PIXELS = 1_000_000  # validation pixels kept for the fit (≈ 180 MB of logits at 45 classes)
LIMITS = (0.05, 20.0)  # the temperatures searched
STEPS = 80  # golden-section steps on log T: the bracket shrinks to 1e-16 of its width


def reliability(probabilities: torch.Tensor, labels: torch.Tensor) -> Reliability:
    """ECE, Brier score, NLL and per-bin reliability of (pixels, classes) probabilities against class indices.

    ECE = Σ_bins |accuracy − mean confidence| × share of pixels, over :data:`BINS` bins of the top probability
    ([k/15, (k+1)/15), the last closed). Brier = mean over pixels of Σ_classes (p − one-hot)².
    """
    probabilities = probabilities.double()
    count = labels.numel()
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    bins = torch.clamp((confidence * BINS).long(), max=BINS - 1)
    pixels = torch.bincount(bins, minlength=BINS).double()
    confidence_sum = torch.bincount(bins, weights=confidence, minlength=BINS)
    correct_sum = torch.bincount(bins, weights=correct, minlength=BINS)
    truth = probabilities.gather(1, labels[:, None])[:, 0]
    brier = (probabilities.square().sum(dim=1) - 2 * truth + 1).mean()
    nll = -torch.log(truth.clamp(min=1e-12)).mean()
    table = [
        ReliabilityBin(pixels=int(n), confidence=float(c / n), accuracy=float(a / n))
        for n, c, a in zip(pixels, confidence_sum, correct_sum, strict=True)
        if n > 0
    ]
    return Reliability(
        ece=float((correct_sum - confidence_sum).abs().sum() / count),
        brier=float(brier),
        nll=float(nll),
        accuracy=float(correct.mean()),
        bins=table,
    )


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean NLL of the labels under softmax(logits / temperature)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in :data:`LIMITS` minimising the NLL (golden-section search on log T; the NLL is unimodal in it).

    Returns 1 when no T does better than 1 (nothing to correct), so a fit never makes the probabilities worse
    on the pixels it was fitted on.
    """
    low, high = math.log(LIMITS[0]), math.log(LIMITS[1])
    ratio = (math.sqrt(5) - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    left_value = negative_log_likelihood(logits, labels, math.exp(left))
    right_value = negative_log_likelihood(logits, labels, math.exp(right))
    for _ in range(STEPS):
        if left_value <= right_value:
            high, right, right_value = right, left, left_value
            left = high - ratio * (high - low)
            left_value = negative_log_likelihood(logits, labels, math.exp(left))
        else:
            low, left, left_value = left, right, right_value
            right = low + ratio * (high - low)
            right_value = negative_log_likelihood(logits, labels, math.exp(right))
    best = math.exp((low + high) / 2)
    unchanged = negative_log_likelihood(logits, labels, 1.0)
    return best if negative_log_likelihood(logits, labels, best) < unchanged else 1.0


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> CalibrationFit:
    """Fit the temperature on (pixels, classes) logits and 0-based labels, and score before and after."""
    temperature = fit_temperature(logits, labels)
    if not LIMITS[0] * 1.01 < temperature < LIMITS[1] * 0.99:
        LOG.warning(
            "calibration temperature %.3g is at the searched limit %s: the network's probabilities carry almost no "
            "information on the validation blocks (too little training, or a single trained class?)",
            temperature,
            LIMITS,
        )
    before = reliability(torch.softmax(logits.double(), dim=1), labels)
    after = reliability(torch.softmax(logits.double() / temperature, dim=1), labels)
    LOG.info(
        "calibration on %d validation pixels: temperature %.3f, ECE %.4f → %.4f, Brier %.4f → %.4f",
        labels.numel(),
        temperature,
        before.ece,
        after.ece,
        before.brier,
        after.brier,
    )
    return CalibrationFit(temperature=temperature, pixels=labels.numel(), before=before, after=after)


@torch.no_grad()
def validation_logits(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    untrained: torch.Tensor,
    device: torch.device,
    keep: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels, classes) float32 logits of labelled validation pixels and their 0-based labels, on the CPU.

    Each labelled pixel is kept with probability ``keep`` (a seeded draw: the same pixels on a rerun), so memory
    stays within :data:`MAX_PIXELS` × classes. Classes without training pixels get −∞, as predict gives them.
    """
    generator = torch.Generator().manual_seed(seed)
    kept_logits, kept_labels = [], []
    model.eval()
    for image, label in loader:
        logits = model(image.to(device)).float()[:, 1:].masked_fill(untrained[None, :, None, None], float("-inf"))
        logits = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]).cpu()
        label = label.reshape(-1)
        chosen = (label > 0) & (torch.rand(label.shape, generator=generator) < keep)
        kept_logits.append(logits[chosen])
        kept_labels.append(label[chosen].long() - 1)
    if not kept_labels:
        return torch.zeros((0, int(untrained.numel()))), torch.zeros(0, dtype=torch.long)
    return torch.cat(kept_logits), torch.cat(kept_labels)


def calibration_fit(
    checkpoint: Path,
    shards: str,
    stats: ShardStats,
    config: Config,
    n_classes: int,
    device: torch.device,
    expected: dict[str, str | int],
) -> CalibrationFit | None:
    """The temperature and its scores for the bundle card, fitted with the weights of ``checkpoint``.

    Validation pixels labelled with a class that had no training pixel are left out (the network gives it
    probability 0, which no temperature changes). Without validation pixels the card keeps T = 1 and no record.
    """
    dataset = PatchDataset(shards, "val", stats.mean, stats.std, expected=expected)
    labelled = sum(stats.class_pixels["val"].values())
    if len(dataset) == 0 or labelled == 0:
        LOG.warning("no validation pixels: the bundle is not calibrated (temperature 1)")
        return None
    batches = EpochBatches(len(dataset), config.train.batch_size, 0, 1, config.train.seed, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=batches)
    model = UNet(config.model.encoder, len(stats.bands), n_classes)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    trained = {int(key) for key in stats.class_pixels["train"]}
    untrained = torch.tensor([class_id not in trained for class_id in range(1, n_classes + 1)], device=device)
    keep = min(1.0, MAX_PIXELS / labelled)
    logits, labels = validation_logits(model.to(device), loader, untrained, device, keep, config.train.seed)
    usable = ~untrained.cpu()[labels]
    if not usable.any():
        return None
    return calibrate(logits[usable], labels[usable])
