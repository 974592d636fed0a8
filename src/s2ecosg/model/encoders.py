"""The encoders a U-Net can be built on: each owns its channels, its output stride and how it is built and run.

A new encoder is one row of ``data/encoders.csv`` (name, channels, stride, weights in MB; the config accepts the names listed
there and checks patch and window sizes against the stride) and, for a new family (a Swin, an SSL4EO checkpoint's
backbone), its builder in :data:`FAMILIES`. Nothing here imports torch at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from s2ecosg.encoder_shapes import ENCODER_SHAPES, EncoderShape


@dataclass(frozen=True)
class Encoder(EncoderShape):
    """An encoder of the table (its name, channels, stride and family: :class:`EncoderShape`) and how it runs.

    Attributes:
        build: ``in_channels`` → the module (its state-dict keys are the bundle's ``encoder.*`` tensors).
        features: (module, image batch) → the five feature maps, shallow to deep.
    """

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


# The networks of the encoder table (:mod:`s2ecosg.encoder_shapes`), each built by its family's builder.
FAMILIES = {"resnet": (build_resnet, resnet_features)}
ENCODERS: dict[str, Encoder] = {
    shape.name: Encoder(
        shape.name,
        shape.channels,
        shape.stride,
        shape.family,
        shape.weights_mb,
        FAMILIES[shape.family][0](shape.name),
        FAMILIES[shape.family][1],
    )
    for shape in ENCODER_SHAPES.values()
}
