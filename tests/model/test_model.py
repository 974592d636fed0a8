"""The model: the real ResNet-50 U-Net with a weight file written by torchvision, one train step, one window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from s2ecosg.config import DEFAULT_BANDS, PredictConfig
from s2ecosg.errors import InputError
from s2ecosg.model.card import BundleCard
from s2ecosg.model.network import UNet
from s2ecosg.model.transfer import load_pretrained as load_encoder_weights
from s2ecosg.model.transfer import widen_first_conv
from s2ecosg.predict.windows import predict_array


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet-50 state dict (seeded random init; the real ImageNet file has the same layout)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_widen_first_conv_maps_rgb_to_b04_b03_b02() -> None:
    weight = torch.randn(64, 3, 7, 7)
    widened = widen_first_conv(weight, DEFAULT_BANDS)
    scale = 3 / len(DEFAULT_BANDS)
    assert widened.shape == (64, 10, 7, 7)
    torch.testing.assert_close(widened[:, DEFAULT_BANDS.index("B04")], weight[:, 0] * scale)
    torch.testing.assert_close(widened[:, DEFAULT_BANDS.index("B02")], weight[:, 2] * scale)
    torch.testing.assert_close(widened[:, DEFAULT_BANDS.index("B11")], weight.mean(dim=1) * scale)


def test_resnet50_unet_loads_weights_trains_and_predicts(resnet50_file: Path) -> None:
    torch.manual_seed(0)
    model = UNet("resnet50", len(DEFAULT_BANDS), n_classes=5)
    load_encoder_weights(model, resnet50_file, DEFAULT_BANDS)
    source = torch.load(resnet50_file, weights_only=True)
    torch.testing.assert_close(model.encoder.layer4[2].conv3.weight, source["layer4.2.conv3.weight"])
    torch.testing.assert_close(model.encoder.conv1.weight[:, 2], source["conv1.weight"][:, 0] * 0.3)

    before = model.head.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    image, label = torch.randn(2, 10, 64, 64), torch.randint(0, 6, (2, 64, 64))
    loss = torch.nn.CrossEntropyLoss(ignore_index=0)(model(image), label)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.head.weight)

    model.eval()
    card = BundleCard(encoder="resnet50", bands=DEFAULT_BANDS, n_classes=5, mean=[1000.0] * 10, std=[500.0] * 10)
    tile = np.random.default_rng(0).integers(1, 5000, size=(10, 96, 96), dtype=np.uint16)
    tile[:, :, :10] = 0  # a nodata strip
    settings = PredictConfig(window=64, overlap=16, batch_size=2)
    top = predict_array(model, card, tile, settings, torch.device("cpu"))
    classes, confidence, second, second_confidence = top
    assert classes.shape == (96, 96) and classes[:, :10].max() == 0 and classes[:, 10:].min() >= 1
    assert classes.max() <= 5 and confidence[:, 10:].min() >= 255 // 5
    # Top-2: another class, not more probable, and the two together at most all of it (±1 for rounding).
    assert (second[:, 10:] != classes[:, 10:]).all() and (second_confidence <= confidence).all()
    assert (confidence.astype(int) + second_confidence <= 256).all() and second[:, :10].max() == 0


def test_bad_weight_files(tmp_path: Path, resnet50_file: Path) -> None:
    model = UNet("resnet18", 10, 3)
    with pytest.raises(InputError, match="do not fit encoder"):
        load_encoder_weights(model, resnet50_file, DEFAULT_BANDS)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"no torch file")
    with pytest.raises(InputError, match="cannot read weights"):
        load_encoder_weights(model, broken, DEFAULT_BANDS)


def test_bundle_is_built_once_with_its_own_weights(tmp_path: Path) -> None:
    """A bundle's network holds exactly the saved tensors and is built once per process.

    A rewritten bundle is loaded again, and a weight file that lacks a tensor is refused naming the file.
    """
    import os

    from s2ecosg.model.bundle import load_bundle, save_bundle

    torch.manual_seed(1)
    network = UNet("resnet18", 4, 3)
    card = BundleCard(encoder="resnet18", bands=DEFAULT_BANDS[:4], n_classes=3, mean=[0] * 4, std=[1] * 4)
    save_bundle(tmp_path, network.state_dict(), card)
    model, card = load_bundle(tmp_path, torch.device("cpu"))
    assert card.n_classes == 3 and not model.training
    for name, tensor in network.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert load_bundle(tmp_path, torch.device("cpu"))[0] is model
    state = network.state_dict()
    state.pop("decoder.0.weight" if "decoder.0.weight" in state else next(iter(state)))
    save_bundle(tmp_path, state, card)
    os.utime(tmp_path / "weights.pt", ns=(1, 10**18))  # a new version even on a coarse clock
    with pytest.raises(InputError, match=r"weights.pt: does not fit .* 1 tensor\(s\) missing, 0 unexpected"):
        load_bundle(tmp_path, torch.device("cpu"))


def test_compiled_network_predicts_like_the_eager_one() -> None:
    """predict.compile: torch.compile'd network (last batch padded, not recompiled) gives the eager prediction."""
    torch.manual_seed(0)
    model = UNet("resnet18", 4, n_classes=3).eval()
    card = BundleCard(encoder="resnet18", bands=DEFAULT_BANDS[:4], n_classes=3, mean=[1000.0] * 4, std=[500.0] * 4)
    tile = np.random.default_rng(0).integers(1, 5000, size=(4, 96, 96), dtype=np.uint16)
    eager = PredictConfig(window=64, overlap=16, batch_size=3, compile=False)
    compiled = PredictConfig(window=64, overlap=16, batch_size=3, compile=True)  # 4 windows: batches of 3 and 1
    expected = predict_array(model, card, tile, eager, torch.device("cpu"))
    result = predict_array(torch.compile(model, dynamic=False), card, tile, compiled, torch.device("cpu"))
    agree = expected[1].astype(int) - expected[3] > 2  # a clear winner; near-ties may flip on float differences
    assert agree.mean() > 0.3
    np.testing.assert_array_equal(result[0][agree], expected[0][agree])
    assert np.abs(result[1].astype(int) - expected[1]).max() <= 1
