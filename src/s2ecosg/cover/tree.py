"""The ECOCLIMAP-SG data tree that HARMONIE, DEODE and pysurfex read, with the run's cover in it.

Every consumer reads the cover from one fixed place of an ECOSG tree and is pointed at the tree's root
(HARMONIE ``ECOSG_DATA_PATH``, DEODE ``platform.ecosg_data_path``, pysurfex ``@ecosg_data_path@``):
``<tree>/COVER/ecosg_final_map.dir`` + ``.hdr``. The tree written here holds that pair and a link to every other
entry of the service's own tree (``cover.ecosg_tree``: LAI, albedo, tree height … stay as the service has them),
so pointing the data path at it is the only change. The pair is either the run's cover itself (``domain``) or the
service's own map patched with the run's predictions on the map's own grid (``patch``, :mod:`s2ecosg.cover.patch`).
Ensemble members get trees of their own, ``<tree>_Mnn``, sharing everything but ``COVER``.

A tree is assembled under a temporary name and renamed into place whole; the pair in it passes the same checks as
the cover (:func:`s2ecosg.validate.validate_cover`) first.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from s2ecosg.config import Config, DomainConfig
from s2ecosg.cover.aggregate import MOST_LIKELY, CoverMapping, Source, open_sources, pixel_area
from s2ecosg.cover.members import MemberDraw
from s2ecosg.cover.patch import CoverMap, PatchJob, patch_map
from s2ecosg.cover.readers import PixelClasses
from s2ecosg.cover.run import GDAL_CACHE_MB
from s2ecosg.cover.writers.direct import header_comment
from s2ecosg.domain import resolve_domain
from s2ecosg.errors import InputError
from s2ecosg.io import TEMPORARIES, copy_file
from s2ecosg.legend import Legend
from s2ecosg.surfex import header_text
from s2ecosg.validate import validate_cover

LOG = logging.getLogger(__name__)
COVER_FOLDER = "COVER"
COVER_NAME = "ecosg_final_map"  # the name every consumer's namelist asks for (YCOVER = "ecosg_final_map")


def cover_base(tree: str | Path) -> Path:
    """``<tree>/COVER/ecosg_final_map`` (the DIRECT pair's base name)."""
    return Path(tree) / COVER_FOLDER / COVER_NAME


def member_tree(tree: str | Path, number: int) -> Path:
    """The tree of ensemble member ``number``: ``<tree>_Mnn`` beside the deterministic one."""
    return Path(f"{tree}_M{number:02d}")


def service_entries(service: Path) -> list[Path]:
    """The entries of the service's ECOSG tree to link (all but hidden ones); its COVER folder is handled apart."""
    if not service.is_dir():
        raise InputError(service, "cover.ecosg_tree: not a folder (the service's ECOCLIMAP-SG data tree)")
    return sorted(entry for entry in service.iterdir() if not entry.name.startswith("."))


def link_service(folder: Path, service: Path) -> None:
    """Link every entry of ``service`` into ``folder``; COVER becomes a folder linking all but the cover map."""
    for entry in service_entries(service):
        if entry.name == COVER_FOLDER and entry.is_dir():
            continue
        (folder / entry.name).symlink_to(entry.resolve())
    (folder / COVER_FOLDER).mkdir()
    covers = service / COVER_FOLDER
    for entry in sorted(covers.iterdir()) if covers.is_dir() else []:
        if entry.name.startswith(".") or entry.name in (f"{COVER_NAME}.dir", f"{COVER_NAME}.hdr"):
            continue
        (folder / COVER_FOLDER / entry.name).symlink_to(entry.resolve())


def write_tree(tree: Path, service: Path, write_pair: Callable[[Path], None]) -> None:
    """Assemble ``tree``: the service's entries linked, ``write_pair(base)`` writing the cover pair; then rename.

    ``write_pair`` gets the base name ``<temporary tree>/COVER/ecosg_final_map``; the pair must pass the format
    checks before the tree replaces an earlier one. A failure leaves the earlier tree as it was.
    """
    temporary = tree.with_name(f".{tree.name}.tmp{os.getpid()}")
    old = tree.with_name(f".{tree.name}.old{os.getpid()}")
    for stale in tree.parent.glob(f".{tree.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary.mkdir(parents=True)
    TEMPORARIES.add(temporary)
    try:
        link_service(temporary, service)
        base = cover_base(temporary)
        write_pair(base)
        problems = validate_cover(base)
        if problems:
            raise InputError(f"{cover_base(tree)}.dir", f"written cover breaks the format rules: {problems[0]}")
        if tree.exists():
            tree.rename(old)
        temporary.rename(tree)
    except OSError as error:
        raise InputError(error.filename or tree, f"cannot write the tree ({error.strerror or error})") from None
    finally:
        TEMPORARIES.discard(temporary)
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    LOG.info("ECOSG tree %s: %s.dir, %d linked entries", tree, cover_base(tree), len(service_entries(service)))


@dataclass(frozen=True)
class TreeRequest:
    """What a tree is made from: the run's config and legend, its predicted rasters and cover, where to write.

    Attributes:
        config: The run's whole config (``cover.tree``, ``cover.ecosg_tree``, ``cover.members``, the domain).
        legend: The bundle's legend (class ids → covers).
        classes: Every predicted tile's class raster.
        ranked: Every predicted tile's ranked-classes raster (members draw from them; "" where none).
        cover: The run's cover base name (``cover/<BASENAME>``; its members ``<BASENAME>_Mnn``).
        tree: The tree to write (``results/<run>/tree/ECOCLIMAP-SG``); members beside it.
        provenance: The cover's provenance (header line 1 of a patched map).
        workers: Processes aggregating blocks of a patched map.
    """

    config: Config
    legend: Legend
    classes: list[str]
    ranked: list[str]
    cover: str
    tree: Path
    provenance: dict[str, str]
    workers: int = 1


def run_tree(request: TreeRequest) -> list[Path]:
    """Write the tree of the run's cover and one per ensemble member; return the trees written."""
    settings = request.config.cover
    if settings.ecosg_tree is None or settings.tree is None:
        raise InputError("cover.tree", "no tree asked for (cover.tree and cover.ecosg_tree)")
    service = Path(settings.ecosg_tree)
    written = []
    for number in range(settings.members + 1):
        tree = member_tree(request.tree, number) if number else request.tree
        if settings.tree == "domain":
            source = f"{request.cover}_M{number:02d}" if number else request.cover
            write_tree(tree, service, functools.partial(copy_pair, source))
        else:
            write_tree(tree, service, functools.partial(patch_pair, request, service, member=number))
        written.append(tree)
    return written


def copy_pair(source: str | Path, target: Path) -> None:
    """The run's DIRECT pair ``source`` copied to ``target`` (its header as the cover stage wrote it)."""
    copy_file(f"{source}.dir", f"{target}.dir")
    copy_file(f"{source}.hdr", f"{target}.hdr")


def patch_pair(request: TreeRequest, service: Path, target: Path, *, member: int) -> None:
    """The service's map patched with the run's predictions (member ``member``'s draws for a member tree)."""
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)  # as the cover stage: before GDAL's first read
    cover_map = CoverMap.read(cover_base(service))
    settings = request.config.cover
    reader: PixelClasses = MOST_LIKELY
    rasters = request.classes
    if member:
        reader, rasters = MemberDraw(member, settings.member_length_m, settings.member_seed), request.ranked
    sources = open_sources(rasters, [None] * len(rasters))
    window = cover_map.window(predicted_box(sources, request.config.domain))
    name = f"{COVER_NAME}_M{member:02d}" if member else COVER_NAME
    comment = header_comment(name, request.provenance) + f" patched into {cover_map.base}"
    if window is None:
        LOG.warning("the run's predictions lie outside %s.dir: the tree holds it unchanged", cover_map.base)
        copy_pair(cover_map.base, target)
        target.with_suffix(".hdr").write_text(header_text(comment, cover_map.bounds, cover_map.shape))
        return
    mapping = CoverMapping.from_legend(request.legend, settings)
    job = PatchJob(sources, window, mapping, reader, pixel_area(sources))
    patch_map(cover_map, target, job, request.workers, comment)


def predicted_box(sources: list[Source], domain_settings: DomainConfig) -> tuple[float, float, float, float]:
    """The box of the predicted tiles' footprints, within the HARMONIE domain (+ margin) or ``domain.bbox``."""
    west, south = min(s.lonlat[0] for s in sources), min(s.lonlat[1] for s in sources)
    east, north = max(s.lonlat[2] for s in sources), max(s.lonlat[3] for s in sources)
    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    limit = domain.lonlat_extent(domain_settings.margin) if domain is not None else domain_settings.bbox
    if limit is not None:
        west, south, east, north = max(west, limit[0]), max(south, limit[1]), min(east, limit[2]), min(north, limit[3])
    return west, south, east, north
