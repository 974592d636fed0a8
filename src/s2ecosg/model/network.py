"""The segmentation model: a U-Net on an encoder of the registry (:mod:`s2ecosg.model.encoders`), N input bands.

Shapes: input (batch, bands, H, W) float32 normalised reflectance with H, W multiples of the encoder's stride; output
(batch, n_classes + 1, H, W) logits, index 0 being the ignored "no label" id.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from s2ecosg.errors import InputError
from s2ecosg.model.encoders import ENCODERS

LOG = logging.getLogger(__name__)
DECODER_CHANNELS = (256, 128, 64, 32, 16)


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
    """U-Net on a registered encoder: the deepest feature map is the bottleneck, the four others are skips.

    Args:
        encoder: Name in :data:`~s2ecosg.model.encoders.ENCODERS` (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: Number of input bands.
        n_classes: Number of class ids K; the output has K + 1 channels (id 0 ignored).
    """

    def __init__(self, encoder: str, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.spec = ENCODERS[encoder]
        self.encoder = self.spec.build(in_channels)
        self.encoder_name = encoder
        stem, *skips = self.spec.channels
        widths = [skips[3], *DECODER_CHANNELS]
        skip_channels = [skips[2], skips[1], skips[0], stem, 0]
        self.decoder = nn.ModuleList(
            conv_block(widths[i] + skip_channels[i], widths[i + 1]) for i in range(len(DECODER_CHANNELS))
        )
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], n_classes + 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes + 1, H, W) for an image batch (batch, bands, H, W)."""
        stem, layer1, layer2, layer3, features = self.spec.features(self.encoder, image)
        for block, skip in zip(self.decoder, (layer3, layer2, layer1, stem, None), strict=True):
            features = nn.functional.interpolate(features, scale_factor=2.0, mode="nearest")
            if skip is not None:
                features = torch.cat([features, skip], dim=1)
            features = block(features)
        return self.head(features)


def pick_device(choice: str, key: str = "predict.device") -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``; ``cuda`` without a GPU is one line naming ``key``."""
    if choice == "cuda" and not torch.cuda.is_available():
        import os

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "no CUDA device or driver"
        raise InputError(
            key, f"cuda asked for, but this node has no GPU visible ({seen}): use auto or cpu, or run it on a GPU node"
        )
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
