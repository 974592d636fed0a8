"""The segmentation model: a U-Net whose encoder is a torchvision ResNet, first conv widened to N bands.

Shapes: input (batch, bands, H, W) float32 normalised reflectance with H, W multiples of 32; output
(batch, n_classes + 1, H, W) logits, index 0 being the ignored "no label" id.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from s2ecosg.errors import InputError

LOG = logging.getLogger(__name__)
# Channels of the stem and of layer1..layer4 for each encoder.
ENCODER_CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}
DECODER_CHANNELS = (256, 128, 64, 32, 16)
RGB_BANDS = ("B04", "B03", "B02")  # ImageNet's R, G, B input planes


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 convolutions with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with a ResNet encoder (skips from the stem and layers 1–3, bottleneck layer 4).

    Args:
        encoder: torchvision ResNet name (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: Number of input bands.
        n_classes: Number of class ids K; the output has K + 1 channels (id 0 ignored).
    """

    def __init__(self, encoder: str, in_channels: int, n_classes: int) -> None:
        super().__init__()
        import torchvision

        backbone = getattr(torchvision.models, encoder)(weights=None)
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.encoder = backbone
        stem, *skips = ENCODER_CHANNELS[encoder]
        widths = [skips[3], *DECODER_CHANNELS]
        skip_channels = [skips[2], skips[1], skips[0], stem, 0]
        self.decoder = nn.ModuleList(
            conv_block(widths[i] + skip_channels[i], widths[i + 1]) for i in range(len(DECODER_CHANNELS))
        )
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], n_classes + 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes + 1, H, W) for an image batch (batch, bands, H, W)."""
        encoder = self.encoder
        stem = encoder.relu(encoder.bn1(encoder.conv1(image)))  # /2
        layer1 = encoder.layer1(encoder.maxpool(stem))  # /4
        layer2 = encoder.layer2(layer1)  # /8
        layer3 = encoder.layer3(layer2)  # /16
        features = encoder.layer4(layer3)  # /32
        for block, skip in zip(self.decoder, (layer3, layer2, layer1, stem, None), strict=True):
            features = nn.functional.interpolate(features, scale_factor=2.0, mode="nearest")
            if skip is not None:
                features = torch.cat([features, skip], dim=1)
            features = block(features)
        return self.head(features)


def widen_first_conv(weight: torch.Tensor, bands: list[str]) -> torch.Tensor:
    """Turn an RGB first-conv weight (64, 3, 7, 7) into one for ``bands``.

    B04/B03/B02 get the R/G/B filters; every other band the mean of the three. The result is scaled
    by 3 / N so a pixel of equal normalised values gives the same activation as with RGB.
    """
    mean = weight.mean(dim=1)
    planes = [weight[:, RGB_BANDS.index(band)] if band in RGB_BANDS else mean for band in bands]
    return torch.stack(planes, dim=1) * (3.0 / len(bands))


def load_encoder_weights(model: UNet, path: str | Path, bands: list[str]) -> None:
    """Load a torchvision ResNet state dict (ImageNet-style, 3-band conv1) into the encoder.

    The classifier (``fc``) is dropped; conv1 is widened by :func:`widen_first_conv`. No download:
    the file must exist locally.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(path, f"cannot read encoder weights ({str(error).splitlines()[0]})") from error
    state = state.get("state_dict", state)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    if "conv1.weight" not in state:
        raise InputError(path, "not a ResNet state dict (no conv1.weight)")
    if state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = widen_first_conv(state["conv1.weight"], bands)
    expected = model.encoder.state_dict()
    wrong = [key for key, value in state.items() if key in expected and expected[key].shape != value.shape]
    if wrong:
        raise InputError(path, f"weights do not fit encoder (shape of {wrong[0]})")
    missing, _ = model.encoder.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("fc.")]
    if missing:
        raise InputError(path, f"weights lack encoder tensors, e.g. {missing[0]}")
    LOG.info("encoder weights loaded from %s", path)


def pick_device(choice: str) -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
