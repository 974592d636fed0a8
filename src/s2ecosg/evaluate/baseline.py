"""A per-pixel gradient-boosting baseline (LightGBM, eo-learn style): same bands, same split as the CNN.

Inputs: ``shards/`` (the CNN's training patches and band statistics) and ``stage/{tile}.tif``.
Outputs: ``baseline/model.txt`` (LightGBM booster) + ``baseline/card.json``, and ``baseline/{tile}.tif`` (uint8
class ids, 0 = no data), which :mod:`s2ecosg.evaluate.run` scores beside the CNN so its gain is a measured number.

Each labelled pixel of the training patches is a sample whose features are its normalised band values (no
spatial context: that is what the CNN adds). Samples are drawn at random up to ``evaluate.baseline_pixels``;
prediction goes row block by row block, so memory stays bounded by a block.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers
from s2ecosg.config import EvaluateConfig
from s2ecosg.io import atomic_path, open_raster, read_json, write_json, write_raster
from s2ecosg.predict.windows import check_bands
from s2ecosg.shards.index import ShardStats, read_stats
from s2ecosg.shards.loader import ShardSet

LOG = logging.getLogger(__name__)
BLOCK_ROWS = 256


def training_pixels(shards: str, stats: ShardStats, limit: int, seed: int) -> tuple[NDArray[np.float32], Integers]:
    """(pixels, bands) float32 normalised features and (pixels,) class ids of labelled training pixels."""
    patches = ShardSet(shards, "train")
    generator = np.random.default_rng(seed)
    per_patch = max(1, limit // max(1, len(patches)))
    features, targets = [], []
    for index in range(len(patches)):
        image, label = patches.read(index)
        rows, columns = np.nonzero((label > 0) & (image > 0).all(axis=0))
        chosen = generator.permutation(len(rows))[:per_patch]
        features.append(image[:, rows[chosen], columns[chosen]].T)
        targets.append(label[rows[chosen], columns[chosen]])
    return normalise_pixels(np.concatenate(features), stats.mean, stats.std), np.concatenate(targets)


def normalise_pixels(pixels: NDArray[np.uint16], mean: list[float], std: list[float]) -> NDArray[np.float32]:
    """(n, bands) uint16 → float32 (x − mean) / std, as the CNN sees its inputs."""
    features = pixels.astype(np.float32)
    features -= np.asarray(mean, np.float32)
    features /= np.asarray(std, np.float32)
    return features


def run_baseline_train(shards: str, out: str, settings: EvaluateConfig, seed: int) -> None:
    """Fit LightGBM on the training pixels and write the booster and its card."""
    import lightgbm  # 0.7 s to import: loaded where used

    stats = read_stats(shards)
    features, targets = training_pixels(shards, stats, settings.baseline_pixels, seed)
    classes = np.unique(targets)
    index = np.searchsorted(classes, targets)
    parameters = {"objective": "multiclass", "num_class": len(classes), "num_leaves": 63, "learning_rate": 0.1}
    parameters |= {"seed": seed, "verbose": -1, "num_threads": settings.baseline_threads}
    with atomic_path(Path(out) / "model.txt") as temporary:
        if len(classes) > 1:
            booster = lightgbm.train(parameters, lightgbm.Dataset(features, index), settings.baseline_rounds)
            booster.save_model(str(temporary))
        else:  # one class in the training patches: LightGBM cannot fit it, and the answer is that class anyway
            temporary.write_text(f"constant {int(classes[0])}\n")
    write_json(
        Path(out) / "card.json",
        {
            "bands": stats.bands,
            "classes": classes.tolist(),
            "stats": stats.model_dump(mode="json"),
            "pixels": len(targets),
        },
    )
    LOG.info(
        "baseline: %d training pixels, %d classes, %d rounds", len(targets), len(classes), settings.baseline_rounds
    )


def run_baseline_predict(folder: str, image_path: str, classes_path: str) -> None:
    """Class ids of one staged tile by the booster, block of rows by block of rows."""
    import lightgbm  # 0.7 s to import: loaded where used

    card = read_json(Path(folder) / "card.json")
    classes = np.asarray(card["classes"], dtype=np.uint8)
    constant = len(classes) == 1
    booster = None if constant else lightgbm.Booster(model_file=str(Path(folder) / "model.txt"))
    with open_raster(image_path) as source:
        check_bands(card["bands"], list(source.descriptions), image_path)
        result = np.zeros(source.shape, dtype=np.uint8)
        for row in range(0, source.height, BLOCK_ROWS):
            rows = min(BLOCK_ROWS, source.height - row)
            block = source.read(window=((row, row + rows), (0, source.width)))
            valid = (block > 0).all(axis=0)
            if valid.any():
                if constant:
                    result[row : row + rows][valid] = classes[0]
                    continue
                pixels = normalise_pixels(block[:, valid].T, card["stats"]["mean"], card["stats"]["std"])
                probabilities = np.asarray(booster.predict(pixels)) if booster is not None else np.zeros((1, 1))
                result[row : row + rows][valid] = classes[probabilities.argmax(axis=1)]
        crs, transform = source.crs, source.transform
    write_raster(classes_path, result, crs=crs, transform=transform, nodata=0, descriptions=["class_id"])
