"""Pretrained weights from files the test writes: BigEarthNet v2 checkpoints, bundles, wrong band lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from s2ecosg.errors import InputError
from s2ecosg.model.bundle import save_bundle
from s2ecosg.model.card import BundleCard
from s2ecosg.model.network import UNet
from s2ecosg.model.transfer import BIGEARTHNET_BANDS, load_pretrained

BANDS = list(BIGEARTHNET_BANDS)


def bigearthnet_state() -> dict[str, torch.Tensor]:
    """A ResNet-50 laid out as BigEarthNet v2 (ConfigILM) saves it: 10-band conv1, 19-label classifier, prefix."""
    torch.manual_seed(3)
    network = torchvision.models.resnet50(weights=None, num_classes=19)
    network.conv1 = torch.nn.Conv2d(10, 64, 7, 2, 3, bias=False)
    return {f"model.vision_encoder.{key}": value.contiguous() for key, value in network.state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_bigearthnet_checkpoint_loads_into_the_encoder(tmp_path: Path, suffix: str) -> None:
    state = bigearthnet_state()
    path = tmp_path / f"resnet50-s2-v0.2.0{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 20}, path)  # a Lightning-style checkpoint
    model = UNet("resnet50", 10, 5)
    load_pretrained(model, path, BANDS)
    torch.testing.assert_close(model.encoder.conv1.weight, state["model.vision_encoder.conv1.weight"])
    torch.testing.assert_close(
        model.encoder.layer3[1].bn2.running_var, state["model.vision_encoder.layer3.1.bn2.running_var"]
    )


def test_bigearthnet_weights_refuse_another_band_order(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(bigearthnet_state(), str(path))
    older = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11", "B12", "B8A"]  # BigEarthNet v0.1.1's order
    with pytest.raises(InputError) as error:
        load_pretrained(UNet("resnet50", 10, 5), path, older)
    message = str(error.value)
    assert str(path) in message and ",".join(BIGEARTHNET_BANDS) in message and ",".join(older) in message
    assert "\n" not in message


def test_bundle_start(tmp_path: Path) -> None:
    """Same bands and classes: the whole model; more classes: the encoder only; other bands: refused."""
    torch.manual_seed(4)
    source = UNet("resnet18", 4, 3)
    card = BundleCard(encoder="resnet18", bands=["B02", "B03", "B04", "B08"], n_classes=3, mean=[0] * 4, std=[1] * 4)
    save_bundle(tmp_path / "bundle", source.state_dict(), card)
    same = UNet("resnet18", 4, 3)
    load_pretrained(same, tmp_path / "bundle", ["B02", "B03", "B04", "B08"])
    torch.testing.assert_close(same.head.weight, source.head.weight)
    wider = UNet("resnet18", 4, 6)
    load_pretrained(wider, tmp_path / "bundle" / "weights.pt", ["B02", "B03", "B04", "B08"])
    torch.testing.assert_close(wider.encoder.layer2[0].conv1.weight, source.encoder.layer2[0].conv1.weight)
    assert wider.head.weight.shape[0] == 7
    with pytest.raises(InputError, match="bundle bands B02,B03,B04,B08 differ from imagery.bands B02,B03,B04,B8A"):
        load_pretrained(UNet("resnet18", 4, 3), tmp_path / "bundle", ["B02", "B03", "B04", "B8A"])


def test_missing_weights_are_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="never downloaded"):
        load_pretrained(UNet("resnet18", 4, 3), tmp_path / "resnet50-imagenet.pth", BANDS)
