"""The shard index: every tile shard of a run listed once, its headers checked, their statistics merged exactly.

Inputs: the shards block manifests (``shards/blocks/{block}.json``) and the tile headers they name.
Outputs (``shards/``):
- ``index.json``: format, bands, patch, legend digest, a digest of every tile's signature (what training is
  checked against), and per tile with patches its header and array files (names relative to ``shards/``) and
  its training and validation patch counts, tiles sorted by name;
- ``stats.json``: per-band mean and standard deviation of the valid training pixels, class pixel counts, patch
  counts, validation and labelled block counts. The sums are integers, so the statistics equal those computed
  over all patches at once, whatever the order or grouping of the tiles;
- ``split.geojson``: the validation blocks that hold labels.

Reading headers only, it costs milliseconds per tile: a rerun after one tile changed is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from s2ecosg.blocks import read_manifests, signature
from s2ecosg.config import Config
from s2ecosg.errors import InputError
from s2ecosg.extents import extent_text, lonlat_extent, rasters_extent
from s2ecosg.io import read_record, write_json
from s2ecosg.legend import load_legend
from s2ecosg.shards.cut import (
    FORMAT,
    SPLITS,
    Block,
    ShardHeader,
    SplitSums,
    empty_sums,
    read_header,
    split_geojson,
    validation_blocks,
)

LOG = logging.getLogger(__name__)


class ShardEntry(BaseModel):
    """One tile shard of ``index.json``: its header and arrays (names relative to ``shards/``), patch counts."""

    model_config = ConfigDict(extra="forbid")

    tile: str
    header: str
    images: str
    train: int
    val: int
    labels: str  # after the counts: the order index.json has always had


class ShardIndex(BaseModel):
    """``shards/index.json``: what the tile shards share (format, bands, patch, legend) and every shard."""

    model_config = ConfigDict(extra="forbid")

    format: int
    bands: list[str]
    patch: int
    legend: str
    legend_name: str | None = None
    digest: str
    patches: dict[str, int]
    shards: list[ShardEntry]


class ShardStats(BaseModel):
    """``shards/stats.json``: per-band mean and deviation of the training pixels, class pixels, patch counts."""

    model_config = ConfigDict(extra="forbid")

    bands: list[str]
    mean: list[float]
    std: list[float]
    pixels: int
    patches: dict[str, int]
    class_pixels: dict[str, dict[str, int]]
    patch: int
    stride: int
    validation_blocks: int
    blocks: int


def read_index(folder: str | Path) -> ShardIndex:
    """The shard index of a shards folder, checked (one line naming the file and the field at fault)."""
    return read_record(Path(folder) / "index.json", ShardIndex)


def read_stats(folder: str | Path) -> ShardStats:
    """The shard statistics of a shards folder, checked."""
    return read_record(Path(folder) / "stats.json", ShardStats)


CHECKED = ("format", "bands", "patch", "legend")  # header fields a shard must share with its index and config


SHARD_DTYPES = {"images": "uint16", "labels": "uint8"}


def check_header(found: Mapping[str, object], expected: Mapping[str, object], path: str | Path) -> None:
    """Refuse shard fields (a header's or the index's) whose format, bands, patch or legend differ from ``expected``.

    ``found`` holds the :data:`CHECKED` fields and ``dtype``; ``expected`` the ones the run asks for (some may be
    absent: not checked). The error names the file and the field.
    """
    for field in CHECKED:
        if field in expected and found.get(field) != expected[field]:
            raise InputError(
                path,
                f"shard {field} {found.get(field)!r} differs from the run's {expected[field]!r} "
                "(written by another config: rerun the shards)",
            )
    if found.get("dtype") != SHARD_DTYPES:
        raise InputError(path, f"shard dtype {found.get('dtype')!r} is not uint16 images, uint8 labels")


def checked_fields(header: ShardHeader) -> dict[str, object]:
    """The fields of a tile header that :func:`check_header` compares."""
    return header.model_dump(include={*CHECKED, "dtype"})


def merge_sums(total: SplitSums, part: SplitSums) -> None:
    """Add one tile's sums of a split to ``total`` (integers: exact)."""
    total.pixels += part.pixels
    total.sum = [a + b for a, b in zip(total.sum, part.sum, strict=True)]
    total.squares = [a + b for a, b in zip(total.squares, part.squares, strict=True)]
    for class_id, count in part.classes.items():
        total.classes[class_id] = total.classes.get(class_id, 0) + count


@dataclass(frozen=True)
class BandStatistics:
    """Per-band mean and standard deviation (reflectance × 10000) of ``pixels`` valid pixels."""

    bands: list[str]
    mean: list[float]
    std: list[float]
    pixels: int


def band_statistics(sums: SplitSums, bands: list[str]) -> BandStatistics:
    """Mean and standard deviation per band (reflectance × 10000) from exact integer sums.

    The variance is (N·Q − S²) / N², computed in integers, so it is exact before the one division; the standard
    deviation is at least 1 (a constant band must not divide by zero).
    """
    pixels = max(sums.pixels, 1)
    mean = [total / pixels for total in sums.sum]
    variance = [(pixels * q - s * s) / pixels**2 for s, q in zip(sums.sum, sums.squares, strict=True)]
    std = [max(value, 1.0) ** 0.5 for value in variance]
    return BandStatistics(bands, [round(m, 4) for m in mean], [round(s, 4) for s in std], pixels)


Headers = dict[str, tuple[str, ShardHeader]]  # tile → (header path, header)


def read_headers(manifests: list[str]) -> Headers:
    """Tile → (header path, header) of every tile of the shards block manifests."""
    return {
        tile: (entry["header"], read_header(entry["header"]))
        for tile, entry in sorted(read_manifests(manifests).items())
    }


def check_labelled(
    headers: Headers,
    blocks: set[Block],
    counts: dict[str, int],
    labels: str | None,
) -> None:
    """Stop with one line when no tile holds a label, or no patch is left for training."""
    if not blocks and labels:
        images = [header.sources["image"] for _, header in headers.values()]
        raise InputError(
            labels,
            f"no labelled pixel on any staged tile: labels.path {extent_text(lonlat_extent(labels))} does "
            f"not overlap the imagery {extent_text(rasters_extent(images))} (wrong CRS or file?)",
        )
    if not counts["train"]:
        first = next(iter(headers.values()), ("shards", None))[0]
        raise InputError(first, "no training patch has enough labelled pixels (shards.min_labelled)")


@dataclass(frozen=True)
class Merged:
    """The tile headers merged: sums and patch counts per split, labelled split blocks, the shards with patches."""

    sums: dict[str, SplitSums]
    counts: dict[str, int]
    blocks: set[Block]
    shards: list[ShardEntry]


def merge_headers(headers: Headers, expected: Mapping[str, object], bands: int) -> Merged:
    """Check every header against ``expected``; merge sums, counts and labelled blocks; list the tile shards."""
    sums = {split: empty_sums(bands) for split in SPLITS}
    counts, blocks, shards = dict.fromkeys(SPLITS, 0), set(), []
    for tile, (path, header) in headers.items():
        check_header(checked_fields(header), expected, path)
        for split in SPLITS:
            merge_sums(sums[split], header.sums[split])
        blocks |= {(column, row) for column, row in header.labelled_blocks}
        tile_counts = {split: sum(patch[2] == split for patch in header.patches) for split in SPLITS}
        counts = {split: counts[split] + tile_counts[split] for split in SPLITS}
        if header.patches and header.images is not None and header.labels is not None:
            name = Path(path).name
            shards.append(ShardEntry(tile=tile, header=name, images=header.images, labels=header.labels, **tile_counts))
    return Merged(sums, counts, blocks, shards)


def shard_statistics(merged: Merged, bands: list[str], settings: Config, validation: int) -> ShardStats:
    """``stats.json``: the training pixels' band statistics, class pixels and patch counts per split, the split."""
    sums = merged.sums
    classes = {split: dict(sorted(sums[split].classes.items(), key=lambda item: int(item[0]))) for split in SPLITS}
    return ShardStats(
        **vars(band_statistics(sums["train"], bands)),
        patches=merged.counts,
        class_pixels=classes,
        patch=settings.shards.patch,
        stride=settings.shards.stride,
        validation_blocks=validation,
        blocks=len(merged.blocks),
    )


def run_shards_index(settings: Config, manifests: list[str], folder: str) -> ShardIndex:
    """Check every tile header, merge their statistics, write ``index.json``, ``stats.json``, ``split.geojson``.

    Returns the index.
    """
    headers = read_headers(manifests)
    if not headers:
        raise InputError(manifests[0] if manifests else folder, "no tile with imagery and labels to cut shards from")
    bands = next(iter(headers.values()))[1].bands
    legend = load_legend(settings.labels.legend).digest
    expected = {"format": FORMAT, "bands": bands, "patch": settings.shards.patch, "legend": legend}
    merged = merge_headers(headers, expected, len(bands))
    counts, blocks = merged.counts, merged.blocks
    check_labelled(headers, blocks, counts, settings.labels.path)
    validation = validation_blocks(blocks, settings.shards.val_fraction, settings.shards.seed)
    if not counts["val"] and settings.shards.val_fraction > 0:
        LOG.warning(
            "no validation patch: %d of the %d labelled split blocks are held out and no patch fits inside them; "
            "the bundle will be the last epoch's model (another shards.seed, a larger val_fraction or block_size "
            "holds out more)",
            len(validation),
            len(blocks),
        )
    digest = signature([[tile, header.signature] for tile, (_, header) in headers.items()])
    patch = settings.shards.patch
    index = ShardIndex(
        format=FORMAT,
        bands=bands,
        patch=patch,
        legend=legend,
        legend_name=settings.labels.legend,
        digest=digest,
        patches=counts,
        shards=merged.shards,
    )
    stats = shard_statistics(merged, bands, settings, len(validation))
    write_json(Path(folder) / "split.geojson", split_geojson(validation, settings.shards.block_size, settings.grid.crs))
    write_json(Path(folder) / "stats.json", stats.model_dump(mode="json"))
    write_json(Path(folder) / "index.json", index.model_dump(mode="json"))
    LOG.info(
        "shards: %d tile(s), %s patches, %d of %d blocks held out",
        len(index.shards),
        counts,
        len(validation),
        len(blocks),
    )
    return index
