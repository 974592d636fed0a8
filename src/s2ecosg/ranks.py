"""Which process of a distributed job this is: rank, local rank and world size, whoever started the processes.

Read by logging (only rank 0 writes logs) and by training; torch-free, so that every command can ask.
"""

from __future__ import annotations

import os

# (rank, local rank, world size) variables in the order launchers are trusted: explicit torch ones first.
LAUNCHER_VARIABLES = (
    ("RANK", "LOCAL_RANK", "WORLD_SIZE"),  # torchrun, or set by hand
    ("HOROVOD_RANK", "HOROVOD_LOCAL_RANK", "HOROVOD_SIZE"),  # horovodrun (gloo)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI mpirun
    ("PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE"),  # MPICH / Intel MPI
    ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"),  # srun: one task per GPU
)


def world_from_environment() -> tuple[int, int, int]:
    """(rank, local rank, world size) from the first launcher whose variables are all set; (0, 0, 1) if none.

    Inside a SLURM job step of one task (the usual single-process job) SLURM_NTASKS is 1, so this is a world
    of one, as it should be.
    """
    for rank, local_rank, size in LAUNCHER_VARIABLES:
        if all(name in os.environ for name in (rank, local_rank, size)):
            return int(os.environ[rank]), int(os.environ[local_rank]), int(os.environ[size])
    return 0, 0, 1
