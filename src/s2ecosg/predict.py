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
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ecosg.data import normalise
from s2ecosg.errors import InputError
from s2ecosg.model import UNet, pick_device

LOG = logging.getLogger(__name__)


def load_bundle(folder: str | Path, device: torch.device) -> tuple[UNet, dict[str, Any]]:
    """Model (eval mode, on ``device``) and card of a bundle folder, loaded once per process and bundle version.

    A job predicting several tiles builds the network once; a rewritten bundle (new modification time) is
    loaded again. The model is shared: callers only run it.
    """
    folder = Path(folder).resolve()
    try:
        version = (folder / "weights.pt").stat().st_mtime_ns, (folder / "bundle.json").stat().st_mtime_ns
    except OSError:
        version = (0, 0)  # missing files: the loader names the file
    return cached_bundle(str(folder), str(device), version)


@functools.lru_cache(maxsize=1)
def cached_bundle(folder: str, device_name: str, version: tuple[int, int]) -> tuple[UNet, dict[str, Any]]:
    """:func:`load_bundle` without the cache (``version`` only keys it)."""
    from s2ecosg.io import read_json

    device = torch.device(device_name)
    card = read_json(Path(folder) / "bundle.json")
    check_card(card, Path(folder) / "bundle.json")
    # Built without memory or random initialisation (1.4 s for a ResNet-50 U-Net on a CPU), then given the weights.
    with torch.device("meta"):
        model = UNet(card["encoder"], len(card["bands"]), card["n_classes"])
    weights = Path(folder) / "weights.pt"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(weights, f"cannot load weights ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise InputError(weights, "not a state dict (tensor name → tensor)")
    # Bundles written before the encoder's unused classifier was dropped still carry it.
    kept = {key: value for key, value in state.items() if not key.startswith("encoder.fc.")}
    mismatch = state_mismatch(model, kept)
    if mismatch:
        raise InputError(
            weights,
            f"does not fit the network of bundle.json (encoder {card['encoder']}, {len(card['bands'])} bands, "
            f"{card['n_classes']} classes): {mismatch}",
        )
    model.load_state_dict(kept, assign=True)
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, card


CARD_KEYS = ("encoder", "bands", "n_classes", "mean", "std")


def check_card(card: Any, path: Path) -> None:
    """Refuse a ``bundle.json`` that lacks what predict needs or names an unknown encoder."""
    from s2ecosg.model import ENCODER_CHANNELS

    if not isinstance(card, dict):
        raise InputError(path, "not a bundle card (a JSON object)")
    missing = [key for key in CARD_KEYS if key not in card]
    if missing:
        raise InputError(path, f"bundle card lacks {', '.join(missing)}")
    if card["encoder"] not in ENCODER_CHANNELS:
        raise InputError(path, f"encoder {card['encoder']!r} unknown; known: {', '.join(ENCODER_CHANNELS)}")
    if len(card["mean"]) != len(card["bands"]) or len(card["std"]) != len(card["bands"]):
        raise InputError(path, f"mean and std need one value per band ({len(card['bands'])} bands)")


def state_mismatch(model: torch.nn.Module, state: dict[str, Any]) -> str | None:
    """How a state dict differs from a network's tensors (names and shapes), in one line; None when it fits."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    given = {name: tuple(getattr(tensor, "shape", ())) for name, tensor in state.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    reshaped = sorted(name for name in set(expected) & set(given) if expected[name] != given[name])
    if not (missing or unexpected or reshaped):
        return None
    example = (reshaped or missing or unexpected)[0]
    detail = f"{example} is {given.get(example, 'absent')}, the network wants {expected.get(example, 'none')}"
    return (
        f"{len(missing)} tensor(s) missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape "
        f"(e.g. {detail}); was the bundle made for another encoder or band list?"
    )


def window_weight(size: int) -> np.ndarray:
    """(size, size) raised-cosine weight, never exactly zero so every pixel gets some weight."""
    ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return (np.outer(ramp, ramp) + 1e-3).astype(np.float32)


def check_legend(card: dict[str, Any], legend_name: str, bundle: str) -> None:
    """Refuse a bundle whose class ids mean something else than in the run's legend (``labels.legend``)."""
    from s2ecosg.legend import load_legend

    own = [(row["id"], row["code"]) for row in card.get("legend", [])]
    wanted = [(row["id"], row["code"]) for row in load_legend(legend_name).to_records()]
    if own and own != wanted:
        name = card.get("legend_name", "its own legend")
        raise InputError(
            Path(bundle) / "bundle.json", f"bundle legend {name} differs from labels.legend {legend_name} (ids/codes)"
        )


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
    from affine import Affine

    from s2ecosg.io import write_raster

    device = pick_device(settings.device)
    model, card = load_bundle(bundle, device)
    if legend_name:
        check_legend(card, legend_name, bundle)
    if getattr(settings, "compile", False):
        model = compiled(model)
    halo = settings.window if getattr(settings, "halo", None) is None else settings.halo
    image, transform, crs = read_padded(image_path, list(neighbours), halo, card["bands"])
    keep = (slice(halo, image.shape[1] - halo), slice(halo, image.shape[2] - halo))
    origin = (round(-transform.f / transform.a), round(transform.c / transform.a))
    top = predict_array(model, card, image, settings, device, origin, keep)
    classes, confidence = top[0], top[1]
    transform = transform @ Affine.translation(halo, halo)
    LOG.info(
        "%s: %.1f %% predicted (halo %d px from %d neighbours)",
        image_path,
        100 * (classes > 0).mean(),
        halo,
        len(neighbours),
    )
    write_raster(classes_path, classes, crs=crs, transform=transform, nodata=0, descriptions=["class_id"])
    write_raster(confidence_path, confidence, crs=crs, transform=transform, nodata=0, descriptions=["confidence"])
    if top2_path:
        names = ["class_id", "probability_255", "second_class_id", "second_probability_255"]
        write_raster(top2_path, top, crs=crs, transform=transform, nodata=0, descriptions=names)


def write_mosaic(tiles: list[str], output: str) -> None:
    """A GDAL VRT mosaic of single-band tiles sharing CRS and resolution (paths relative to the VRT)."""
    from xml.sax.saxutils import escape

    from s2ecosg.io import atomic_path, open_raster

    infos = []
    for path in tiles:
        with open_raster(path) as source:
            infos.append((path, source.bounds, source.res, source.crs, source.shape))
    left, top = min(info[1].left for info in infos), max(info[1].top for info in infos)
    right, bottom = max(info[1].right for info in infos), min(info[1].bottom for info in infos)
    resolution = infos[0][2][0]
    width, height = round((right - left) / resolution), round((top - bottom) / resolution)
    sources = []
    for path, bounds, _, _, (rows, columns) in infos:
        relative = escape(str(Path(path).resolve().relative_to(Path(output).resolve().parent)))
        x_offset, y_offset = round((bounds.left - left) / resolution), round((top - bounds.top) / resolution)
        sources.append(
            f'    <SimpleSource><SourceFilename relativeToVRT="1">{relative}</SourceFilename><SourceBand>1</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{columns}" ySize="{rows}"/>'
            f'<DstRect xOff="{x_offset}" yOff="{y_offset}" xSize="{columns}" ySize="{rows}"/></SimpleSource>'
        )
    text = "\n".join(
        [
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
            f"  <SRS>{escape(infos[0][3].to_wkt())}</SRS>",
            f"  <GeoTransform>{left}, {resolution}, 0, {top}, 0, {-resolution}</GeoTransform>",
            '  <VRTRasterBand dataType="Byte" band="1"><NoDataValue>0</NoDataValue>',
            *sources,
            "  </VRTRasterBand>",
            "</VRTDataset>",
            "",
        ]
    )
    with atomic_path(output) as temporary:
        temporary.write_text(text)
