"""Counts of each output block kept between cover runs, so a nightly rerun aggregates only what changed.

``cache/cover/<row>_<column>.npz`` holds one block's counts and the key they were computed for: the SHA-256 of
the output grid, the class → cover mapping, the placement code's version and the contents of every class and
confidence raster whose footprint reaches the block. A block whose key is unchanged is read back instead of
aggregated; the cover written from it is byte-identical to a full rebuild because the counts are. A new tile,
a changed prediction, another legend or grid changes the key of exactly the blocks it concerns. Snakemake does
not know these files (it would delete them before rerunning the rule); a stale one is simply overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.cover.aggregate import MOST_LIKELY, BlockCounts, CoverMapping, Source, reaching
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.io import atomic_path
from s2ecosg.lonlat import Block, LonLatGrid

LOG = logging.getLogger(__name__)
# Raised whenever the aggregation could give other counts for the same inputs, so old caches are never reused.
PLACEMENT_VERSION = "lattice-2"  # 2: observations and the newest observation day per cell


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read once per process and version of the file (members share the rasters)."""
    status = os.stat(path)
    return hashed_file(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=65536)
def hashed_file(path: str, modified: int, size: int) -> str:
    """:func:`file_sha256` without the memo (``modified`` and ``size`` only key it)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def mapping_digest(grid: LonLatGrid, mapping: CoverMapping, reader: PixelClasses) -> str:
    """SHA-256 of everything besides the rasters that decides a block's counts (the pixel reader included)."""
    digest = hashlib.sha256(f"{PLACEMENT_VERSION} {reader!r}".encode())
    digest.update(json.dumps([grid.west, grid.north, grid.step, grid.rows, grid.cols]).encode())
    for lookup in (mapping.temperate, mapping.boreal, mapping.mediterranean):
        digest.update(np.ascontiguousarray(lookup, dtype=np.uint8).tobytes())
    zones = file_sha256(mapping.zones) if mapping.zones else ""
    digest.update(json.dumps([mapping.mode, mapping.boreal_latitude, mapping.mediterranean_latitude, zones]).encode())
    return digest.hexdigest()


class BlockCache:
    """Block counts on disk under ``folder``, valid for one grid, mapping and set of raster contents."""

    def __init__(
        self,
        folder: str | Path,
        sources: list[Source],
        grid: LonLatGrid,
        mapping: CoverMapping,
        reader: PixelClasses = MOST_LIKELY,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sources, self.grid, self.reader = sources, grid, reader
        self.common = mapping_digest(grid, mapping, reader)
        self.contents = {
            source.path: "".join(
                file_sha256(path)
                for path in (source.path, source.confidence, source.observations)
                if path and Path(path).is_file()
            )
            for source in sources
        }

    def key(self, block: Block) -> str:
        """SHA-256 of the block, the common digest and the contents of the rasters reaching it."""
        digest = hashlib.sha256(f"{self.common} {block}".encode())
        for source in reaching(self.sources, self.grid.block_bounds(block)):
            digest.update(f"{Path(source.path).name} {self.contents[source.path]}\n".encode())
        return digest.hexdigest()

    def path(self, block: Block) -> Path:
        """``<folder>/<first row>_<first column>.npz``."""
        return self.folder / f"{block[0]}_{block[1]}.npz"

    def load(self, block: Block) -> BlockCounts | None:
        """The block's counts when the cache holds them for today's inputs (one read of the file), else None."""
        try:
            with np.load(self.path(block)) as stored:
                if str(stored["key"]) != self.key(block):
                    return None
                return BlockCounts(**{name: stored[name] for name in stored.files if name != "key"})
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None

    def counts(self, block: Block, aggregate: Callable[[], BlockCounts]) -> tuple[BlockCounts, bool]:
        """(counts, whether reused): the stored ones for today's inputs, else ``aggregate()``'s, stored."""
        counts = self.load(block)
        if counts is not None:
            return counts, True
        counts = aggregate()
        self.store(block, counts)
        return counts, False

    def store(self, block: Block, counts: BlockCounts) -> None:
        """Write a block's counts with their key (temporary name, then rename)."""
        with atomic_path(self.path(block)) as temporary, open(temporary, "wb") as handle:
            arrays: dict[str, Any] = {
                "key": np.array(self.key(block)),
                **counts.arrays(),
            }  # numpy's stub: see pyproject
            np.savez_compressed(handle, **arrays)
