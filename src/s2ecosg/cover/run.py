"""Cover: class ids → ECOSG covers → per-cell majority and fractions on a regular lat/lon grid → SURFEX files.

Inputs: ``predict/{tile}.tif`` (class ids) and ``predict/{tile}.conf.tif`` (confidence), the bundle's legend
(``model/bundle.json``), optionally the original ECOSG cover (``cover.fill``) and a land–sea mask.
Outputs (``cover/``): ``{BASENAME}.dir`` + ``.hdr`` (uint8, nodata 0, covers 1..33, row 1 north), ``.nc``
(CF-1.8: majority, 33 fractions, confidences, source), ``.nam`` (PGD namelists), ``.png`` (quick-look),
``README.md`` (provenance) and ``validation.txt`` (the format rules, checked on the written file).

The output grid covers the HARMONIE domain plus a margin (``domain``), else ``domain.bbox``, else the
predicted pixels. Each 10 m pixel centre is placed in the cell containing it, as SURFEX places cover pixels
in model cells; the cell takes the most frequent cover (ties: the lower number). Cells without a predicted
pixel are filled (:mod:`s2ecosg.cover.fill`). The grid is processed in blocks, so memory does not grow with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import MOST_LIKELY, CoverMapping, Source, chunk_windows, open_sources, pixel_area
from s2ecosg.cover.cache import BlockCache
from s2ecosg.cover.fill import GapFiller, check_overlap
from s2ecosg.cover.members import MemberDraw
from s2ecosg.cover.parallel import CoverJob, block_output, block_outputs
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.cover.readme import readme_text
from s2ecosg.cover.writers import WRITERS, CoverWriter, DirectWriter, WriterFactory
from s2ecosg.domain import HarmonieDomain, resolve_domain
from s2ecosg.errors import InputError
from s2ecosg.io import atomic_path, open_raster
from s2ecosg.legend import Legend
from s2ecosg.lonlat import LonLatGrid, snap_grid
from s2ecosg.validate import empty_cells_line, empty_domain_cells, extent_problems, validate_cover
from s2ecosg.values import degrees

LOG = logging.getLogger(__name__)
BLOCK_CELLS = 256
# GDAL's block cache (by default 5 % of the node's RAM) would fill with the input up to that size; a chunk is read
# once per output block it reaches, so 64 MB keeps each process's memory flat in the domain. A user's value wins.
GDAL_CACHE_MB = "64"


def valid_pixel_box(source: Source) -> tuple[float, float, float, float] | None:
    """(left, bottom, right, top) in the source CRS around its non-zero pixels, read chunk by chunk."""
    from rasterio.windows import Window  # 0.2 s to import: loaded where used

    first_row = first_column = np.inf
    last_row = last_column = -np.inf
    with open_raster(source.path) as raster:
        for window in chunk_windows(Window(0, 0, source.width, source.height)):
            ids = raster.read(1, window=window)
            rows, columns = np.nonzero(ids.any(axis=1))[0], np.nonzero(ids.any(axis=0))[0]
            if rows.size:
                first_row, last_row = min(first_row, window.row_off + rows[0]), max(last_row, window.row_off + rows[-1])
                first_column = min(first_column, window.col_off + columns[0])
                last_column = max(last_column, window.col_off + columns[-1])
    if first_row == np.inf:
        return None
    transform = source.transform
    return (
        transform.c + first_column * transform.a,
        transform.f + (last_row + 1) * transform.e,
        transform.c + (last_column + 1) * transform.a,
        transform.f + first_row * transform.e,
    )


def predicted_extent(sources: list[Source]) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees around the valid pixels of all sources."""
    from rasterio.warp import transform_bounds  # 0.2 s to import: loaded where used

    boxes = []
    for source in sources:
        box = valid_pixel_box(source)
        if box is not None:
            boxes.append(transform_bounds(source.crs, "EPSG:4326", *box, densify_pts=21))
    if not boxes:
        raise InputError(sources[0].path if sources else "predict", "no predicted pixel in any tile; nothing to write")
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def output_grid(
    settings: CoverConfig, domain_settings: DomainConfig, sources: list[Source]
) -> tuple[LonLatGrid, HarmonieDomain | None]:
    """The output grid and the HARMONIE domain (or None) for a run."""
    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    if domain is not None:
        extent = domain.lonlat_extent(domain_settings.margin)
    elif domain_settings.bbox is not None:
        extent = domain_settings.bbox
    else:
        extent = predicted_extent(sources)
    return snap_grid(extent, degrees(settings.resolution_deg)), domain


def namelist(basename: str, domain: HarmonieDomain | None) -> str:
    """PGD namelist lines: ECOSG covers from this file, and the domain's grid when there is one."""
    lines = f"&NAM_FRAC LECOSG=.TRUE. /\n&NAM_COVER YCOVER='{basename}', YCOVERFILETYPE='DIRECT' /\n"
    return lines + (domain.namelists() if domain is not None else "")


@dataclass(frozen=True)
class CoverRequest:
    """What one cover (or one ensemble member) is made from, and where it goes.

    Attributes:
        rasters: Each predicted tile's class raster (or ranked-classes raster: soft fractions and members).
        legend: The bundle's legend (class ids → covers).
        settings: The ``cover`` section.
        domain: The ``domain`` section (the output grid: a HARMONIE domain, a box, else the predicted extent).
        basename: ``cover/<BASENAME>`` (no suffix).
        provenance: Recorded in the netCDF, the header comment and the README.
        confidences: Each tile's confidence raster or None (the netCDF's model confidence); none by default.
        observations: Each tile's stage count raster or None (the netCDF's data score); none by default.
        workers: Processes aggregating blocks of the output grid.
        cache: Folder of block counts kept for the next run (:mod:`s2ecosg.cover.cache`), or None.
        reader: How pixels become classes (:mod:`s2ecosg.cover.readers`): the most likely class, probability-weighted
            classes (soft fractions), or an ensemble member's draws (then only the DIRECT pair and its namelist).
        ensemble: Members written before (the netCDF gets the between-member spread of each fraction), or None.
    """

    rasters: list[str]
    legend: Legend
    settings: CoverConfig
    domain: DomainConfig
    basename: str
    provenance: dict[str, str]
    confidences: list[str | None] | None = None
    observations: list[str | None] | None = None
    workers: int = 1
    cache: str | None = None
    reader: PixelClasses = MOST_LIKELY
    ensemble: Ensemble | None = None


def run_cover(request: CoverRequest) -> dict[str, int]:
    """Aggregate the predicted rasters and write every cover output; return the number of cells by origin.

    The DIRECT pair and the netCDF are written under temporary names and checked there (format rules, and for a
    HARMONIE domain its empty cells against ``cover.max_empty_fraction``): a cover that fails a check is never
    renamed into place, nor is any other output written.
    """
    settings, basename, reader, provenance = request.settings, request.basename, request.reader, request.provenance
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)  # before GDAL's first read; workers inherit it
    rasters = request.rasters
    sources = open_sources(rasters, request.confidences or [None] * len(rasters), request.observations)
    grid, domain = output_grid(settings, request.domain, sources)
    LOG.info("output grid: %d rows × %d cols of %.8f°, edges %s", grid.rows, grid.cols, grid.step, grid.bounds)
    mapping = CoverMapping.from_legend(request.legend, settings)
    if mapping.zones:
        check_overlap(mapping.zones, "cover.climate", grid.bounds)
    job = cover_job(sources, grid, mapping, settings, request.cache, reader, request.ensemble)
    member = isinstance(reader, MemberDraw)
    with contextlib.ExitStack() as stack:
        minimum = settings.min_clear_observations
        writers, counts = write_blocks(stack, job, request.workers, basename, provenance, minimum)
        direct = writers["direct"]
        if not isinstance(direct, DirectWriter):
            raise TypeError("the DIRECT pair is written by DirectWriter")
        report = check_written(basename, direct.paths, counts, domain, request.domain, settings)
        write_side_files(basename, grid, domain, provenance, counts, readme=not member)
    if not member:
        with atomic_path(Path(basename).parent / "validation.txt") as temporary:
            temporary.write_text("\n".join(report) + "\n")
    LOG.info("cover %s: cells by origin %s", basename, counts)
    return counts


def cover_job(
    sources: list[Source],
    grid: LonLatGrid,
    mapping: CoverMapping,
    settings: CoverConfig,
    cache: str | None,
    reader: PixelClasses,
    ensemble: Ensemble | None,
) -> CoverJob:
    """What every block needs: the inputs, the gap filler (checked), the block caches of this cover and its members."""
    filler = GapFiller(settings.fill, settings.sea_mask, settings.sea_value)
    filler.check(grid)
    block_cache = BlockCache(cache, sources, grid, mapping, reader) if cache else None
    members = ensemble.caches(grid, mapping) if ensemble else ()
    return CoverJob(sources, grid, mapping, filler, block_cache, reader, members, pixel_area(sources))


@dataclass(frozen=True)
class Ensemble:
    """Members written before the deterministic cover: their ranked-classes rasters, and each one's cache and draw."""

    rasters: list[str]
    members: list[tuple[str, MemberDraw]]

    def caches(self, grid: LonLatGrid, mapping: CoverMapping) -> tuple[BlockCache, ...]:
        """The members' block caches on this grid (their counts are read back, never aggregated twice)."""
        sources = open_sources(self.rasters, [None] * len(self.rasters))
        return tuple(BlockCache(folder, sources, grid, mapping, draw) for folder, draw in self.members)


def write_blocks(
    stack: contextlib.ExitStack, job: CoverJob, workers: int, basename: str, provenance: dict[str, str], min_clear: int
) -> tuple[dict[str, CoverWriter], dict[str, int]]:
    """Feed every block of the grid to every writer (files still temporary); return them and the cells by origin.

    The counts also hold the land cells (covers 4..33) and those resting on fewer than ``min_clear`` clear
    observations (or on none: filled cells), for the README's data score.
    """
    blocks = list(job.grid.blocks(BLOCK_CELLS))
    outputs = stack.enter_context(block_outputs(job, blocks, workers, block_output))  # first: the workers start at once
    # A member writes the DIRECT pair only.
    formats: dict[str, WriterFactory] = {"direct": DirectWriter} if isinstance(job.reader, MemberDraw) else WRITERS
    writers = {name: writer(stack, basename, job.grid, provenance) for name, writer in formats.items()}
    origin, reused, land, thin = np.zeros(4, dtype=np.int64), 0, 0, 0
    for block, values, from_cache in tqdm(outputs, total=len(blocks), desc="cover", unit="block", mininterval=10):
        for writer in writers.values():
            writer.write(block, values)
        origin += np.bincount(values["source"].ravel(), minlength=4)
        reused += from_cache
        on_land = values["cover"] > 3
        land += int(on_land.sum())
        observations = values["clear_observations"]
        thin += int((on_land & ((observations < min_clear) | (observations == 255))).sum())
    for writer in writers.values():
        writer.finish()
    if job.cache is not None:
        LOG.info("blocks aggregated: %d, reused unchanged: %d", len(blocks) - reused, reused)
    counts = dict(zip(("no cover", "predicted", "ECOSG fill", "sea mask"), origin.tolist(), strict=True))
    return writers, counts | {"land": land, f"land on fewer than {min_clear} clear observations": thin}


def check_written(
    basename: str,
    paths: tuple[Path, Path],
    counts: dict[str, int],
    domain: HarmonieDomain | None,
    domain_settings: DomainConfig,
    settings: CoverConfig,
) -> list[str]:
    """Check the written (still temporary) pair; return the lines of ``validation.txt`` or raise.

    Raises :class:`InputError` when the pair breaks a format rule, when no cell has a cover, or when more of the
    HARMONIE domain's cells than ``cover.max_empty_fraction`` have no valid pixel (SURFEX would interpolate them).
    """
    problems = validate_cover(basename, paths)
    if problems:
        raise InputError(f"{basename}.dir", f"written cover breaks the format rules: {problems[0]}")
    if counts["predicted"] + counts["ECOSG fill"] + counts["sea mask"] == 0:
        raise InputError(
            f"{basename}.dir", "no cell of the output grid has a cover: no predicted pixel inside it and no fill"
        )
    if domain is None:
        cells = sum(counts[name] for name in ("no cover", "predicted", "ECOSG fill", "sea mask"))
        return ["ok", f"cells without a cover: {counts['no cover']} of {cells} (no HARMONIE domain)"]
    empty, cells = empty_domain_cells(*paths, domain)
    report = extent_problems(paths[0], domain, domain_settings.margin) + (
        [empty_cells_line(empty, cells)] if empty else []
    )
    report = report or ["ok"]
    report.append(f"empty domain cells: {empty} of {cells} (cover.max_empty_fraction {settings.max_empty_fraction})")
    if empty > settings.max_empty_fraction * cells:
        raise InputError(
            f"{basename}.dir",
            f"{empty} of {cells} cells of domain {domain.name} have no valid pixel ({100 * empty / cells:.1f} % > "
            f"cover.max_empty_fraction {settings.max_empty_fraction}); add imagery or cover.fill, or raise the limit",
        )
    return report


def write_side_files(
    basename: str,
    grid: LonLatGrid,
    domain: HarmonieDomain | None,
    provenance: dict[str, str],
    counts: dict[str, int],
    readme: bool = True,
) -> None:
    """The namelist and (unless ``readme`` is False) the README of the cover folder."""
    name = Path(basename).name
    text = namelist(name, domain)
    with atomic_path(f"{basename}.nam") as temporary:
        temporary.write_text(text)
    if not readme:
        return
    with atomic_path(Path(basename).parent / "README.md") as temporary:
        temporary.write_text(readme_text(name, grid, provenance, text, counts))


def run_members(request: CoverRequest) -> Ensemble | None:
    """Write the ``cover.members`` ensemble members ``<basename>_Mnn``; their rasters, caches and draws, or None.

    ``request`` names the ranked-classes rasters, the legend, sections, basename, provenance and workers of the
    deterministic cover; its ``cache`` is the folder under which each member keeps its block counts (``Mnn/``).
    """
    settings, members = request.settings, []
    if request.cache is None:
        raise ValueError("run_members needs a cache folder: the deterministic cover reads the members' counts there")
    for number in range(1, settings.members + 1):
        member = MemberDraw(number, settings.member_length_m, settings.member_seed)
        folder, name = str(Path(request.cache) / f"M{number:02d}"), f"{request.basename}_M{number:02d}"
        run_cover(dataclasses.replace(request, basename=name, cache=folder, reader=member))
        LOG.info("member %d of %d: %s.dir", number, settings.members, name)
        members.append((folder, member))
    return Ensemble(request.rasters, members) if members else None
