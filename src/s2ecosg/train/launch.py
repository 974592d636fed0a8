"""Who starts the training processes: the launch command a train job runs, and the ranks a process reads back.

The train rule asks SLURM for ``gpu`` GPUs on ``nodes`` nodes with ``tasks_per_gpu=0`` (the executor plugin
then starts the job's command once, not once per GPU) and prefixes ``s2ecosg train`` with the launcher built
here: one process per GPU (or ``train.processes`` on CPUs), started by ``torchrun`` (DDP, one node),
``horovodrun`` (Horovod, one node, gloo) or ``srun`` (either backend across nodes; Horovod then needs an MPI
build). Every process finds its rank with :func:`s2ecosg.ranks.world_from_environment`, whoever started it.
Torch-free, so that the Snakefile can use it.
"""

from __future__ import annotations

import shlex


def processes_per_node(gpus: int, cpu_processes: int) -> int:
    """One process per GPU the job got; ``cpu_processes`` (``train.processes``) on a CPU-only job."""
    return gpus if gpus > 0 else max(1, cpu_processes)


def launch_prefix(backend: str, gpus: int, nodes: int, cpu_processes: int) -> str:
    """Shell words to put before ``s2ecosg train`` so that it runs as one process per GPU.

    Args:
        backend: ``train.backend`` (``single``, ``ddp``, ``horovod``).
        gpus: GPUs per node of the job (the rule's ``gpu`` resource).
        nodes: Nodes of the job (the rule's ``nodes`` resource).
        cpu_processes: Processes per node when the job has no GPU.

    Returns:
        ``""`` for one process; else a ``torchrun``, ``horovodrun`` or ``srun`` prefix.
    """
    per_node = processes_per_node(gpus, cpu_processes)
    if backend == "single":
        if per_node * nodes > 1:
            raise ValueError(f"train.backend single runs one process, but the job asks for {per_node * nodes}")
        return ""
    if per_node * nodes == 1:
        return ""
    if nodes > 1:
        # srun starts every process itself; ranks come from SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS.
        mpi = ["--mpi=pmix"] if backend == "horovod" else []
        words = ["srun", f"--nodes={nodes}", f"--ntasks-per-node={per_node}", "--kill-on-bad-exit=1", *mpi]
    elif backend == "ddp":
        # "--": torchrun's argument parser would otherwise take the command's --log for one of its own options;
        # SIGUSR1 (SLURM's warning before the time limit) is forwarded to the workers like SIGTERM.
        signals = "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
        words = ["torchrun", "--standalone", f"--nproc-per-node={per_node}", signals, "--no-python", "--"]
    else:
        words = ["horovodrun", "--gloo", "-np", str(per_node), "-H", f"localhost:{per_node}"]
    return shlex.join(words)
