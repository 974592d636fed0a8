"""Each output block's values, in grid order: counts from the block cache or aggregated, in worker processes.

A block goes to a worker (spawned, so no GDAL or PROJ state is shared with the parent), which takes its counts
from :class:`BlockCache` when the block's inputs did not change since the previous cover (nightly reruns), else
aggregates them, and returns what the writers need (:func:`block_values`). The parent only writes. At most two
blocks per worker are in flight, so the parent's memory is bounded by the workers, not the domain; the pool starts
before the parent lays out its files, so both go on at once. The result is the same, block for block, whatever
the number of workers.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from s2ecosg.arrays import Integers
from s2ecosg.cover.aggregate import MOST_LIKELY, BlockCounts, CoverMapping, Source, aggregate_block
from s2ecosg.cover.cache import BlockCache
from s2ecosg.cover.cells import block_values
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.errors import WorkerDied
from s2ecosg.log import crash_if_asked, log_file
from s2ecosg.lonlat import Block, LonLatGrid

BlockOutput = tuple[Block, dict[str, Integers], bool]  # block, values for the writers, counts reused
J = TypeVar("J")  # what every block of a job needs
R = TypeVar("R")  # what a block gives


@dataclass(frozen=True)
class CoverJob:
    """What every block of one cover needs (sent once to each worker)."""

    sources: list[Source]
    grid: LonLatGrid
    mapping: CoverMapping
    filler: GapFiller
    cache: BlockCache | None
    reader: PixelClasses = MOST_LIKELY  # how pixels become classes (soft fractions, a member's draws)
    members: tuple[BlockCache, ...] = ()  # the ensemble members' counts, for the spread of each fraction
    pixel_area: float = 100.0  # m² of a predicted pixel (the data score's predicted share)


def block_output(job: CoverJob, block: Block) -> BlockOutput:
    """One block's values, from cached counts when its inputs are unchanged, else from aggregating them."""

    def aggregate(sources: list[Source], reader: PixelClasses) -> Callable[[], BlockCounts]:
        return lambda: aggregate_block(sources, job.grid, block, job.mapping, reader)

    if job.cache is None:
        counts, reused = aggregate(job.sources, job.reader)(), False
    else:
        counts, reused = job.cache.counts(block, aggregate(job.sources, job.reader))
    # Members' counts as their own runs cached them (drawn again only if a file went missing: the same draws).
    members = [cache.counts(block, aggregate(cache.sources, cache.reader))[0] for cache in job.members]
    return block, block_values(counts, job.grid, block, job.filler, members, job.pixel_area), reused


# Set in each worker by ``start_worker``: the job and what to compute per block.
WORKER: dict[str, Any] = {}


def start_worker(job: object, compute: Callable[[Any, Block], object], log_path: str | None) -> None:
    """Keep the job in the worker process; a native crash there writes its Python stacks to the log."""
    WORKER.update(job=job, compute=compute)
    if log_path:
        WORKER["log"] = open(log_path, "a")  # noqa: SIM115  (held open for the worker's life)
        faulthandler.enable(file=WORKER["log"], all_threads=True)


def output_in_worker(block: Block) -> object:
    """The worker's ``compute(job, block)``."""
    crash_if_asked("cover-worker")
    return WORKER["compute"](WORKER["job"], block)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Start child processes with one BLAS/OpenMP thread each (one core per worker, no oversubscription)."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def block_outputs(job: J, blocks: list[Block], workers: int, compute: Callable[[J, Block], R]) -> Iterator[Iterator[R]]:
    """Yield an iterator over ``compute(job, block)`` of every block, in the order of ``blocks``.

    With ``workers`` > 1 the pool is started and the first blocks are submitted on entry, so they are computed
    while the caller prepares its files; the pool is stopped on exit. A worker that dies (a native crash, the
    out-of-memory killer) stops the command with one line naming the log that holds its stacks. ``compute`` is a
    module-level function (workers are spawned: it is sent by name) such as :func:`block_output`.
    """
    if workers <= 1 or len(blocks) <= 1:
        yield (compute(job, block) for block in blocks)
        return
    context = multiprocessing.get_context("spawn")
    upcoming = iter(blocks)
    pool = ProcessPoolExecutor(
        min(workers, len(blocks)), mp_context=context, initializer=start_worker, initargs=(job, compute, log_file())
    )
    with pool:
        with one_blas_thread():  # the first submissions start the workers (spawned on demand)
            queue = collections.deque(pool.submit(output_in_worker, block) for block in islice(upcoming, 2 * workers))
        try:
            yield in_order(pool, queue, upcoming)
        finally:
            for pending in queue:
                pending.cancel()


def in_order(
    pool: ProcessPoolExecutor, queue: collections.deque[Future[Any]], upcoming: Iterator[Block]
) -> Iterator[Any]:
    """The pending results in submission order, submitting the next block as each one is taken."""
    while queue:
        try:
            output = queue.popleft().result()
        except BrokenProcessPool:
            raise WorkerDied(
                "cover worker", f"a worker process died (a native crash or the out-of-memory killer); see {log_file()}"
            ) from None
        for block in upcoming:
            queue.append(pool.submit(output_in_worker, block))
            break
        yield output
