"""Job blocks: one stage, labels or predict job covers a block of grid tiles; files stay per tile.

A block job writes each tile's files atomically, tagged with a signature of everything the tile was made from
(its scene list and settings, the label file, the bundle and the staged tiles it read), and then the block's
manifest ``<stage>/blocks/{block}.json`` — the job's only Snakemake output — listing every tile with its files and
signature. A job killed halfway leaves complete tiles and no manifest; its rerun skips the tiles whose signature
still matches and redoes the rest. A rerun after a new scene likewise remakes only the tiles it changed, so the
block is the unit of scheduling and the tile stays the unit of work and of files.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from s2ecosg.errors import InputError
from s2ecosg.io import read_json, write_json

LOG = logging.getLogger(__name__)
T = TypeVar("T")
SIGNATURE_TAG = "S2ECOSG_INPUTS"  # GeoTIFF metadata item holding a tile's signature
# A tile's entry in a block manifest: "signature" → the tile's input signature, each role ("image", "count",
# "labels", "classes", "header", …) → the path of the file the block job wrote for it.
TileEntry = dict[str, str]


def signature(*parts: object) -> str:
    """Short stable hash of JSON-serialisable parts (settings, scene lists, file stamps, other signatures)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def tile_signature_of(path: str | Path) -> str | None:
    """The signature a tile file was written with; None when the file is absent, unreadable or untagged."""
    import rasterio  # 0.2 s to import: loaded where used

    if not Path(path).is_file():
        return None
    try:
        with rasterio.open(path) as source:
            return source.tags().get(SIGNATURE_TAG)
    except rasterio.errors.RasterioError:
        return None


def up_to_date(paths: list[str], wanted: str) -> bool:
    """True when every file of a tile exists and carries the signature ``wanted``."""
    return all(tile_signature_of(path) == wanted for path in paths)


def write_manifest(path: str | Path, block: str, tiles: dict[str, TileEntry]) -> None:
    """Write a block's manifest: ``{"block": name, "tiles": {tile: {"signature": …, <role>: path, …}}}``."""
    write_json(path, {"block": block, "tiles": dict(sorted(tiles.items()))})


def read_manifests(paths: list[str]) -> dict[str, TileEntry]:
    """Tiles of several block manifests merged: tile → its entry (signature and file paths)."""
    tiles: dict[str, TileEntry] = {}
    for path in paths:
        manifest = read_json(path)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("tiles"), dict):
            raise InputError(path, "not a block manifest (no tiles)")
        for tile, entry in manifest["tiles"].items():
            if not isinstance(entry, dict) or not all(isinstance(value, str) for value in entry.values()):
                raise InputError(path, f"tile {tile}: not a manifest entry (signature and file paths)")
            tiles[tile] = entry
    return tiles


def block_name(path: str | Path) -> str:
    """The block a manifest or scene list belongs to, from its file name (``E4650N2500.json`` → ``E4650N2500``)."""
    return Path(path).name.split(".")[0]


def report(stage: str, block: str, made: list[str], kept: list[str]) -> None:
    """Log what a block job did: tiles made and tiles kept because they were up to date."""
    LOG.info(
        "%s block %s: %d tile(s) made (%s), %d up to date",
        stage,
        block,
        len(made),
        ",".join(made) or "none",
        len(kept),
    )


def lookahead(items: Iterator[T], ahead: int) -> Iterator[T]:
    """The items of ``items`` in order, drawing up to ``ahead`` more before each is handed out."""
    waiting: collections.deque[T] = collections.deque()
    for item in items:
        waiting.append(item)
        if len(waiting) > ahead:
            yield waiting.popleft()
    yield from waiting
