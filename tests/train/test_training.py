"""Training pieces with hand-computed values: launch commands, loss normalisation, class weights, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2ecosg.config import TrainConfig
from s2ecosg.ranks import world_from_environment
from s2ecosg.train.launch import launch_prefix
from s2ecosg.train.losses import class_weights, labelled_weight, step_loss
from s2ecosg.train.parts import lr_factors


def test_launch_prefix_per_backend_and_resources() -> None:
    assert launch_prefix("single", 1, 1, 1) == ""
    assert launch_prefix("ddp", 1, 1, 1) == ""  # one GPU: no launcher needed
    assert launch_prefix("ddp", 4, 1, 1).startswith("torchrun --standalone --nproc-per-node=4 ")
    assert launch_prefix("ddp", 4, 1, 1).endswith("--no-python --")
    assert launch_prefix("horovod", 0, 1, 2) == "horovodrun --gloo -np 2 -H localhost:2"
    assert launch_prefix("ddp", 4, 2, 1) == "srun --nodes=2 --ntasks-per-node=4 --kill-on-bad-exit=1"
    assert launch_prefix("horovod", 4, 2, 1).endswith("--mpi=pmix")
    with pytest.raises(ValueError, match="single runs one process"):
        launch_prefix("single", 2, 1, 1)


def test_world_from_the_launchers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "HOROVOD_RANK", "HOROVOD_LOCAL_RANK", "HOROVOD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert world_from_environment() == (5, 1, 8)
    monkeypatch.setenv("HOROVOD_RANK", "1")
    monkeypatch.setenv("HOROVOD_LOCAL_RANK", "1")
    monkeypatch.setenv("HOROVOD_SIZE", "2")
    assert world_from_environment() == (1, 1, 2)  # horovodrun inside an srun step of one task


def test_loss_is_normalised_by_the_global_labelled_pixels() -> None:
    """Two ranks' losses, gradients averaged, equal one rank's loss on both halves, whatever the label split."""
    torch.manual_seed(0)
    logits = torch.randn(4, 4, 5, 5, requires_grad=True)
    label = torch.randint(0, 4, (4, 5, 5))
    label[2:, :, :4] = 0  # the second half has far fewer labelled pixels
    whole = step_loss(logits, label, None, labelled_weight(label, None), 1, "ce")
    expected = torch.nn.functional.cross_entropy(logits, label, ignore_index=0)
    torch.testing.assert_close(whole, expected)
    total = labelled_weight(label, None)
    halves = [step_loss(logits[part], label[part], None, total, 2, "ce") for part in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, expected)


def test_inverse_sqrt_class_weights() -> None:
    weights = class_weights({"1": 900, "2": 100}, 3, "inverse_sqrt")
    # shares 0.9 / 0.1 → 1/√0.9, 1/√0.1, scaled so that the pixel-weighted mean is 1; class 3 unseen → the max.
    raw = np.array([1 / math.sqrt(0.9), 1 / math.sqrt(0.1)])
    scale = (raw * [0.9, 0.1]).sum()
    np.testing.assert_allclose(weights.numpy(), [0.0, raw[0] / scale, raw[1] / scale, raw[1] / scale], rtol=1e-6)
    assert class_weights({"1": 5}, 3, "none") is None
    label = torch.tensor([[0, 1, 2]])
    assert float(labelled_weight(label, weights)) == pytest.approx(float(weights[1] + weights[2]))


def test_encoder_frozen_then_slower() -> None:
    settings = TrainConfig(epochs=4, freeze_encoder_epochs=2, encoder_lr_factor=0.1, schedule="constant")
    encoder, decoder = lr_factors(settings)
    assert [encoder(epoch) for epoch in range(4)] == [0.0, 0.0, 0.1, 0.1]
    assert [decoder(epoch) for epoch in range(4)] == [1.0] * 4
    cosine = lr_factors(TrainConfig(epochs=4, freeze_encoder_epochs=0, encoder_lr_factor=1.0, schedule="cosine"))
    assert cosine[1](2) == pytest.approx(0.5)


def test_signal_asks_every_step_loop_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGUSR1 (SLURM's --signal before the time limit) sets the request the training loop checks each step."""
    import os
    import signal

    from s2ecosg.train.run import StopRequest

    monkeypatch.delenv("S2ECOSG_STOP_AFTER_STEP", raising=False)
    previous = {number: signal.getsignal(number) for number in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        stop = StopRequest()
        assert not stop.wanted(10**6)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wanted(1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_dice_term() -> None:
    from s2ecosg.train.losses import dice_loss

    label = torch.tensor([[[1, 1], [2, 0]]])
    perfect = torch.nn.functional.one_hot(label, 3).permute(0, 3, 1, 2).float() * 50
    assert float(dice_loss(perfect, label)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 3, 2, 2)
    # Soft Dice per class with probabilities 1/3 on the 3 labelled pixels: class 1 → 2·(2/3)/(1 + 2) = 4/9,
    # class 2 → 2·(1/3)/(1 + 1) = 1/3; loss = 1 − mean = 1 − 7/18.
    assert float(dice_loss(uniform, label)) == pytest.approx(1 - 7 / 18, rel=1e-6)
