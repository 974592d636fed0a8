"""The encoders a U-Net can be built on, as data (``data/encoders.csv``): name, feature channels, output stride, size.

The config checks ``model.encoder`` and the patch and window sizes against this table; :mod:`s2ecosg.model.encoders`
builds each network named here (a new encoder: one row here and, for a new family, its builder there). Kept apart
from the builders so that reading a config imports no model code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from s2ecosg.io import package_csv


@dataclass(frozen=True)
class EncoderShape:
    """What the rest of the workflow needs to know of an encoder without building it.

    Attributes:
        name: Registry name (``model.encoder``).
        channels: Channels of the five feature maps the decoder joins, at strides 2, 4, 8, 16 and ``stride``.
        stride: Downsampling of the deepest feature map: patch and window edges must be multiples of it.
        family: Which builder makes it (``resnet``: a torchvision ResNet).
        weights_mb: Memory of the U-Net's weights on this encoder, float32, MB (a job's memory estimate).
    """

    name: str
    channels: tuple[int, int, int, int, int]
    stride: int
    family: str
    weights_mb: int


def read_shapes() -> dict[str, EncoderShape]:
    """The table, by name."""
    shapes = {}
    with package_csv("encoders.csv") as handle:
        for row in csv.DictReader(handle):
            first, second, third, fourth, fifth = (int(value) for value in row["channels"].split())
            channels = (first, second, third, fourth, fifth)
            size = int(row["weights_mb"])
            shapes[row["name"]] = EncoderShape(row["name"], channels, int(row["stride"]), row["family"], size)
    return shapes


ENCODER_SHAPES = read_shapes()
