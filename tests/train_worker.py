"""A few real training steps of the s2ecosg training parts on whatever world the launcher made (test driver).

Usage: python train_worker.py SHARDS OUT BACKEND BATCH STEPS
Each rank writes OUT/rank{r}.pt with its parameters (before and after) and the gradients of its last step.
BatchNorm runs in eval mode (running statistics fixed): per-rank batch statistics of half a global batch would
differ from those of the whole batch, so only then are 2 ranks × N/2 and 1 rank × N the same computation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from s2ecosg.config import TrainConfig
from s2ecosg.io import read_json
from s2ecosg.model.network import UNet
from s2ecosg.train.data import EpochBatches, PatchDataset
from s2ecosg.train.distributed import join
from s2ecosg.train.parts import build_parts
from s2ecosg.train.run import make_loader, train_step


def main() -> None:
    """Run STEPS steps and save what the test compares."""
    shards, out, backend, batch, steps = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    settings = TrainConfig(backend=backend, batch_size=batch, lr=0.01, device="cpu", schedule="constant")
    world = join(backend, "cpu")
    torch.manual_seed(0)
    stats = read_json(Path(shards) / "stats.json")
    model = UNet("resnet18", len(stats["bands"]), 3)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    parts = build_parts(model, settings, world, torch.device("cpu"), None)
    dataset = PatchDataset(shards, "train", stats["mean"], stats["std"], augment=True)
    batches = EpochBatches(len(dataset), batch, world.rank, world.size, seed=0, shuffle=True)
    loader = make_loader(dataset, batches, TrainConfig(workers=0, prefetch=2), torch.device("cpu"))
    parts.model.train()
    for module in parts.model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    for step, (image, label) in enumerate(loader):
        if step == steps:
            break
        train_step(parts, image, label, stop=False)
    out.mkdir(parents=True, exist_ok=True)
    gradients = {
        name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None
    }
    torch.save({"initial": initial, "final": model.state_dict(), "gradients": gradients}, out / f"rank{world.rank}.pt")
    world.close()


if __name__ == "__main__":
    main()
