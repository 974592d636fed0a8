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
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from s2ecosg.blocks import read_manifests, signature
from s2ecosg.config import Config
from s2ecosg.errors import InputError
from s2ecosg.extents import extent_text, lonlat_extent, rasters_extent
from s2ecosg.io import read_json, write_json
from s2ecosg.legend import load_legend
from s2ecosg.shards.cut import FORMAT, SPLITS, empty_sums, read_header, split_geojson, validation_blocks

LOG = logging.getLogger(__name__)
Index = dict[str, Any]  # index.json as written: see ShardIndex


class ShardEntry(BaseModel):
    """One tile shard of ``index.json``: its header and arrays (names relative to ``shards/``), patch counts."""

    model_config = ConfigDict(extra="forbid")

    tile: str
    header: str
    images: str
    labels: str
    train: int
    val: int


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


Record = TypeVar("Record", bound=BaseModel)


def read_record(path: Path, kind: type[Record]) -> Record:
    """A JSON file read as ``kind``; a missing, broken or foreign one is one line naming the file and the field."""
    try:
        return kind.model_validate(read_json(path))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(path, f"{field}: {first['msg']} (written by another version of s2ecosg?)") from None


CHECKED = ("format", "bands", "patch", "legend")  # header fields a shard must share with its index and config


def check_header(header: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Refuse a shard header whose format, bands, patch or legend differ from ``expected``, naming the field."""
    for field in CHECKED:
        if field in expected and header.get(field) != expected[field]:
            raise InputError(
                path,
                f"shard {field} {header.get(field)!r} differs from the run's {expected[field]!r} "
                "(written by another config: rerun the shards)",
            )
    if header.get("dtype") != {"images": "uint16", "labels": "uint8"}:
        raise InputError(path, f"shard dtype {header.get('dtype')!r} is not uint16 images, uint8 labels")


def merge_sums(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one tile's sums of a split to ``total`` (integers: exact)."""
    total["pixels"] += part["pixels"]
    total["sum"] = [a + b for a, b in zip(total["sum"], part["sum"], strict=True)]
    total["squares"] = [a + b for a, b in zip(total["squares"], part["squares"], strict=True)]
    for class_id, count in part["classes"].items():
        total["classes"][class_id] = total["classes"].get(class_id, 0) + count


def band_statistics(sums: dict[str, Any], bands: list[str]) -> dict[str, Any]:
    """Mean and standard deviation per band (reflectance × 10000) from exact integer sums.

    The variance is (N·Q − S²) / N², computed in integers, so it is exact before the one division; the standard
    deviation is at least 1 (a constant band must not divide by zero).
    """
    pixels = max(sums["pixels"], 1)
    mean = [total / pixels for total in sums["sum"]]
    variance = [(pixels * q - s * s) / pixels**2 for s, q in zip(sums["sum"], sums["squares"], strict=True)]
    std = [max(value, 1.0) ** 0.5 for value in variance]
    return {"bands": bands, "mean": [round(m, 4) for m in mean], "std": [round(s, 4) for s in std], "pixels": pixels}


def read_headers(manifests: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Tile → (header path, header) of every tile of the shards block manifests."""
    return {
        tile: (entry["header"], read_header(entry["header"]))
        for tile, entry in sorted(read_manifests(manifests).items())
    }


def check_labelled(
    headers: dict[str, tuple[str, dict[str, Any]]],
    blocks: set[tuple[int, int]],
    counts: dict[str, int],
    labels: str | None,
) -> None:
    """Stop with one line when no tile holds a label, or no patch is left for training."""
    if not blocks and labels:
        images = [header["sources"]["image"] for _, header in headers.values()]
        raise InputError(
            labels,
            f"no labelled pixel on any staged tile: labels.path {extent_text(lonlat_extent(labels))} does "
            f"not overlap the imagery {extent_text(rasters_extent(images))} (wrong CRS or file?)",
        )
    if not counts["train"]:
        first = next(iter(headers.values()), ("shards", {}))[0]
        raise InputError(first, "no training patch has enough labelled pixels (shards.min_labelled)")


def merge_headers(headers: dict[str, tuple[str, dict[str, Any]]], expected: dict[str, Any]) -> dict[str, Any]:
    """Check every header against ``expected``; merge sums, counts and labelled blocks; list the tile shards."""
    sums = {split: empty_sums(len(expected["bands"])) for split in SPLITS}
    counts, blocks, shards = dict.fromkeys(SPLITS, 0), set(), []
    for tile, (path, header) in headers.items():
        check_header(header, expected, path)
        for split in SPLITS:
            merge_sums(sums[split], header["sums"][split])
        blocks |= {tuple(block) for block in header["labelled_blocks"]}
        tile_counts = {split: sum(patch[2] == split for patch in header["patches"]) for split in SPLITS}
        counts = {split: counts[split] + tile_counts[split] for split in SPLITS}
        if header["patches"]:
            shards.append({"tile": tile, "header": Path(path).name, "images": header["images"]} | tile_counts)
            shards[-1]["labels"] = header["labels"]
    return {"sums": sums, "counts": counts, "blocks": blocks, "shards": shards}


def run_shards_index(settings: Config, manifests: list[str], folder: str) -> Index:
    """Check every tile header, merge their statistics, write ``index.json``, ``stats.json``, ``split.geojson``.

    Returns the index.
    """
    headers = read_headers(manifests)
    if not headers:
        raise InputError(manifests[0] if manifests else folder, "no tile with imagery and labels to cut shards from")
    bands = next(iter(headers.values()))[1]["bands"]
    expected = {"format": FORMAT, "bands": bands, "patch": settings.shards.patch}
    expected["legend"] = load_legend(settings.labels.legend).digest
    merged = merge_headers(headers, expected)
    counts, blocks, sums = merged["counts"], merged["blocks"], merged["sums"]
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
    digest = signature([[tile, header["signature"]] for tile, (_, header) in headers.items()])
    index = expected | {"legend_name": settings.labels.legend, "digest": digest, "patches": counts}
    index["shards"] = merged["shards"]
    classes = {split: dict(sorted(sums[split]["classes"].items(), key=lambda item: int(item[0]))) for split in SPLITS}
    stats = band_statistics(sums["train"], bands) | {"patches": counts, "class_pixels": classes}
    stats |= {"patch": settings.shards.patch, "stride": settings.shards.stride}
    stats |= {"validation_blocks": len(validation), "blocks": len(blocks)}
    write_json(Path(folder) / "split.geojson", split_geojson(validation, settings.shards.block_size, settings.grid.crs))
    write_json(Path(folder) / "stats.json", stats)
    write_json(Path(folder) / "index.json", index)
    LOG.info(
        "shards: %d tile(s), %s patches, %d of %d blocks held out",
        len(index["shards"]),
        counts,
        len(validation),
        len(blocks),
    )
    return index
