"""What changed between two cover products: cells and km² per ECOSG cover, transitions, uncertain flips apart.

Both products are cover folders (``results/<run>/cover`` or a published ``<stamp>/``) on the same DIRECT grid. A
cell *changed* where its cover differs. It counts as a *confident* change only when, in the new product's netCDF,
the new cover leads the old one among the cell's pixels by at least ``nightly.change_margin`` (share of the cell's
pixels) and the model's mean confidence there is at least ``nightly.change_confidence``; other changed cells are
*uncertain flips* (near-ties between two covers, float noise of a rerun), counted apart. Cells filled from the
original ECOSG on both sides compare their fill. Areas are on the authalic sphere. The grid is read in strips of
rows, so memory does not grow with the domain.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from numpy.typing import NDArray

from s2ecosg.arrays import Integers, Mask
from s2ecosg.cover.writers.table import FRACTION_SCALE, MISSING_SHARE, ecosg_table
from s2ecosg.errors import InputError
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import EARTH_RADIUS
from s2ecosg.surfex import open_cover

STRIP_ROWS = 512  # at most; fewer on wide grids (STRIP_CELLS), so memory does not grow with the domain's width
STRIP_CELLS = 2**20  # cells of a strip: (33, cells) share codes and their masks, ≈ 100 MB in all
WATER = (0, 1, 2, 3)  # no cover, sea, lakes, rivers: a cell is land when its old or new cover is none of these


def product_base(folder: str | Path) -> Path:
    """The deterministic cover's base name in a cover folder: its one ``.dir`` that is not a member's."""
    covers = [
        path
        for path in sorted(Path(folder).glob("*.dir"))
        if not path.name.startswith(".") and "_M" not in path.stem[-4:]
    ]
    if len(covers) != 1:
        raise InputError(folder, f"a cover product holds one cover pair (.dir + .hdr), found {len(covers)}")
    return covers[0].with_suffix("")


def member_bases(base: Path) -> dict[int, Path]:
    """The ensemble members beside a cover: number → base name ``<base>_Mnn``."""
    found = {}
    for path in base.parent.glob(f"{base.name}_M[0-9][0-9].dir"):
        found[int(path.stem[-2:])] = path.with_suffix("")
    return dict(sorted(found.items()))


def read_rows(base: Path, columns: int, rows: slice[int, int, int]) -> NDArray[np.uint8]:
    """Rows of a DIRECT ``.dir`` read with ``pread`` (pages of a memory map would stay resident as the grid grows)."""
    with open(f"{base}.dir", "rb") as handle:
        data = os.pread(handle.fileno(), (rows.stop - rows.start) * columns, rows.start * columns)
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, columns)


def row_areas_km2(header: dict[str, float], first: int, rows: int) -> NDArray[np.float64]:
    """(rows, 1) km² of one cell of each row ``first`` … of a DIRECT grid (authalic sphere)."""
    step_lat = (header["north"] - header["south"]) / header["rows"]
    step_lon = (header["east"] - header["west"]) / header["cols"]
    edges = np.radians(header["north"] - (first + np.arange(rows + 1)) * step_lat)
    area = EARTH_RADIUS**2 * math.radians(step_lon) * (np.sin(edges[:-1]) - np.sin(edges[1:]))
    return (area / 1e6)[:, None]


@dataclass
class Tally:
    """Counts over the grid: transitions (old × new, cells and km²) split into confident and uncertain."""

    confident: NDArray[np.int64] = field(default_factory=lambda: np.zeros((N_COVERS + 1, N_COVERS + 1), np.int64))
    uncertain: NDArray[np.int64] = field(default_factory=lambda: np.zeros((N_COVERS + 1, N_COVERS + 1), np.int64))
    confident_km2: NDArray[np.float64] = field(default_factory=lambda: np.zeros((N_COVERS + 1, N_COVERS + 1)))
    uncertain_km2: NDArray[np.float64] = field(default_factory=lambda: np.zeros((N_COVERS + 1, N_COVERS + 1)))
    land: int = 0
    land_km2: float = 0.0
    changed_map: NDArray[np.uint8] | None = None  # 0 unchanged, 1 confident, 2 uncertain (for the picture)

    def add(self, old: Integers, new: Integers, confident: Mask, areas: NDArray[np.float64]) -> None:
        """Count one strip: ``confident`` marks the confident changes among the changed cells."""
        changed = old != new
        land = ~np.isin(old, WATER) | ~np.isin(new, WATER)
        self.land += int(land.sum())
        self.land_km2 += float((land * areas).sum())
        pair = old.astype(np.int64) * (N_COVERS + 1) + new
        for mask, cells, km2 in (
            (changed & confident, self.confident, self.confident_km2),
            (changed & ~confident, self.uncertain, self.uncertain_km2),
        ):
            size = (N_COVERS + 1) ** 2
            cells += np.bincount(pair[mask], minlength=size).reshape(cells.shape)
            weights = np.broadcast_to(areas, old.shape)[mask]
            km2 += np.bincount(pair[mask], weights=weights, minlength=size).reshape(km2.shape)


def confident_changes(
    old: Integers, new: Integers, fraction: Integers, confidence: Integers, margin: float, floor: float
) -> Mask:
    """Where a changed cell's new cover leads the old one by ``margin`` and the model's confidence is ``floor``+.

    Args:
        old: (rows, cols) covers before.
        new: (rows, cols) covers after.
        fraction: (33, rows, cols) uint8 share codes of the new product (255 = missing).
        confidence: (rows, cols) uint8 share code of the new product's mean model confidence (255 = missing).
        margin: Least lead of the new cover over the old one (share of the cell's pixels).
        floor: Least mean confidence (0: not asked for).
    """
    rows, columns = np.indices(old.shape)

    def share_of(cover: Integers) -> NDArray[np.float64]:  # the share code of ``cover`` in each cell, as a share
        code = fraction[np.maximum(cover, 1) - 1, rows, columns]
        return np.where((cover > 0) & (code != MISSING_SHARE), code, 0) * FRACTION_SCALE

    sure = np.where(confidence == MISSING_SHARE, 1.0, confidence * FRACTION_SCALE) >= floor
    # A cell without pixels in the new product (filled on both sides) has no shares: its fill decides alone.
    no_pixels = ~((fraction != MISSING_SHARE) & (fraction != 0)).any(axis=0)
    return ((share_of(new) - share_of(old) >= margin - 1e-9) & sure) | no_pixels


@dataclass(frozen=True)
class ChangeSettings:
    """When a change is confident, and how many clear observations a cell should rest on.

    ``margin`` and ``confidence`` are ``nightly.change_margin`` and ``nightly.change_confidence``; ``min_clear``
    is ``cover.min_clear_observations``.
    """

    margin: float = 0.1
    confidence: float = 0.0
    min_clear: int = 3


def compare(old_base: Path, new_base: Path, settings: ChangeSettings, picture_step: int = 1) -> Tally:
    """Tally the changes from ``old_base`` to ``new_base`` (DIRECT pairs; the new one's netCDF beside it).

    The change map keeps every ``picture_step``-th row and column for the picture (a power of two up to 512, so
    that every strip starts on a kept row).
    """
    import netCDF4  # 0.2 s to import: loaded where used

    old, old_header = open_cover(old_base)
    new, new_header = open_cover(new_base)
    keys = ("north", "south", "west", "east", "rows", "cols")
    if any(not math.isclose(old_header[key], new_header[key], abs_tol=1e-9) for key in keys):
        raise InputError(f"{new_base}.hdr", f"another grid than {old_base}.hdr: the products cannot be compared")
    step = min(STRIP_ROWS, 1 << max(0, picture_step - 1).bit_length())
    tally = Tally()
    tally.changed_map = np.zeros((math.ceil(old.shape[0] / step), math.ceil(old.shape[1] / step)), np.uint8)
    netcdf = Path(f"{new_base}.nc")
    dataset = netCDF4.Dataset(netcdf) if netcdf.is_file() else None
    try:
        if dataset is not None:
            for name in ("fraction", "model_confidence"):
                dataset[name].set_auto_maskandscale(False)
        strip = min(STRIP_ROWS, max(step, STRIP_CELLS // old.shape[1] // step * step))  # a multiple of the step
        for first in range(0, old.shape[0], strip):
            rows = slice(first, min(first + strip, old.shape[0]))
            before, after = read_rows(old_base, old.shape[1], rows), read_rows(new_base, old.shape[1], rows)
            if dataset is None:  # no shares to judge by: every change counts
                confident = np.ones(before.shape, bool)
            else:
                fraction, confidence = dataset["fraction"][:, rows, :], dataset["model_confidence"][rows, :]
                confident = confident_changes(before, after, fraction, confidence, settings.margin, settings.confidence)
            tally.add(before, after, confident, row_areas_km2(new_header, first, before.shape[0]))
            kept = np.where(before != after, np.where(confident, 1, 2), 0).astype(np.uint8)[::step, ::step]
            tally.changed_map[first // step : first // step + kept.shape[0]] = kept
    finally:
        if dataset is not None:
            dataset.close()
    return tally


class CoverChange(TypedDict):
    """One cover's confident gains and losses (cells and km²)."""

    name: str
    gained_cells: int
    lost_cells: int
    gained_km2: float
    lost_km2: float


# "from" is a Python keyword: the functional form keeps the JSON key.
Transition = TypedDict("Transition", {"from": int, "to": int, "cells": int, "km2": float})


class ChangeSummary(TypedDict):
    """The figures of a comparison, as ``changes.json`` holds them (areas in km², shares in % of the land cells)."""

    land_cells: int
    land_km2: float
    changed_cells: int
    changed_km2: float
    changed_percent: float
    uncertain_cells: int
    uncertain_km2: float
    uncertain_percent: float
    covers: dict[str, CoverChange]  # by cover number, covers with a confident gain or loss only
    transitions: list[Transition]
    uncertain_transitions: list[Transition]


def summary(tally: Tally) -> ChangeSummary:
    """``changes.json``'s figures: totals, per cover gained and lost, transitions (confident and uncertain)."""
    names = {int(row["cover"]): row["name"] for row in ecosg_table()}
    confident, uncertain = int(tally.confident.sum()), int(tally.uncertain.sum())
    land = max(tally.land, 1)
    covers: dict[str, CoverChange] = {}
    for cover in range(1, N_COVERS + 1):
        gained, lost = int(tally.confident[:, cover].sum()), int(tally.confident[cover, :].sum())
        if gained or lost:
            covers[str(cover)] = {
                "name": names[cover],
                "gained_cells": gained,
                "lost_cells": lost,
                "gained_km2": round(float(tally.confident_km2[:, cover].sum()), 3),
                "lost_km2": round(float(tally.confident_km2[cover, :].sum()), 3),
            }
    return {
        "land_cells": tally.land,
        "land_km2": round(tally.land_km2, 3),
        "changed_cells": confident,
        "changed_km2": round(float(tally.confident_km2.sum()), 3),
        "changed_percent": round(100 * confident / land, 4),
        "uncertain_cells": uncertain,
        "uncertain_km2": round(float(tally.uncertain_km2.sum()), 3),
        "uncertain_percent": round(100 * uncertain / land, 4),
        "covers": covers,
        "transitions": transitions(tally.confident, tally.confident_km2),
        "uncertain_transitions": transitions(tally.uncertain, tally.uncertain_km2),
    }


def transitions(cells: NDArray[np.int64], km2: NDArray[np.float64]) -> list[Transition]:
    """The non-empty (from, to) pairs, largest area first."""
    pairs = [
        Transition(
            {"from": int(old), "to": int(new), "cells": int(cells[old, new]), "km2": round(float(km2[old, new]), 3)}
        )
        for old, new in zip(*np.nonzero(cells), strict=True)
    ]
    return sorted(pairs, key=lambda pair: (-pair["km2"], pair["from"], pair["to"]))


def thin_cells(base: Path, min_clear: int) -> tuple[int, int]:
    """(land cells resting on fewer than ``min_clear`` clear observations or none, land cells) of a cover's netCDF."""
    import netCDF4  # 0.2 s to import: loaded where used

    thin = land = 0
    with netCDF4.Dataset(f"{base}.nc") as dataset:
        for name in ("cover", "clear_observations"):
            dataset[name].set_auto_maskandscale(False)
        rows, columns = dataset.dimensions["lat"].size, dataset.dimensions["lon"].size
        strip = max(1, min(STRIP_ROWS, STRIP_CELLS // columns))
        for first in range(0, rows, strip):
            cover = dataset["cover"][first : first + strip, :]
            observations = dataset["clear_observations"][first : first + strip, :]
            on_land = ~np.isin(cover, WATER)
            land += int(on_land.sum())
            thin += int((on_land & ((observations < min_clear) | (observations == 255))).sum())
    return thin, land
