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
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2ecosg.cover.aggregate import MOST_LIKELY, BlockCounts, CoverMapping, Source, aggregate_block
from s2ecosg.cover.cache import BlockCache
from s2ecosg.cover.cells import block_values
from s2ecosg.cover.fill import GapFiller
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.lonlat import Block, LonLatGrid

BlockOutput = tuple[Block, dict[str, np.ndarray], bool]  # block, values for the writers, counts reused


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
    return block, block_values(counts, job.grid, block, job.filler, members), reused


# Set in each worker by ``start_worker``.
WORKER: dict[str, CoverJob] = {}


def start_worker(job: CoverJob) -> None:
    """Keep the cover's job in the worker process."""
    WORKER["job"] = job


def output_in_worker(block: Block) -> BlockOutput:
    """:func:`block_output` in a worker."""
    return block_output(WORKER["job"], block)


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
def block_outputs(job: CoverJob, blocks: list[Block], workers: int) -> Iterator[Iterator[BlockOutput]]:
    """Yield an iterator over every block's output, in the order of ``blocks``.

    With ``workers`` > 1 the pool is started and the first blocks are submitted on entry, so they are aggregated
    while the caller prepares its files; the pool is stopped on exit.
    """
    if workers <= 1 or len(blocks) <= 1:
        yield (block_output(job, block) for block in blocks)
        return
    context = multiprocessing.get_context("spawn")
    with one_blas_thread():
        pool = context.Pool(min(workers, len(blocks)), initializer=start_worker, initargs=(job,))
    with pool:
        upcoming = iter(blocks)
        queue: collections.deque[Any] = collections.deque(
            pool.apply_async(output_in_worker, (block,)) for block in itertools.islice(upcoming, 2 * workers)
        )
        yield in_order(pool, queue, upcoming)


def in_order(pool: Any, queue: collections.deque[Any], upcoming: Iterator[Block]) -> Iterator[BlockOutput]:
    """The pending results in submission order, submitting the next block as each one is taken."""
    while queue:
        output = queue.popleft().get()
        for block in upcoming:
            queue.append(pool.apply_async(output_in_worker, (block,)))
            break
        yield output
