"""The model bundle: ``bundle.json`` (the card, :mod:`s2ecosg.model.card`) and ``weights.pt``, written and loaded here.

Weights that do not fit the card's network or are not the ones the card was written with are refused in one line
naming the file (torch's own message is a screenful of tensor names).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from s2ecosg.errors import InputError
from s2ecosg.io import atomic_path, write_json
from s2ecosg.legend import load_legend
from s2ecosg.model.card import BundleCard, read_card
from s2ecosg.model.network import UNet


def save_bundle(folder: str | Path, state: dict[str, Any], card: BundleCard) -> BundleCard:
    """Write ``weights.pt`` and then ``bundle.json`` (with the weights' SHA-256), each atomically; return the card."""
    with atomic_path(Path(folder) / "weights.pt") as temporary:
        torch.save(state, temporary)
        card = card.model_copy(update={"weights_sha256": hashlib.sha256(temporary.read_bytes()).hexdigest()})
    write_json(Path(folder) / "bundle.json", card.model_dump(mode="json"))
    return card


def load_bundle(folder: str | Path, device: torch.device) -> tuple[UNet, BundleCard]:
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
def cached_bundle(folder: str, device_name: str, version: tuple[int, int]) -> tuple[UNet, BundleCard]:
    """:func:`load_bundle` without the cache (``version`` only keys it)."""
    device = torch.device(device_name)
    card = read_card(folder)
    # Built without memory or random initialisation (1.4 s for a ResNet-50 U-Net on a CPU), then given the weights.
    with torch.device("meta"):
        model = UNet(card.encoder, len(card.bands), card.n_classes)
    weights = Path(folder) / "weights.pt"
    check_weights_digest(card, weights)
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
            f"does not fit the network of bundle.json (encoder {card.encoder}, {len(card.bands)} bands, "
            f"{card.n_classes} classes): {mismatch}",
        )
    model.load_state_dict(kept, assign=True)
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, card


def check_weights_digest(card: BundleCard, weights: Path) -> None:
    """Refuse weights that are not the ones the card was written with (its ``weights_sha256``, when it has one).

    Predict signatures name the weights by this digest, so a weights file replaced by hand must not pass.
    """
    recorded = card.weights_sha256
    if recorded is None or not weights.is_file():
        return
    if hashlib.sha256(weights.read_bytes()).hexdigest() != recorded:
        raise InputError(weights, "is not the weights file its bundle.json was written with (weights_sha256 differs)")


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


def check_legend(card: BundleCard, legend_name: str, bundle: str) -> None:
    """Refuse a bundle whose class ids mean something else than in the run's legend (``labels.legend``)."""
    own = [(row["id"], row["code"]) for row in card.legend]
    wanted = [(row["id"], row["code"]) for row in load_legend(legend_name).to_records()]
    if own and own != wanted:
        name = card.legend_name or "its own legend"
        raise InputError(
            Path(bundle) / "bundle.json", f"bundle legend {name} differs from labels.legend {legend_name} (ids/codes)"
        )
