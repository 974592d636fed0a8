"""Predict: class ids and confidence for one grid tile, by overlapping sliding windows.

Inputs: the model bundle (``model/``) and ``stage/{tile}.tif``.
Outputs: ``predict/{tile}.tif`` (uint8 class ids, 0 = no data) and ``predict/{tile}.conf.tif``
(uint8, round(255 × max softmax probability)); ``predict/mosaic.vrt`` over all tiles.

Softmax probabilities of overlapping windows are blended with a smooth (raised-cosine) weight so
window edges, where the network sees least context, count least. Memory is bounded by one tile.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ecosg.blocks import SIGNATURE_TAG, lookahead
from s2ecosg.bundle import check_legend, load_bundle
from s2ecosg.data import normalise
from s2ecosg.errors import InputError
from s2ecosg.model import UNet, pick_device

LOG = logging.getLogger(__name__)


def window_weight(size: int) -> np.ndarray:
    """(size, size) raised-cosine weight, never exactly zero so every pixel gets some weight."""
    ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return (np.outer(ramp, ramp) + 1e-3).astype(np.float32)


def check_bands(expected: list[str], bands: list[str], image_path: str) -> None:
    """Refuse imagery whose bands (or order) differ from the bundle's."""
    if list(bands) != list(expected):
        raise InputError(image_path, f"bands {','.join(bands)} do not match the model bundle's {','.join(expected)}")


def aligned_starts(length: int, size: int, stride: int, origin: int, keep: tuple[int, int]) -> list[int]:
    """Window starts along one axis, at global pixel indices that are multiples of ``stride``.

    The starts fit the image (``length`` pixels, the first at global index ``origin``) and the windows touch the
    kept part ``keep`` (half-open). Because starts are tied to the grid and not to the tile, a pixel sees the same windows whichever tile it
    is predicted from, provided the image carries a halo of at least one window around the kept part; a
    smaller halo adds windows at the edges so every kept pixel is still covered.
    """
    if size >= length:
        return [0]
    first = (-origin) % stride
    starts = [start for start in range(first, length - size + 1, stride) if start < keep[1] and start + size > keep[0]]
    if not starts or starts[0] > keep[0]:
        starts.insert(0, max(0, min(keep[0], length - size)))
    if starts[-1] + size < keep[1]:
        starts.append(min(length - size, max(0, keep[1] - size)))
    return sorted(set(starts))


@torch.no_grad()
def predict_array(
    model: UNet,
    card: dict[str, Any],
    image: np.ndarray,
    settings: Any,
    device: torch.device,
    origin: tuple[int, int] = (0, 0),
    keep: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Blend window predictions over a (bands, H, W) uint16 image.

    Args:
        model: Network in eval mode on ``device``.
        card: Bundle card (n_classes, mean, std, trained_classes).
        image: (bands, H, W) reflectance × 10000, 0 = nodata; may include a halo around the kept part.
        settings: ``PredictConfig`` (window, overlap, batch_size).
        device: Where the model runs.
        origin: Global (row, column) pixel index of ``image[:, 0, 0]`` on the target grid (aligns windows).
        keep: Rows and columns to predict (default: all); context outside it is only read.

    Returns:
        (4, h, w) uint8 over ``keep``: class id, confidence (round(255 × probability)), and the runner-up's
        class id and confidence; all 0 where the image has no data.
    """
    keep = keep or (slice(0, image.shape[1]), slice(0, image.shape[2]))
    valid = (image > 0).all(axis=0)
    positions, size = window_positions(valid, settings, origin, keep)
    blend = Blend(card["n_classes"], keep, size)
    # A compiled network is specialised to one batch shape: the last batch is padded to it, not recompiled.
    padded = settings.batch_size if getattr(settings, "compile", False) else 0
    batches = [
        positions[start : start + settings.batch_size] for start in range(0, len(positions), settings.batch_size)
    ]
    # A thread cuts and normalises the next batch while the model runs on this one (numpy releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as loader:
        pending = loader.submit(window_batch, card, image, batches[0], size, device, padded) if batches else None
        for index in tqdm_steps(len(batches)):
            tensor = pending.result()
            if index + 1 < len(batches):
                pending = loader.submit(window_batch, card, image, batches[index + 1], size, device, padded)
            probabilities = forward(model, card, tensor, device)[: len(batches[index])]
            for (row, column), window in zip(batches[index], probabilities, strict=True):
                blend.add(row, column, window)
    top, weights = blend.result()
    return np.where(valid[keep] & (weights > 0), top, 0).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def compiled(model: UNet) -> Any:
    """``torch.compile`` of a bundle's network, once per process (the tiles of a job share the compiled code)."""
    return torch.compile(model, dynamic=False)


def window_positions(
    valid: np.ndarray, settings: Any, origin: tuple[int, int], keep: tuple[slice, slice]
) -> tuple[list[tuple[int, int]], int]:
    """Upper-left corners of the grid-aligned windows over ``keep`` that hold data, and the window edge (px).

    Args:
        valid: (H, W) bool, True where the image has data.
        settings: ``PredictConfig`` (window, overlap).
        origin: Global (row, column) pixel index of ``valid[0, 0]``.
        keep: Rows and columns to predict.
    """
    height, width = valid.shape
    size = min(settings.window, height, width) // 32 * 32
    stride = max(1, min(settings.window - settings.overlap, size))
    positions = [
        (row, column)
        for row in aligned_starts(height, size, stride, origin[0], (keep[0].start, keep[0].stop))
        for column in aligned_starts(width, size, stride, origin[1], (keep[1].start, keep[1].stop))
        if valid[row : row + size, column : column + size].any()
    ]
    return positions, size


def tqdm_steps(count: int) -> Any:
    """Batch indices with a progress bar."""
    from tqdm import tqdm

    return tqdm(range(count), desc="predict", unit="batch", mininterval=10)


def window_batch(
    card: dict[str, Any],
    image: np.ndarray,
    batch: list[tuple[int, int]],
    size: int,
    device: torch.device,
    padded: int = 0,
) -> torch.Tensor:
    """(windows, bands, size, size) float32 normalised windows, in pinned memory when going to a GPU.

    With ``padded``, zero windows are appended up to that many (their predictions are not used).
    """
    mean, std = np.asarray(card["mean"], np.float32), np.asarray(card["std"], np.float32)
    windows = [normalise(image[:, r : r + size, c : c + size], mean, std) for r, c in batch]
    windows += [np.zeros_like(windows[0])] * max(0, padded - len(windows))
    tensor = torch.from_numpy(np.stack(windows))
    return tensor.pin_memory() if device.type == "cuda" else tensor


def forward(model: UNet, card: dict[str, Any], tensor: torch.Tensor, device: torch.device) -> np.ndarray:
    """(windows, n_classes, size, size) float32 softmax of the model (bf16 and channels-last on CUDA).

    Classes without a single training pixel carry no evidence: they are never predicted.
    """
    tensor = tensor.to(device, non_blocking=True)
    if device.type == "cuda":
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(tensor).float()
    untrained = torch.ones(card["n_classes"], dtype=torch.bool)
    untrained[[class_id - 1 for class_id in card.get("trained_classes", range(1, card["n_classes"] + 1))]] = False
    logits = logits[:, 1:].masked_fill(untrained.to(device)[None, :, None, None], float("-inf"))
    return torch.softmax(logits, dim=1).cpu().numpy()


class Blend:
    """Weighted sum of window probabilities over the kept part of an image (memory: classes × kept pixels)."""

    def __init__(self, n_classes: int, keep: tuple[slice, slice], size: int) -> None:
        self.keep = keep
        rows, columns = keep[0].stop - keep[0].start, keep[1].stop - keep[1].start
        self.probabilities = np.zeros((n_classes, rows, columns), dtype=np.float32)
        self.weights = np.zeros((rows, columns), dtype=np.float32)
        self.weight = window_weight(size)
        self.size = size

    def add(self, row: int, column: int, probabilities: np.ndarray) -> None:
        """Add one window whose upper-left pixel is (row, column) of the image; only its kept part counts."""
        top, left = max(row, self.keep[0].start), max(column, self.keep[1].start)
        bottom = min(row + self.size, self.keep[0].stop)
        right = min(column + self.size, self.keep[1].stop)
        if top >= bottom or left >= right:
            return
        source = (slice(top - row, bottom - row), slice(left - column, right - column))
        target = (
            slice(top - self.keep[0].start, bottom - self.keep[0].start),
            slice(left - self.keep[1].start, right - self.keep[1].start),
        )
        self.probabilities[(slice(None), *target)] += probabilities[(slice(None), *source)] * self.weight[source]
        self.weights[target] += self.weight[source]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(4, h, w) uint8 top two (class id 1..K, round(255 × probability)) pairs and the weights, kept part."""
        self.probabilities /= np.maximum(self.weights, 1e-12)
        if self.probabilities.shape[0] == 1:
            order = np.zeros((2, *self.probabilities.shape[1:]), dtype=np.int64)
        else:  # the two largest probabilities, largest first (kth=-2 puts the runner-up in place)
            order = np.argpartition(self.probabilities, -2, axis=0)[:-3:-1]
        best = np.take_along_axis(self.probabilities, order, axis=0)
        if self.probabilities.shape[0] == 1:
            best[1] = 0.0
        top = np.stack([order[0] + 1, np.rint(best[0] * 255), order[1] + 1, np.rint(best[1] * 255)])
        return top.astype(np.uint8), self.weights


def read_padded(image_path: str, neighbours: list[str], halo: int, bands: list[str]) -> tuple[np.ndarray, Any, Any]:
    """A tile with ``halo`` pixels around it filled from neighbouring tiles (0 where none has data).

    Returns:
        (bands, n + 2·halo, m + 2·halo) uint16 image, its affine transform and CRS.
    """
    from affine import Affine

    from s2ecosg.io import open_raster

    with open_raster(image_path, NUM_THREADS="ALL_CPUS") as source:
        check_bands(bands, list(source.descriptions), image_path)
        transform, crs = source.transform @ Affine.translation(-halo, -halo), source.crs
        image = np.zeros((source.count, source.height + 2 * halo, source.width + 2 * halo), dtype=np.uint16)
        paste(image, transform, source)
    for path in neighbours:
        with open_raster(path, NUM_THREADS="ALL_CPUS") as source:
            check_bands(bands, list(source.descriptions), path)
            paste(image, transform, source)
    return image, transform, crs


def paste(image: np.ndarray, transform: Any, source: Any) -> None:
    """Copy the part of an open raster on the same grid that falls inside ``image`` (with ``transform``)."""
    resolution = transform.a
    row = round((transform.f - source.transform.f) / resolution)
    column = round((source.transform.c - transform.c) / resolution)
    top, left = max(0, row), max(0, column)
    bottom, right = min(image.shape[1], row + source.height), min(image.shape[2], column + source.width)
    if top >= bottom or left >= right:
        return
    window = ((top - row, bottom - row), (left - column, right - column))
    image[:, top:bottom, left:right] = source.read(window=window)


def run_predict(
    bundle: str,
    image_path: str,
    settings: Any,
    classes_path: str,
    confidence_path: str,
    neighbours: list[str] = (),
    legend_name: str | None = None,
    top2_path: str | None = None,
) -> None:
    """Predict one staged tile (with a halo from its neighbours) and write its class and confidence rasters.

    A bundle whose bands, band order or legend (when ``legend_name`` is given) differ from the run's is refused.
    With ``top2_path``, the quantised top-2 probabilities go there too (class, p, runner-up class, p; uint8).
    """
    device = pick_device(settings.device)
    model, card = ready_model(bundle, settings, device, legend_name)
    halo = settings.window if getattr(settings, "halo", None) is None else settings.halo
    padded = read_padded(image_path, list(neighbours), halo, card["bands"])
    outputs = {"classes": classes_path, "confidence": confidence_path, "top2": top2_path}
    predict_tile(model, card, settings, device, padded, halo, outputs, image_path)


def ready_model(bundle: str, settings: Any, device: torch.device, legend_name: str | None) -> tuple[Any, dict]:
    """The bundle's network, checked against the run's legend, compiled when ``predict.compile`` asks for it."""
    model, card = load_bundle(bundle, device)
    if legend_name:
        check_legend(card, legend_name, bundle)
    if getattr(settings, "compile", False):
        model = compiled(model)
    return model, card


def predict_tile(
    model: Any,
    card: dict[str, Any],
    settings: Any,
    device: torch.device,
    padded: tuple[np.ndarray, Any, Any],
    halo: int,
    outputs: dict[str, str | None],
    name: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Predict a tile read with its halo (:func:`read_padded`) and write ``outputs`` (classes, confidence, top2)."""
    from affine import Affine

    from s2ecosg.io import write_raster

    image, transform, crs = padded
    keep = (slice(halo, image.shape[1] - halo), slice(halo, image.shape[2] - halo))
    origin = (round(-transform.f / transform.a), round(transform.c / transform.a))
    top = predict_array(model, card, image, settings, device, origin, keep)
    classes, confidence = top[0], top[1]
    transform = transform @ Affine.translation(halo, halo)
    LOG.info("%s: %.1f %% predicted (halo %d px)", name, 100 * (classes > 0).mean(), halo)
    written = dict(crs=crs, transform=transform, nodata=0, tags=tags)
    if outputs.get("top2"):
        names = ["class_id", "probability_255", "second_class_id", "second_probability_255"]
        write_raster(outputs["top2"], top, descriptions=names, **written)
    write_raster(outputs["confidence"], confidence, descriptions=["confidence"], **written)
    write_raster(outputs["classes"], classes, descriptions=["class_id"], **written)


def run_predict_block(
    bundle: str,
    settings: Any,
    stage_manifests: list[str],
    folder: str,
    manifest: str,
    legend_name: str | None = None,
) -> None:
    """Predict the tiles of one job block: one model build, tiles streamed, each read with its halo.

    ``stage_manifests`` are the block's own stage manifest (first) and those of the blocks around it (for the
    halo). The next tile is read while the model runs on the current one. Tiles whose files carry the signature
    of the same bundle, settings and staged tiles (their own and their neighbours') are kept.
    """
    from s2ecosg.blocks import block_name, read_manifests, report, signature, up_to_date, write_manifest
    from s2ecosg.grid import TargetGrid
    from s2ecosg.io import read_json
    from s2ecosg.scenes import file_stamp

    grid = TargetGrid(settings.grid.crs, settings.grid.resolution, settings.grid.tile_size)
    own, around = read_manifests(stage_manifests[:1]), read_manifests(stage_manifests)
    bundle_record = [read_json(Path(bundle) / "bundle.json"), file_stamp(Path(bundle) / "weights.pt")]
    settings_record = settings.predict.model_dump(mode="json")
    halo = settings.predict.window if settings.predict.halo is None else settings.predict.halo
    entries, pending = {}, []
    for tile, staged in sorted(own.items()):
        neighbours = [name for name in grid.neighbours(tile) if name in around]
        wanted = signature(
            bundle_record,
            settings_record,
            legend_name,
            staged["signature"],
            [around[n]["signature"] for n in neighbours],
        )
        outputs = {"classes": str(Path(folder) / f"{tile}.tif"), "confidence": str(Path(folder) / f"{tile}.conf.tif")}
        if settings.predict.top2:
            outputs["top2"] = str(Path(folder) / f"{tile}.top2.tif")
        entries[tile] = {"signature": wanted, **outputs}
        if not up_to_date(list(outputs.values()), wanted):
            pending.append((tile, staged["image"], [around[n]["image"] for n in neighbours], outputs, wanted))
    made = [tile for tile, *_ in pending]
    if pending:
        predict_pending(bundle, settings.predict, pending, halo, legend_name)
    report("predict", block_name(manifest), made, sorted(set(entries) - set(made)))
    write_manifest(manifest, block_name(manifest), entries)


def predict_pending(bundle: str, settings: Any, pending: list[tuple], halo: int, legend_name: str | None) -> None:
    """Predict the tiles a block job must make, one model build, each next tile read while one is predicted.

    ``pending`` holds (tile, staged image, neighbours' staged images, outputs, signature) per tile.
    """
    device = pick_device(settings.device)
    model, card = ready_model(bundle, settings, device, legend_name)
    with ThreadPoolExecutor(max_workers=1) as reader:
        reads = (reader.submit(read_padded, image, near, halo, card["bands"]) for _, image, near, _, _ in pending)
        for (_, image, _, outputs, wanted), padded in zip(pending, lookahead(reads, 1), strict=True):
            tags = {SIGNATURE_TAG: wanted}
            predict_tile(model, card, settings, device, padded.result(), halo, outputs, image, tags)
