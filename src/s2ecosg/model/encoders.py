"""The encoders a U-Net can be built on: each owns its channels, its output stride and how it is built and run.

A new encoder (another torchvision family, a Swin, an SSL4EO checkpoint's backbone) is one :class:`Encoder` added to
:data:`ENCODERS`; the config's ``model.encoder`` accepts the names listed there, and the patch and window sizes are
checked against its stride. Nothing here imports torch: the config reads this registry at every start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Encoder:
    """An encoder family member.

    Attributes:
        name: Registry name (``model.encoder``).
        channels: Channels of the five feature maps the decoder joins, at strides 2, 4, 8, 16 and ``stride``.
        stride: Downsampling of the deepest feature map: patch and window edges must be multiples of it.
        build: ``in_channels`` → the module (its state-dict keys are the bundle's ``encoder.*`` tensors).
        features: (module, image batch) → the five feature maps, shallow to deep.
    """

    name: str
    channels: tuple[int, int, int, int, int]
    stride: int
    build: Callable[[int], Any]
    features: Callable[[Any, Any], list[Any]]


def build_resnet(name: str) -> Callable[[int], Any]:
    """A torchvision ResNet with its first conv widened to ``in_channels`` and no classifier."""

    def build(in_channels: int) -> Any:
        import torchvision  # 1 s: imported when a network is built, not when a config is read
        from torch import nn  # 2.2 s to import: loaded where used

        backbone = getattr(torchvision.models, name)(weights=None)
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        backbone.fc = nn.Identity()  # the classifier is never used, and DDP refuses parameters without gradients
        return backbone

    return build


def resnet_features(backbone: Any, image: Any) -> list[Any]:
    """Stem (/2) and layers 1–4 (/4 … /32) of a torchvision ResNet."""
    stem = backbone.relu(backbone.bn1(backbone.conv1(image)))
    layer1 = backbone.layer1(backbone.maxpool(stem))
    layer2 = backbone.layer2(layer1)
    layer3 = backbone.layer3(layer2)
    return [stem, layer1, layer2, layer3, backbone.layer4(layer3)]


def resnet(name: str, channels: tuple[int, int, int, int, int]) -> Encoder:
    """A registry entry for a torchvision ResNet."""
    return Encoder(name, channels, 32, build_resnet(name), resnet_features)


ENCODERS: dict[str, Encoder] = {
    encoder.name: encoder
    for encoder in (
        resnet("resnet18", (64, 64, 128, 256, 512)),
        resnet("resnet34", (64, 64, 128, 256, 512)),
        resnet("resnet50", (64, 256, 512, 1024, 2048)),
    )
}
