"""Data-parallel training without caring who started the processes: torchrun, horovodrun, mpirun or srun.

Every process reads its rank, local rank and world size from the environment its launcher set
(:func:`world_from_environment`), joins the backend's process group, and then uses the few collective
operations training needs through :class:`World`, the same calls for DDP (``torch.distributed``, NCCL on GPUs,
gloo on CPUs) and Horovod.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
from typing import Any

import torch

from s2ecosg.ranks import world_from_environment

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class World:
    """The processes of one training run and the collectives between them.

    Attributes:
        backend: ``single``, ``ddp`` or ``horovod``.
        rank: Global rank (0 writes checkpoints, bundles and logs).
        local_rank: Rank on this node (picks the GPU).
        size: Number of processes.
    """

    backend: str
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """True on the process that writes files."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``tensor`` over all processes (a new tensor; same on every rank)."""
        if self.size == 1:
            return tensor.clone()
        if self.backend == "horovod":
            import horovod.torch as hvd  # 1 s to import: loaded where used

            return hvd.allreduce(tensor, op=hvd.Sum, name=None)
        result = tensor.clone()
        torch.distributed.all_reduce(result, op=torch.distributed.ReduceOp.SUM)
        return result

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as trained: DDP-wrapped for ``ddp``, itself otherwise (Horovod wraps the optimizer)."""
        if self.backend == "ddp" and self.size > 1:
            device_ids = [device.index] if device.type == "cuda" else None
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return model

    def wrap_optimizer(self, optimizer: Any, model: torch.nn.Module) -> Any:
        """Horovod's gradient-averaging optimizer for ``horovod``; the optimizer itself otherwise."""
        if self.backend == "horovod" and self.size > 1:
            import horovod.torch as hvd  # 1 s to import: loaded where used

            return hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        return optimizer

    def synchronise(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters (Horovod; DDP broadcasts them when wrapping).

        Optimizer state is not broadcast: it is empty when training starts and read from the same last.pt by
        every rank on resume. (``hvd.broadcast_optimizer_state`` would initialise an empty state with a
        zero-gradient step, which AdamW's weight decay turns into a real, if tiny, update.)
        """
        if self.backend == "horovod" and self.size > 1:
            import horovod.torch as hvd  # 1 s to import: loaded where used

            hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    def barrier(self) -> None:
        """Wait for every process."""
        if self.size > 1:
            self.sum(torch.zeros(1))

    def close(self) -> None:
        """Leave the process group."""
        if self.backend == "ddp" and self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def master_address_from_slurm() -> None:
    """Under a multi-node ``srun`` without torchrun, point MASTER_ADDR/PORT at the job's first node."""
    if "MASTER_ADDR" in os.environ or "SLURM_JOB_NODELIST" not in os.environ:
        return
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    os.environ["MASTER_ADDR"] = hosts[0]
    # A port derived from the job id, so that two jobs sharing a node do not collide.
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))


def join(backend: str, device_type: str) -> World:
    """Join the process group of ``backend`` (``single``: none) and return this process's :class:`World`."""
    if backend == "horovod":
        try:
            import horovod.torch as hvd  # 1 s to import: loaded where used
        except ImportError as error:
            raise RuntimeError(
                "train.backend is horovod but Horovod is not installed (README: Horovod); use ddp"
            ) from error
        hvd.init()
        return World("horovod", hvd.rank(), hvd.local_rank(), hvd.size())
    rank, local_rank, size = world_from_environment()
    if backend == "single" or size == 1:
        if size > 1:
            raise RuntimeError(f"train.backend is single but the launcher started {size} processes")
        return World(backend)
    master_address_from_slurm()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    torch.distributed.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=size)
    LOG.info("process %d of %d joined the %s group", rank, size, torch.distributed.get_backend())
    return World("ddp", rank, local_rank, size)
