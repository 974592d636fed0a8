"""What a job's memory will be, from the config and its block, before it allocates; and what it was given.

Each block job (stage, predict) and the cover estimate their peak memory from what sizes their arrays (the figures
of the README and of ``bench/``: a stage block holds one scene's parts of all its tiles, a predict block the rows of
its width and a batch of windows, a cover worker one block of cells and, for members, the random field's lattice),
compare it with the memory the job was given (SLURM's ``SLURM_MEM_PER_NODE`` or ``SLURM_MEM_PER_CPU`` ×
``SLURM_CPUS_ON_NODE``, else the machine's available memory) and stop with one line naming the figure and the key
that sizes it. The SLURM profile's ``mem_mb`` of each rule is the same estimate with a margin (``rules/common.smk``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from s2ecosg.config import Config
from s2ecosg.encoder_shapes import ENCODER_SHAPES
from s2ecosg.errors import InputError
from s2ecosg.resample import PLAN_BYTES, PLAN_BYTES_PER_SAMPLE

MB = 2**20
PYTHON_MB = 400  # interpreter, NumPy, GDAL and PROJ with their caches (GDAL's block cache is capped by the jobs)
TORCH_MB = 900  # torch and torchvision loaded, the model's code
ACTIVATIONS_PER_PIXEL = 400  # bytes of U-Net activations per input pixel at inference (ResNet-50, float32, measured)
MARGIN = 1.25  # the profile's mem_mb over the estimate


@dataclass(frozen=True)
class Need:
    """A job's estimated peak memory (MB) and the config key whose value sizes most of it."""

    megabytes: int
    key: str
    what: str


def stage_need(config: Config, tiles: int) -> Need:
    """A stage block job: one scene's parts of every tile, a decoded window per thread, median row blocks, plans."""
    pixels = int(config.grid.tile_size / config.grid.resolution)
    bands = len(config.imagery.bands)
    parts = tiles * bands * pixels**2 * 2
    edge = math.isqrt(max(1, tiles)) * pixels + 70
    decoded = 2 * edge**2 * 2 * 3  # two threads, uint16 window and its float32 sampling
    median = 2 * 2 * 64 * MB  # two threads' row blocks and their sorted copies
    plans = min(PLAN_BYTES, tiles * 3 * pixels**2 * PLAN_BYTES_PER_SAMPLE)  # each tile on 10, 20 and 60 m grids
    need = PYTHON_MB + (parts + decoded + median + plans) // MB
    return Need(need, "grid.block_tiles", f"{tiles} tile(s) of {pixels}² px × {bands} bands")


def predict_need(config: Config, tiles: int) -> Need:
    """A predict block job: the rows of the block's width with its halo, a batch of windows, the tiles' outputs."""
    settings = config.predict
    pixels = int(config.grid.tile_size / config.grid.resolution)
    halo = settings.window if settings.halo is None else settings.halo
    width = math.isqrt(max(1, tiles)) * pixels + 2 * halo
    bands = len(config.imagery.bands)
    rows = 2 * (settings.window + 1024) * width * bands * 2  # the chunk of rows read and the next one
    windows = settings.batch_size * settings.window**2 * (bands * 4 * 3 + ACTIVATIONS_PER_PIXEL)
    ranks = 2 * max(2 if settings.top2 else 1, settings.probabilities)
    outputs = 2 * tiles * ranks * pixels**2 + 3 * width * settings.window * 45 * 4  # tiles and the rolling blend
    model = ENCODER_SHAPES[config.model.encoder].weights_mb  # the config accepts only encoders of the table
    need = PYTHON_MB + TORCH_MB + model + (rows + windows + outputs) // MB
    key = "predict.batch_size" if windows > rows else "grid.block_tiles"
    return Need(need, key, f"batch {settings.batch_size} of {settings.window}² windows, rows {width} px wide")


def cover_need(config: Config, workers: int) -> Need:
    """The cover: a parent writing and ``workers`` processes each aggregating one 256² block (and its members')."""
    settings = config.cover
    per_worker = 360
    key, what = "cover.resolution_deg", f"{workers} worker(s) of ≈ {per_worker} MB"
    if settings.members and settings.member_length_m > 0:
        # The random field of a 1024² chunk sums a lattice of nodes every σ/3 (σ = L/√2) over the chunk ± 4σ.
        sigma = settings.member_length_m / math.sqrt(2.0)
        nodes = (1024 * config.grid.resolution + 8 * sigma) / (sigma / 3)
        field = int(nodes**2 * 8 + 2 * 1024 * nodes * 8) // MB
        if field > per_worker:
            key, what = "cover.member_length_m", f"a member's random field of {nodes:.0f}² lattice nodes per chunk"
        per_worker += field
    return Need(PYTHON_MB + workers * per_worker, key, what)


def given_megabytes() -> tuple[int, str]:
    """The memory this job may use (MB) and where that figure comes from."""
    node, per_cpu = os.environ.get("SLURM_MEM_PER_NODE"), os.environ.get("SLURM_MEM_PER_CPU")
    if node and node.isdigit() and int(node) > 0:
        return int(node), "SLURM_MEM_PER_NODE"
    if per_cpu and per_cpu.isdigit():
        cpus = os.environ.get("SLURM_CPUS_ON_NODE", "1")
        return int(per_cpu) * (int(cpus) if cpus.isdigit() else 1), "SLURM_MEM_PER_CPU × SLURM_CPUS_ON_NODE"
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024, "the machine's available memory"
    return 1 << 30, "unknown"


def check_memory(need: Need, job: str) -> None:
    """Stop with one line when ``need`` exceeds what this job was given, naming the figure and the key to change."""
    given, source = given_megabytes()
    if need.megabytes > given:
        raise InputError(
            need.key,
            f"this {job} job needs ≈ {need.megabytes} MB ({need.what}) but was given {given} MB ({source}): "
            f"lower {need.key} or give the job more memory (the SLURM profile's mem_mb)",
        )


def profile_megabytes(need: Need) -> int:
    """``mem_mb`` for the SLURM profile: the estimate with a margin, rounded up to 100 MB."""
    return int(math.ceil(need.megabytes * MARGIN / 100.0) * 100)
