"""Temperature scaling: scores by hand, the fit on known temperatures, an over-confident network made honest."""

from __future__ import annotations

import math

import pytest
import torch

from s2ecosg.train.calibrate import calibrate, fit_temperature, reliability


def test_scores_of_four_pixels_by_hand() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    labels = torch.tensor([0, 1, 1, 0])
    scores = reliability(probabilities, labels)
    # Bins of 1/15: 0.9 → bin 13, 0.8 → 12, 0.7 → 10, 0.55 → 8; each holds one pixel.
    # |correct − confidence|: |1 − 0.9| + |0 − 0.8| + |1 − 0.7| + |1 − 0.55| = 0.1 + 0.8 + 0.3 + 0.45 = 1.65, over 4.
    assert scores.ece == pytest.approx(1.65 / 4)
    # Brier: (0.1² + 0.1²) + (0.8² + 0.8²) + (0.3² + 0.3²) + (0.45² + 0.45²), over 4.
    assert scores.brier == pytest.approx((0.02 + 1.28 + 0.18 + 0.405) / 4)
    assert scores.nll == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.55)) / 4)
    assert scores.accuracy == pytest.approx(0.75)
    assert [row.pixels for row in scores.bins] == [1, 1, 1, 1]
    assert [row.confidence for row in scores.bins] == pytest.approx([0.55, 0.7, 0.8, 0.9])


def drawn(logits: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels drawn from softmax(logits): the logits are then perfectly calibrated."""
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)[:, 0]


@pytest.mark.parametrize("scale", [1.0, 0.5, 3.0])
def test_the_fit_finds_the_temperature_the_logits_were_scaled_by(scale: float) -> None:
    generator = torch.Generator().manual_seed(1)
    logits = 2.0 * torch.randn(60000, 6, generator=generator, dtype=torch.float64)
    labels = drawn(logits, 2)
    assert fit_temperature(scale * logits, labels) == pytest.approx(scale, rel=0.05)


def test_an_over_confident_network_is_made_honest() -> None:
    torch.manual_seed(0)
    # Three overlapping classes in 8 dimensions, 15 % of labels noise: a wide network fitted for long memorises its
    # 300 training points and is then far too sure of itself on unseen points.
    centres = torch.randn(3, 8) * 1.2

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 3, (count,))
        points = centres[labels] + torch.randn(count, 8)
        noisy = torch.rand(count) < 0.15
        labels[noisy] = torch.randint(0, 3, (int(noisy.sum()),))
        return points, labels

    train_points, train_labels = sample(300)
    network = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.ReLU(), torch.nn.Linear(128, 3))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    for _ in range(600):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(network(train_points), train_labels).backward()
        optimiser.step()
    with torch.no_grad():
        validation_points, validation_labels = sample(20000)
        test_points, test_labels = sample(20000)
        calibration = calibrate(network(validation_points), validation_labels)
        test_logits = network(test_points).double()
    assert calibration.temperature > 1.5  # over-confident: the logits are spread too far
    assert calibration.after.ece < 0.5 * calibration.before.ece
    assert calibration.after.nll < calibration.before.nll
    # On pixels the fit never saw, too.
    before = reliability(torch.softmax(test_logits, dim=1), test_labels)
    after = reliability(torch.softmax(test_logits / calibration.temperature, dim=1), test_labels)
    assert after.ece < 0.5 * before.ece and after.brier < before.brier
    assert after.accuracy == before.accuracy  # the argmax does not move
