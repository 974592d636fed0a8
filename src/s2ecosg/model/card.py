"""The bundle's card (``bundle.json``): what prediction needs of a trained network, typed, versioned, checked.

Read without torch, so that light commands (cover, evaluate) and the config check read cards at once. A card of
another version (:data:`BUNDLE_VERSION`), one that lacks a key or names an unknown encoder is refused in one line
naming the file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, PositiveFloat, ValidationError

from s2ecosg.errors import InputError
from s2ecosg.io import read_json
from s2ecosg.legend import Legend, legend_from_records
from s2ecosg.model.encoders import ENCODERS

BUNDLE_VERSION = 3  # 1: cards without a version (before tile shards and run hashes); 2: no calibration; 3: this card
READABLE_VERSIONS = (2, 3)  # a version-2 card reads as uncalibrated (temperature 1)


class ReliabilityBin(BaseModel):
    """One bin of the top probability (1/15 wide): its pixels, their mean top probability and their accuracy."""

    model_config = ConfigDict(extra="forbid")

    pixels: int
    confidence: float
    accuracy: float


class Reliability(BaseModel):
    """Whether probabilities mean what they say: ECE (15 bins), Brier score, NLL, accuracy and the bins."""

    model_config = ConfigDict(extra="forbid")

    ece: float
    brier: float
    nll: float
    accuracy: float
    bins: list[ReliabilityBin]


class CalibrationFit(BaseModel):
    """The temperature fitted on ``pixels`` validation pixels, and the scores before (T = 1) and after it."""

    model_config = ConfigDict(extra="forbid")

    temperature: float
    pixels: int
    before: Reliability
    after: Reliability


class BundleCard(BaseModel):
    """What prediction needs to use a trained network, and where it came from (``bundle.json``)."""

    model_config = ConfigDict(extra="forbid")

    version: int = BUNDLE_VERSION
    arch: str = "unet"
    encoder: str
    bands: list[str]
    mean: list[float]
    std: list[float]
    n_classes: int
    legend: list[dict[str, str]] = []
    legend_name: str | None = None
    trained_classes: list[int] | None = None  # classes with training pixels (the others are never predicted)
    patch: int | None = None
    best_epoch: int | None = None
    validation_mean_iou: float | None = None
    epochs_trained: int | None = None
    processes: int | None = None
    backend: str | None = None
    run_hash: str | None = None  # config_hash of the run's whole config (as in the cover's README, netCDF, .hdr)
    shards_digest: str | None = None
    training_digest: str | None = None  # shards and training settings: an equal one means nothing to retrain
    weights_sha256: str | None = None  # predict signatures name the weights by it: a touched file changes nothing
    s2ecosg_version: str | None = None
    torch_version: str | None = None
    temperature: PositiveFloat = 1.0  # predict divides the logits by it (train/calibrate.py); 1 = uncalibrated
    calibration: CalibrationFit | None = None  # the fit (train/calibrate.py), None when uncalibrated


def read_card(folder: str | Path) -> BundleCard:
    """The card of a bundle folder, checked: version, keys and their types, encoder, one mean and std per band."""
    path = Path(folder) / "bundle.json"
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise InputError(path, "not a bundle card (a JSON object)")
    version = raw.get("version", 1)
    if version not in READABLE_VERSIONS:
        age = "an older" if isinstance(version, int) and version < BUNDLE_VERSION else "a newer"
        raise InputError(
            path, f"bundle format {version} was written by {age} s2ecosg; this one reads formats 2 and {BUNDLE_VERSION}"
        )
    missing = [key for key in ("encoder", "bands", "n_classes", "mean", "std") if key not in raw]
    if missing:
        raise InputError(path, f"bundle card lacks {', '.join(missing)}")
    try:
        card = BundleCard.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise InputError(
            path, f"{key}: {'unknown key' if first['type'] == 'extra_forbidden' else first['msg']}"
        ) from None
    if card.encoder not in ENCODERS:
        raise InputError(path, f"encoder {card.encoder!r} unknown; known: {', '.join(ENCODERS)}")
    if len(card.mean) != len(card.bands) or len(card.std) != len(card.bands):
        raise InputError(path, f"mean and std need one value per band ({len(card.bands)} bands)")
    return card


def card_legend(card: BundleCard, folder: str | Path) -> Legend:
    """The bundle's legend (class ids → codes, names, levels, covers) as a :class:`~s2ecosg.legend.Legend`."""
    return legend_from_records(card.legend, str(Path(folder) / "bundle.json"))
