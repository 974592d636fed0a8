"""Predict: class ids and confidence over a region of the target grid, by overlapping sliding windows.

Inputs: the model bundle (``model/``) and staged tiles ``stage/{tile}.tif``.
Outputs: per tile ``predict/{tile}.tif`` (uint8 class ids, 0 = no data), ``predict/{tile}.conf.tif`` (uint8,
round(255 × max softmax probability, calibrated by the bundle's temperature)) and, with ``predict.top2``, ``predict/{tile}.top2.tif``.

Windows sit at global grid positions (multiples of the stride), so a pixel is predicted from the same windows
whatever region it is predicted in. A region (one tile, or the tiles of a job block, :mod:`s2ecosg.predict.block`)
is read with a halo of one window and its windows are computed once each: tiles inside a block share the windows
across their edges, and only the block's edge pays for the halo. Softmax probabilities of overlapping windows are
blended with a smooth (raised-cosine) weight, so window edges, where the network sees least context, count least.
The blend rolls down the region one window row at a time; memory is bounded by the region's width, not its height.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from s2ecosg.blocks import lookahead
from s2ecosg.config import PredictConfig
from s2ecosg.errors import InputError
from s2ecosg.gdal_env import gdal_threads
from s2ecosg.model.bundle import check_legend, load_bundle
from s2ecosg.model.card import BundleCard
from s2ecosg.model.encoders import ENCODERS
from s2ecosg.model.inputs import normalise
from s2ecosg.model.network import UNet

LOG = logging.getLogger(__name__)
CHUNK_ROWS = 1024  # image rows read at a time (plus one window), across the region's whole width
# (first kept row, (2 × ranks, rows, columns) uint8 of those rows: class, 255 × p, runner-up, 255 × p, …)
Emit = Callable[[int, np.ndarray], None]


@dataclass(frozen=True)
class Region:
    """Pixels to predict on the target grid, and the halo read around them for context.

    Attributes:
        origin: Global (row, column) pixel index of the first kept pixel (row = −y / resolution, column = x /
            resolution, so windows align on the grid whatever the region).
        shape: Kept (rows, columns).
        halo: Pixels read on each side; "padded" indices below count from the halo's corner.
    """

    origin: tuple[int, int]
    shape: tuple[int, int]
    halo: int

    @property
    def padded(self) -> tuple[int, int]:
        """(rows, columns) of the region with its halo."""
        return self.shape[0] + 2 * self.halo, self.shape[1] + 2 * self.halo


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
    kept part ``keep`` (half-open). Because starts are tied to the grid and not to the tile, a pixel sees the same
    windows whichever region it is predicted in, provided the image carries a halo of at least one window around
    the kept part; a smaller halo adds windows at the edges so every kept pixel is still covered.
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


def window_plan(region: Region, settings: PredictConfig, multiple: int = 32) -> tuple[list[int], list[int], int]:
    """Row starts, column starts (padded indices) of the grid-aligned windows over a region, and the window edge.

    A region smaller than a window gets the largest window that fits, rounded down to ``multiple`` (the encoder's
    output stride).
    """
    height, width = region.padded
    size = min(settings.window, height, width) // multiple * multiple
    stride = max(1, min(settings.window - settings.overlap, size))
    halo = region.halo
    rows = aligned_starts(height, size, stride, region.origin[0] - halo, (halo, halo + region.shape[0]))
    columns = aligned_starts(width, size, stride, region.origin[1] - halo, (halo, halo + region.shape[1]))
    return rows, columns, size


def row_chunks(rows: list[int], chunk_rows: int) -> list[list[int]]:
    """Window row starts grouped so the image rows of a group span less than ``chunk_rows`` plus one window."""
    chunks: list[list[int]] = []
    for row in rows:
        if chunks and row - chunks[-1][0] < chunk_rows:
            chunks[-1].append(row)
        else:
            chunks.append([row])
    return chunks


@functools.lru_cache(maxsize=1)
def compiled(model: UNet) -> Any:
    """``torch.compile`` of a bundle's network, once per process (the tiles of a job share the compiled code)."""
    return torch.compile(model, dynamic=False)


def ready_model(
    bundle: str, settings: PredictConfig, device: torch.device, legend_name: str | None
) -> tuple[Any, BundleCard]:
    """The bundle's network, checked against the run's legend, compiled when ``predict.compile`` asks for it."""
    model, card = load_bundle(bundle, device)
    if legend_name:
        check_legend(card, legend_name, bundle)
    if settings.compile:
        model = compiled(model)
    return model, card


class Predictor:
    """A network ready to predict regions: one per job, shared by the tiles of a block.

    Three stages overlap: a thread reads the next chunk of image rows while another cuts and normalises the next
    batch of windows, while the model runs on the current batch and its probabilities are blended on the device.
    ``windows`` counts the windows computed so far.
    """

    def __init__(self, model: Any, card: BundleCard, settings: PredictConfig, device: torch.device) -> None:
        self.model, self.card, self.settings, self.device = model, card, settings, device
        self.mean, self.std = np.asarray(card.mean, np.float32), np.asarray(card.std, np.float32)
        self.stride = ENCODERS[card.encoder].stride
        if settings.window % self.stride:
            raise InputError(
                "predict.window", f"{settings.window} is not a multiple of {self.stride}, the stride of {card.encoder}"
            )
        untrained = torch.ones(card.n_classes, dtype=torch.bool)
        trained = card.trained_classes or range(1, card.n_classes + 1)
        untrained[[class_id - 1 for class_id in trained]] = False
        self.untrained = untrained.to(device)[None, :, None, None]
        self.windows = 0
        self.ranks = ranks_kept(settings)

    @torch.no_grad()
    def predict(
        self,
        region: Region,
        read: Callable[[int, int], np.ndarray],
        emit: Emit,
        wanted: Callable[[int, int, int], bool] | None = None,
    ) -> None:
        """Predict ``region`` and hand every finished row range to ``emit``, top to bottom.

        Args:
            region: What to predict.
            read: (first, last) padded rows → (bands, last − first, padded columns) uint16, 0 = nodata.
            emit: Called with each range of finished kept rows (every kept row exactly once, in order).
            wanted: (row, column, size) of a window (padded) → whether to compute it (default: all); a window
                that is not wanted leaves its pixels unpredicted, so skip only windows over pixels not needed.
        """
        rows, columns, size = window_plan(region, self.settings, self.stride)
        if wanted is not None:
            rows = [row for row in rows if any(wanted(row, column, size) for column in columns)]
        windows = self.windows_of(row_chunks(rows, CHUNK_ROWS), columns, size, read, wanted)
        blend = RollingBlend(self.card.n_classes, region, size, self.device, emit, self.ranks)
        for places, probabilities, valid in self.batches(windows, size, len(rows) * len(columns)):
            for (row, column), window, mask in zip(places, probabilities, valid, strict=True):
                blend.add(row, column, window, mask)
            self.windows += len(places)
        blend.finish()

    def windows_of(
        self,
        chunks: list[list[int]],
        columns: list[int],
        size: int,
        read: Callable[[int, int], np.ndarray],
        wanted: Callable[[int, int, int], bool] | None,
    ) -> Iterator[tuple[int, int, np.ndarray, int]]:
        """(row, column, chunk image, chunk's first row) of each window holding data, chunks read one ahead."""
        with gdal_threads(1) as reader:  # the reading thread opens and closes the files it reads
            images = lookahead((reader.submit(read, chunk[0], chunk[-1] + size) for chunk in chunks), 1)
            for chunk, future in zip(chunks, images, strict=True):
                image, top = future.result(), chunk[0]
                valid = np.asarray((image > 0).all(axis=0))
                for row, column in itertools.product(chunk, columns):
                    if wanted is not None and not wanted(row, column, size):
                        continue
                    if valid[row - top : row - top + size, column : column + size].any():
                        yield row, column, image, top

    def batches(
        self, windows: Iterator[tuple[int, int, np.ndarray, int]], size: int, planned: int
    ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor]]:
        """(places, probabilities, valid masks) per batch; the next batch is cut while the model runs on this one."""
        count = self.settings.batch_size
        # A compiled network is specialised to one batch shape: the last batch is padded to it, not recompiled.
        padded = count if self.settings.compile else 0

        def load() -> tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor] | None:
            group = list(itertools.islice(windows, count))
            return self.window_batch(group, size, padded) if group else None

        with (
            ThreadPoolExecutor(max_workers=1) as loader,
            tqdm(total=planned, desc="predict", unit="window", mininterval=10) as progress,
        ):
            pending = loader.submit(load)
            while (loaded := pending.result()) is not None:
                pending = loader.submit(load)
                places, tensor, valid = loaded
                yield places, self.forward(tensor)[: len(places)], valid
                progress.update(len(places))

    def window_batch(
        self, group: list[tuple[int, int, np.ndarray, int]], size: int, padded: int
    ) -> tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor]:
        """Places, (windows, bands, size, size) normalised float32 windows (pinned for a GPU) and their valid masks.

        With ``padded``, zero windows are appended up to that many (their predictions are not used).
        """
        cuts = [image[:, row - top : row - top + size, column : column + size] for row, column, image, top in group]
        windows = [normalise(cut, self.mean, self.std) for cut in cuts]
        windows += [np.zeros_like(windows[0])] * max(0, padded - len(windows))
        tensor = torch.from_numpy(np.stack(windows))
        valid = torch.from_numpy(np.stack([(cut > 0).all(axis=0) for cut in cuts]))
        if self.device.type == "cuda":
            tensor, valid = tensor.pin_memory(), valid.pin_memory()
        return [(row, column) for row, column, *_ in group], tensor, valid

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        """(windows, n_classes, size, size) float32 softmax on the device (bf16 and channels-last on CUDA).

        Classes without a single training pixel carry no evidence: they are never predicted. The logits are divided
        by the bundle's temperature.
        """
        tensor = tensor.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.model(tensor).float()
        logits = logits[:, 1:].masked_fill(self.untrained, float("-inf"))
        # The bundle's calibration (train/calibrate.py): each window's argmax stays, its probabilities become honest.
        return torch.softmax(logits / self.card.temperature, dim=1)


class RollingBlend:
    """Weighted sum of window probabilities over one window's height of kept rows, rolled down the region.

    Windows arrive in row-major order of their (padded) positions, so once a window row starts at ``row``, no
    later window reaches the rows above it: those rows are finished, turned into top-2 classes and handed to
    ``emit``. Each pixel sums its windows in the same order whatever the region. Memory: classes × window ×
    kept columns, float32, on the model's device.
    """

    def __init__(
        self, n_classes: int, region: Region, size: int, device: torch.device, emit: Emit, ranks: int = 2
    ) -> None:
        self.ranks = ranks
        self.top, self.bottom = region.halo, region.halo + region.shape[0]
        self.left, self.right = region.halo, region.halo + region.shape[1]
        self.base, self.size, self.emit = self.top, size, emit
        self.probabilities = torch.zeros((n_classes, size, region.shape[1]), dtype=torch.float32, device=device)
        self.weights = torch.zeros((size, region.shape[1]), dtype=torch.float32, device=device)
        self.valid = torch.zeros((size, region.shape[1]), dtype=torch.bool, device=device)
        self.weight = torch.from_numpy(window_weight(size)).to(device)

    def add(self, row: int, column: int, probabilities: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one window whose upper-left pixel is (row, column), padded; only its kept part counts."""
        self.advance(row)
        top, left = max(row, self.top), max(column, self.left)
        bottom, right = min(row + self.size, self.bottom), min(column + self.size, self.right)
        if top >= bottom or left >= right:
            return
        source = (slice(top - row, bottom - row), slice(left - column, right - column))
        target = (slice(top - self.base, bottom - self.base), slice(left - self.left, right - self.left))
        self.probabilities[(slice(None), *target)] += probabilities[(slice(None), *source)] * self.weight[source]
        self.weights[target] += self.weight[source]
        self.valid[target] |= valid[source].to(self.valid.device, non_blocking=True)

    def advance(self, row: int) -> None:
        """Finish the kept rows above padded row ``row``."""
        while self.base < min(row, self.bottom):
            self.flush(min(row, self.bottom, self.base + self.size) - self.base)

    def finish(self) -> None:
        """Finish every kept row left."""
        self.advance(self.bottom)

    def flush(self, count: int) -> None:
        """Hand the first ``count`` rows to ``emit`` as (2 × ranks, count, columns) uint8, then roll the buffers up.

        Bands: the most likely class and 255 × its probability, then the runner-up's, …; ranks beyond the number of
        classes are 0.
        """
        probabilities = self.probabilities[:, :count] / torch.clamp(self.weights[:count], min=1e-12)
        ranked = min(self.ranks, probabilities.shape[0])
        best, order = torch.topk(probabilities, ranked, dim=0)
        top = torch.zeros((2 * self.ranks, *best.shape[1:]), dtype=torch.float32, device=best.device)
        top[0 : 2 * ranked : 2] = (order + 1).to(torch.float32)
        top[1 : 2 * ranked : 2] = torch.round(best * 255)
        known = self.valid[:count] & (self.weights[:count] > 0)
        self.emit(self.base - self.top, torch.where(known, top, 0).to(torch.uint8).cpu().numpy())
        for buffer in (self.probabilities, self.weights, self.valid):
            kept = buffer[..., count:, :].clone()
            buffer[..., : kept.shape[-2], :] = kept
            buffer[..., kept.shape[-2] :, :] = 0
        self.base += count


def ranks_kept(settings: PredictConfig) -> int:
    """Classes kept per pixel: the top 2 (classes, confidence, top2.tif), or ``predict.probabilities`` if more."""
    return max(2, settings.probabilities)


def predict_array(
    model: UNet,
    card: BundleCard,
    image: np.ndarray,
    settings: PredictConfig,
    device: torch.device,
    origin: tuple[int, int] = (0, 0),
    halo: int = 0,
) -> np.ndarray:
    """Predict a (bands, H, W) uint16 image held in memory.

    Args:
        model: Network in eval mode on ``device``.
        card: Bundle card (n_classes, mean, std, trained_classes).
        image: (bands, H, W) reflectance × 10000, 0 = nodata; ``halo`` pixels on each side are context only.
        settings: ``PredictConfig`` (window, overlap, batch_size, compile).
        device: Where the model runs.
        origin: Global (row, column) pixel index of ``image[:, 0, 0]`` on the target grid (aligns windows).
        halo: Pixels on each side that are read but not predicted.

    Returns:
        (2 × ranks, H − 2·halo, W − 2·halo) uint8: class id, confidence (round(255 × probability)), the runner-up's
        class id and confidence, … (:func:`ranks_kept`); all 0 where the image has no data.
    """
    region = Region((origin[0] + halo, origin[1] + halo), (image.shape[1] - 2 * halo, image.shape[2] - 2 * halo), halo)
    result = np.zeros((2 * ranks_kept(settings), *region.shape), dtype=np.uint8)

    def emit(row: int, top: np.ndarray) -> None:
        result[:, row : row + top.shape[1]] = top

    Predictor(model, card, settings, device).predict(region, lambda first, last: image[:, first:last], emit)
    return result
