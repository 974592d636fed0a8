"""Data-parallel training on 2 CPU processes (gloo): DDP through torchrun, Horovod through horovodrun.

Shards are written by the test (7 training patches: an odd epoch, 3 validation patches, 4 bands, 32²);
the encoder is a ResNet-18 so that each run takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BIN, ROOT, run, write_shard_set

from s2ecosg.train.data import EpochBatches
from s2ecosg.train.launch import launch_prefix

WORKER = ROOT / "tests" / "train_worker.py"
BACKENDS = ["ddp", "horovod"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded shards: images whose bands follow the class of each pixel, so the model can learn something."""
    folder = tmp_path_factory.mktemp("shards")
    generator = np.random.default_rng(1)
    splits = {}
    for split, count in (("train", 7), ("val", 3)):
        labels = generator.integers(1, 4, (count, 32, 32)).astype(np.uint8)
        labels[:, :4] = 0  # an unlabelled strip
        images = (
            1000 + 400 * labels[:, None].astype(np.int64) + generator.integers(0, 300, (count, 4, 32, 32))
        ).astype(np.uint16)
        splits[split] = images, labels
    write_shard_set(folder, splits, ["B02", "B03", "B04", "B08"])
    return folder


def launched(backend: str, processes: int, command: list[str]) -> list[str]:
    """``command`` under the launcher the train rule would use for ``processes`` CPU processes."""
    prefix = launch_prefix(backend, 0, 1, processes).split()
    if prefix and prefix[0] in ("torchrun", "horovodrun"):
        prefix[0] = str(BIN / prefix[0])
    return [*prefix, *command]


def horovod_or_skip() -> None:
    """Skip (a failure under CI=true) when Horovod is not built into the venv."""
    pytest.importorskip("horovod.torch", reason="Horovod not built (make test builds it: scripts/install-horovod.sh)")


def test_every_patch_of_an_odd_epoch_counted_once() -> None:
    for size, batch, world in ((7, 2, 2), (7, 3, 2), (10, 4, 3), (1, 2, 2)):
        counted = []
        steps = set()
        for rank in range(world):
            batches = EpochBatches(size, batch, rank, world, seed=5, shuffle=True)
            batches.set_epoch(3)
            items = [item for batch_items in batches for item in batch_items]
            steps.add(len(batches))
            assert all(len(batch_items) == batch for batch_items in batches)  # ranks step together
            counted += [index for index, epoch, keep in items if keep]
            assert all(epoch == 3 for _, epoch, _ in items)
        assert sorted(counted) == list(range(size)) and len(steps) == 1


def test_global_batch_is_the_same_whatever_the_ranks() -> None:
    one = EpochBatches(10, 4, 0, 1, seed=2, shuffle=True)
    halves = [EpochBatches(10, 2, rank, 2, seed=2, shuffle=True) for rank in range(2)]
    for step, batch in enumerate(one):
        split = [list(halves[rank])[step] for rank in range(2)]
        assert batch == split[0] + split[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_end_identical_and_equal_one_rank_with_the_global_batch(
    backend: str, shards: Path, tmp_path: Path
) -> None:
    """Parameters move and stay identical on both ranks; 2 ranks × batch 2 = 1 rank × batch 4 (BatchNorm frozen).

    The update is compared through the gradient of the first step (the one AdamW scales by its own
    magnitude): equal within float32 summation order.
    """
    if backend == "horovod":
        horovod_or_skip()
    worker = [str(BIN / "python"), str(WORKER), str(shards)]
    run(launched(backend, 2, [*worker, str(tmp_path / "two"), backend, "2", "1"]), cwd=tmp_path, timeout=240)
    run([*worker, str(tmp_path / "one"), "single", "4", "1"], cwd=tmp_path, timeout=240)
    rank0, rank1 = (torch.load(tmp_path / "two" / f"rank{rank}.pt") for rank in range(2))
    single = torch.load(tmp_path / "one" / "rank0.pt")
    for name, value in rank0["final"].items():
        torch.testing.assert_close(value, rank1["final"][name], rtol=0, atol=0)
    moved = [name for name, value in rank0["final"].items() if not torch.equal(value, rank0["initial"][name])]
    assert "head.weight" in moved and "encoder.conv1.weight" in moved
    for name, gradient in single["gradients"].items():
        scale = float(gradient.abs().max()) + 1e-12
        torch.testing.assert_close(rank0["gradients"][name], gradient, rtol=1e-4, atol=1e-5 * scale)


def train_command(shards: Path, folder: Path, backend: str, epochs: int = 2, processes: int = 2) -> list[str]:
    """``s2ecosg train`` on the test shards, ``processes`` processes of batch 2."""
    settings = {
        "labels": {"legend": "slovenia_lulc", "path": "unused"},
        "shards": {"patch": 32, "stride": 32},
        "model": {"encoder": "resnet18"},
        "train": {"backend": backend, "batch_size": 2, "epochs": epochs, "device": "cpu", "processes": processes},
    }
    return launched(
        backend,
        processes,
        [str(BIN / "s2ecosg"), "train", "--settings", json.dumps(settings), "--index", str(shards / "index.json")]
        + ["--checkpoints", str(folder / "checkpoints"), "--card", str(folder / "model" / "bundle.json")]
        + ["--log-path", str(folder / "train.log")],
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_rank_zero_writes(backend: str, shards: Path, tmp_path: Path) -> None:
    if backend == "horovod":
        horovod_or_skip()
    run(train_command(shards, tmp_path, backend), cwd=tmp_path, timeout=300)
    log = (tmp_path / "train.log").read_text()
    assert "[rank 0/2]" in log and "[rank 1/2]" not in log
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "history.json", "last.pt"]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["written_by_rank"] == 0
    history = json.loads((tmp_path / "checkpoints" / "history.json").read_text())
    # 7 patches, global batch 4: 2 steps, the last padded with one repeat that is not counted.
    assert [(record["steps"], record["samples"], record["processes"]) for record in history] == [(2, 7, 2)] * 2
    assert all(record["validation_pixels"] == 3 * 28 * 32 for record in history)  # each labelled pixel once
    card = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert card["processes"] == 2 and card["backend"] == backend and card["epochs_trained"] == 2


def test_resume_after_a_stop_equals_an_uninterrupted_run(shards: Path, tmp_path: Path) -> None:
    """Stop a 2-process DDP run after step 3 (mid-epoch 2), resume it, compare with a run that never stopped."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run(train_command(shards, straight, "ddp", epochs=3), cwd=tmp_path, timeout=300)
    result = run(
        train_command(shards, stopped, "ddp", epochs=3),
        cwd=tmp_path,
        timeout=300,
        check=False,
        env={"S2ECOSG_STOP_AFTER_STEP": "3"},
    )
    assert result.returncode != 0 and not (stopped / "model").exists()
    state = torch.load(stopped / "checkpoints" / "last.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 1)  # epochs of 2 steps: step 3 is the first of epoch 2
    shutil.copy(stopped / "train.log", stopped / "first.log")
    run(train_command(shards, stopped, "ddp", epochs=3), cwd=tmp_path, timeout=300)
    assert "resumed from" in (stopped / "train.log").read_text()
    final = {
        name: torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
        for name, folder in (("straight", straight), ("stopped", stopped))
    }
    for name, value in final["straight"]["model"].items():
        torch.testing.assert_close(final["stopped"]["model"][name], value, rtol=1e-4, atol=1e-5)
    assert [record["samples"] for record in final["stopped"]["history"]] == [7, 7, 7]


def test_frozen_encoder_epoch_keeps_the_encoder(shards: Path, tmp_path: Path) -> None:
    """Ulmas & Liiv's first stage: with freeze_encoder_epochs=1, one epoch moves the decoder only."""
    settings = {
        "labels": {"legend": "slovenia_lulc", "path": "unused"},
        "shards": {"patch": 32, "stride": 32},
        "model": {"encoder": "resnet18"},
        "train": {"batch_size": 4, "epochs": 1, "device": "cpu", "freeze_encoder_epochs": 1, "lr": 0.01},
    }
    command = [str(BIN / "s2ecosg"), "train", "--settings", json.dumps(settings), "--index", str(shards / "index.json")]
    command += ["--checkpoints", str(tmp_path / "checkpoints"), "--card", str(tmp_path / "model" / "bundle.json")]
    run([*command, "--log", str(tmp_path / "train.log")], cwd=tmp_path, timeout=300)
    torch.manual_seed(0)
    from s2ecosg.legend import load_legend
    from s2ecosg.model.network import UNet

    initial = UNet("resnet18", 4, load_legend("slovenia_lulc").n_classes).state_dict()
    after_one_epoch = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert (after_one_epoch["epoch"], after_one_epoch["step"]) == (1, 0)
    for name, value in after_one_epoch["model"].items():
        same = torch.equal(value, initial[name])
        assert same == name.startswith("encoder."), name


def test_training_reruns_only_when_the_shards_changed(shards: Path, tmp_path: Path) -> None:
    """Same shards and settings: the bundle is kept untouched. Other shards: last.pt is not resumed, a new bundle."""
    command = train_command(shards, tmp_path, "single", epochs=1, processes=1)
    run(command, cwd=tmp_path, timeout=300)
    weights = tmp_path / "model" / "weights.pt"
    first, card = weights.stat().st_mtime_ns, json.loads((tmp_path / "model" / "bundle.json").read_text())
    index = json.loads((shards / "index.json").read_text())
    assert card["shards_digest"] == index["digest"] and len(card["weights_sha256"]) == 64
    run(command, cwd=tmp_path, timeout=300)
    assert "already trained on these shards" in (tmp_path / "train.log").read_text()
    assert weights.stat().st_mtime_ns == first

    other = tmp_path / "other-shards"
    generator = np.random.default_rng(2)
    labels = generator.integers(1, 4, (5, 32, 32)).astype(np.uint8)
    images = (1000 + 300 * labels[:, None].astype(np.int64) + np.zeros((5, 4, 32, 32), np.int64)).astype(np.uint16)
    write_shard_set(other, {"train": (images, labels), "val": (images[:1], labels[:1])}, ["B02", "B03", "B04", "B08"])
    changed = [str(other / "index.json") if part == str(shards / "index.json") else part for part in command]
    run(changed, cwd=tmp_path, timeout=300)
    log = (tmp_path / "train.log").read_text()
    assert "was written over other shards: training starts afresh" in log and "resumed from" not in log
    card = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert card["shards_digest"] == json.loads((other / "index.json").read_text())["digest"] != index["digest"]
