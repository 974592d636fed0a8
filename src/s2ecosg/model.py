"""The segmentation model: a U-Net whose encoder is a torchvision ResNet, first conv widened to N bands.

Shapes: input (batch, bands, H, W) float32 normalised reflectance with H, W multiples of 32; output
(batch, n_classes + 1, H, W) logits, index 0 being the ignored "no label" id.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

LOG = logging.getLogger(__name__)
# Channels of the stem and of layer1..layer4 for each encoder.
ENCODER_CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}
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
        backbone.fc = nn.Identity()  # the classifier is never used, and DDP refuses parameters without gradients
        self.encoder = backbone
        self.encoder_name = encoder
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


def pick_device(choice: str) -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
