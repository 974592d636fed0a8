"""Predict: class ids and confidence for one grid tile, by overlapping sliding windows.

Inputs: the model bundle (``model/``) and ``stage/{tile}.tif``.
Outputs: ``predict/{tile}.tif`` (uint8 class ids, 0 = no data) and ``predict/{tile}.conf.tif``
(uint8, round(255 × max softmax probability)); ``predict/mosaic.vrt`` over all tiles.

Softmax probabilities of overlapping windows are blended with a smooth (raised-cosine) weight so
window edges, where the network sees least context, count least. Memory is bounded by one tile.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ecosg.data import normalise
from s2ecosg.errors import InputError
from s2ecosg.grid import window_starts
from s2ecosg.model import UNet, pick_device

LOG = logging.getLogger(__name__)


def load_bundle(folder: str | Path, device: torch.device) -> tuple[UNet, dict[str, Any]]:
    """Model (eval mode, on ``device``) and card of a bundle folder."""
    from s2ecosg.io import read_json

    card = read_json(Path(folder) / "bundle.json")
    model = UNet(card["encoder"], len(card["bands"]), card["n_classes"])
    try:
        state = torch.load(Path(folder) / "weights.pt", map_location="cpu", weights_only=True)
        # Bundles written before the encoder's unused classifier was dropped still carry it.
        model.load_state_dict({key: value for key, value in state.items() if not key.startswith("encoder.fc.")})
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(Path(folder) / "weights.pt", f"cannot load weights ({str(error).splitlines()[0]})") from error
    return model.to(device).eval(), card


def window_weight(size: int) -> np.ndarray:
    """(size, size) raised-cosine weight, never exactly zero so every pixel gets some weight."""
    ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return (np.outer(ramp, ramp) + 1e-3).astype(np.float32)


def check_bands(card: dict[str, Any], bands: list[str], image_path: str) -> None:
    """Refuse imagery whose bands (or order) differ from the bundle's."""
    if list(bands) != list(card["bands"]):
        raise InputError(
            image_path, f"bands {','.join(bands)} do not match the model bundle's {','.join(card['bands'])}"
        )


@torch.no_grad()
def predict_array(
    model: UNet, card: dict[str, Any], image: np.ndarray, settings: Any, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Blend window predictions over a (bands, H, W) uint16 image.

    Returns:
        (H, W) uint8 class ids (0 where the image has no data) and (H, W) uint8 confidence.
    """
    from tqdm import tqdm

    _, height, width = image.shape
    size = min(settings.window, height, width) // 32 * 32
    stride = max(1, min(settings.window - settings.overlap, size))
    valid = (image > 0).all(axis=0)
    positions = [
        (row, column)
        for row in window_starts(height, size, stride)
        for column in window_starts(width, size, stride)
        if valid[row : row + size, column : column + size].any()
    ]
    probabilities = np.zeros((card["n_classes"], height, width), dtype=np.float32)
    weights = np.zeros((height, width), dtype=np.float32)
    weight = window_weight(size)
    mean, std = np.asarray(card["mean"], np.float32), np.asarray(card["std"], np.float32)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    # Classes without a single training pixel carry no evidence: they are never predicted.
    untrained = torch.ones(card["n_classes"], dtype=torch.bool)
    untrained[[class_id - 1 for class_id in card.get("trained_classes", range(1, card["n_classes"] + 1))]] = False
    for start in tqdm(range(0, len(positions), settings.batch_size), desc="predict", unit="batch", mininterval=10):
        batch = positions[start : start + settings.batch_size]
        tensor = torch.from_numpy(
            np.stack([normalise(image[:, r : r + size, c : c + size], mean, std) for r, c in batch])
        )
        with autocast:
            logits = model(tensor.to(device)).float()
        logits = logits[:, 1:].masked_fill(untrained.to(device)[None, :, None, None], float("-inf"))
        softmax = torch.softmax(logits, dim=1).cpu().numpy()
        for (row, column), window_probabilities in zip(batch, softmax, strict=True):
            probabilities[:, row : row + size, column : column + size] += window_probabilities * weight
            weights[row : row + size, column : column + size] += weight
    probabilities /= np.maximum(weights, 1e-12)
    classes = (probabilities.argmax(axis=0) + 1).astype(np.uint8)
    confidence = np.rint(probabilities.max(axis=0) * 255).astype(np.uint8)
    covered = valid & (weights > 0)
    return np.where(covered, classes, 0).astype(np.uint8), np.where(covered, confidence, 0).astype(np.uint8)


def run_predict(bundle: str, image_path: str, settings: Any, classes_path: str, confidence_path: str) -> None:
    """Predict one staged tile and write its class and confidence rasters."""
    from s2ecosg.io import open_raster, write_raster

    device = pick_device(settings.device)
    model, card = load_bundle(bundle, device)
    with open_raster(image_path) as source:
        check_bands(card, list(source.descriptions), image_path)
        image, crs, transform = source.read(), source.crs, source.transform
    classes, confidence = predict_array(model, card, image, settings, device)
    LOG.info("%s: %.1f %% predicted", image_path, 100 * (classes > 0).mean())
    write_raster(classes_path, classes, crs=crs, transform=transform, nodata=0, descriptions=["class_id"])
    write_raster(confidence_path, confidence, crs=crs, transform=transform, nodata=0, descriptions=["confidence"])


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
