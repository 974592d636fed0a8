"""Pretrained encoder weights from a file: torchvision ImageNet ResNets, BigEarthNet v2 ResNets, model bundles.

No download ever happens here: ``model.weights`` names a local file (or a bundle folder).
- torchvision ``resnet*`` state dicts (``.pth``): first conv RGB → B04/B03/B02, the mean filter elsewhere;
- BigEarthNet v2.0 ResNet-50 checkpoints (ConfigILM ``model.safetensors`` or a torch/Lightning checkpoint; keys
  under ``model.vision_encoder.``): 10-band first conv in the order of :data:`BIGEARTHNET_BANDS`, so the run's
  bands must be exactly those, in that order, or the file is refused naming both lists;
- a bundle (folder with ``bundle.json`` + ``weights.pt``, or its ``weights.pt``): its encoder, and its decoder
  and head too when bands and classes match; its bands must equal the run's.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from s2ecosg.errors import InputError
from s2ecosg.model.card import read_card

LOG = logging.getLogger(__name__)
RGB_BANDS = ("B04", "B03", "B02")  # ImageNet's R, G, B input planes
BIGEARTHNET_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")  # v2.0 (v0.2.0) order
PREFIXES = ("model.vision_encoder.", "vision_encoder.", "module.", "encoder.", "backbone.", "model.")


def widen_first_conv(weight: torch.Tensor, bands: list[str]) -> torch.Tensor:
    """Turn an RGB first-conv weight (64, 3, 7, 7) into one for ``bands``.

    B04/B03/B02 get the R/G/B filters; every other band the mean of the three. The result is scaled by 3 / N
    so a pixel of equal normalised values gives the same activation as with RGB.
    """
    mean = weight.mean(dim=1)
    planes = [weight[:, RGB_BANDS.index(band)] if band in RGB_BANDS else mean for band in bands]
    return torch.stack(planes, dim=1) * (3.0 / len(bands))


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (safetensors, or a torch file holding a state dict, maybe under ``state_dict``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # 0.1 s to import: loaded where used

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(path, f"cannot read weights ({str(error).splitlines()[0]})") from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(path, "not a state dict")
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def encoder_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """ResNet tensors named as torchvision names them: known prefixes stripped, classifier dropped."""
    for prefix in PREFIXES:
        if f"{prefix}conv1.weight" in state:
            state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            break
    if "conv1.weight" not in state:
        raise InputError(path, "not a ResNet state dict (no conv1.weight under a known prefix)")
    return {key: value for key, value in state.items() if not key.startswith(("fc.", "classifier.", "head."))}


def fit_first_conv(state: dict[str, torch.Tensor], bands: list[str], path: Path) -> str:
    """Adapt or check the first conv for the run's bands; return the kind of weights (``imagenet``/``bigearthnet``)."""
    planes = state["conv1.weight"].shape[1]
    if planes == 3:
        state["conv1.weight"] = widen_first_conv(state["conv1.weight"], bands)
        return "imagenet"
    if planes == len(BIGEARTHNET_BANDS):
        if tuple(bands) != BIGEARTHNET_BANDS:
            raise InputError(
                path,
                f"BigEarthNet v2 weights expect bands {','.join(BIGEARTHNET_BANDS)} but imagery.bands is "
                f"{','.join(bands)}",
            )
        return "bigearthnet"
    if planes != len(bands):
        raise InputError(path, f"first conv takes {planes} bands, imagery.bands has {len(bands)}")
    return "matching"


def load_into_encoder(model: Any, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy encoder tensors into ``model.encoder``, refusing shape mismatches and missing tensors."""
    expected = model.encoder.state_dict()
    wrong = [key for key, value in state.items() if key in expected and expected[key].shape != value.shape]
    if wrong:
        raise InputError(path, f"weights do not fit encoder {model.encoder_name} (shape of {wrong[0]})")
    missing, _ = model.encoder.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("fc.")]
    if missing:
        raise InputError(path, f"weights lack encoder tensors, e.g. {missing[0]}")


def load_bundle_weights(model: Any, folder: Path, bands: list[str]) -> None:
    """Start from a bundle: the whole model when its bands and classes match, else its encoder."""
    card = read_card(folder)
    if list(card.bands) != list(bands):
        raise InputError(folder, f"bundle bands {','.join(card.bands)} differ from imagery.bands {','.join(bands)}")
    state = read_state(folder / "weights.pt")
    if all(key in state and state[key].shape == value.shape for key, value in model.state_dict().items()):
        model.load_state_dict(state)
        LOG.info("whole model initialised from bundle %s", folder)
        return
    load_into_encoder(model, encoder_state(state, folder), folder)
    LOG.info("encoder initialised from bundle %s (classes differ: decoder starts afresh)", folder)


def load_pretrained(model: Any, path: str | Path, bands: list[str]) -> None:
    """Initialise ``model`` from ``path`` (see the module docstring for the kinds of files accepted)."""
    path = Path(path)
    if path.is_dir() or path.name == "weights.pt" and (path.parent / "bundle.json").exists():
        load_bundle_weights(model, path if path.is_dir() else path.parent, bands)
        return
    if not path.exists():
        raise InputError(path, "encoder weights file not found (weights are never downloaded)")
    state = encoder_state(read_state(path), path)
    kind = fit_first_conv(state, bands, path)
    load_into_encoder(model, state, path)
    LOG.info("encoder initialised from %s weights in %s", kind, path)
