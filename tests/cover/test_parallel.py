"""Blocks aggregated in worker processes and reused from the block cache give byte-identical covers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DATA, make_cover
from rasterio.windows import Window, bounds

import s2ecosg.cover.run
from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import open_sources, reaching
from s2ecosg.cover.run import output_grid
from s2ecosg.errors import InputError
from s2ecosg.labels.run import raster_labels
from s2ecosg.legend import load_legend

PROVENANCE = {"s2ecosg_version": "test", "bundle": "none", "run_hash": "0123456789abcdef", "scenes": "none"}
SUFFIXES = (".dir", ".hdr", ".nc", ".nam", ".png")
SETTINGS = CoverConfig(basename="TILES", resolution_deg="1/1800")


@pytest.fixture
def tiles(tmp_path: Path) -> list[Path]:
    """The Lanjarón CORINE excerpt as class ids, cut into a north and a south tile (EPSG:3042, 25 m)."""
    return lanjaron_tiles(tmp_path)


def lanjaron_tiles(tmp_path: Path) -> list[Path]:
    """:func:`tiles`, callable from other tests."""
    clc = DATA / "lanjaron" / "clc.tif"
    with rasterio.open(clc) as source:
        profile, transform, crs, shape = source.profile, source.transform, source.crs, source.shape
    ids = raster_labels(str(clc), load_legend("clc"), transform, shape, crs)
    paths = []
    for name, rows in (("NORTH", slice(0, 300)), ("SOUTH", slice(300, shape[0]))):
        window = Window(0, rows.start, shape[1], rows.stop - rows.start)
        piece = dict(
            profile,
            dtype="uint8",
            nodata=0,
            height=window.height,
            transform=rasterio.transform.from_bounds(*bounds(window, transform), shape[1], window.height),
        )
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", **piece) as destination:
            destination.write(ids[rows], 1)
        paths.append(path)
    return paths


def cover_bytes(base: Path) -> dict[str, bytes]:
    """Every written file of a cover, by suffix."""
    return {suffix: Path(f"{base}{suffix}").read_bytes() for suffix in SUFFIXES}


def write(
    tiles: list[Path], folder: Path, workers: int = 1, cache: Path | None = None, settings: CoverConfig = SETTINGS
) -> dict[str, bytes]:
    """Run the cover stage on the tiles into ``folder`` and return its files' bytes."""
    base = folder / "TILES"
    paths = [str(path) for path in tiles]
    cache_folder = str(cache) if cache else None
    legend = load_legend("clc")
    make_cover(
        paths, [None] * len(tiles), legend, settings, DomainConfig(), str(base), PROVENANCE, workers, cache_folder
    )
    return cover_bytes(base)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 16 × 16 cells, so the excerpt spans a few dozen of them."""
    monkeypatch.setattr(s2ecosg.cover.run, "BLOCK_CELLS", 16)


@pytest.mark.usefixtures("small_blocks")
def test_two_workers_write_the_same_bytes_as_one(tiles: list[Path], tmp_path: Path) -> None:
    serial = write(tiles, tmp_path / "serial")
    parallel = write(tiles, tmp_path / "parallel", workers=2)
    assert parallel == serial


@pytest.mark.usefixtures("small_blocks")
def test_changed_tile_reaggregates_only_its_blocks(tiles: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "blocks"
    write(tiles, tmp_path / "first", cache=cache)
    sources = open_sources([str(path) for path in tiles], [None, None])
    grid, _ = output_grid(SETTINGS, DomainConfig(), sources)
    blocks = list(grid.blocks(16))
    assert len(list(cache.glob("*.npz"))) == len(blocks)
    # A nightly change: some south-tile pixels predicted as another class.
    with rasterio.open(tiles[1], "r+") as raster:
        ids = raster.read(1)
        ids[100:140, 200:260] = np.where(ids[100:140, 200:260] > 0, 12, 0)
        raster.write(ids, 1)
    reached = [
        block for block in blocks if any(s.path == str(tiles[1]) for s in reaching(sources, grid.block_bounds(block)))
    ]
    assert 0 < len(reached) < len(blocks)
    mtimes = {path.name: path.stat().st_mtime_ns for path in cache.glob("*.npz")}
    incremental = write(tiles, tmp_path / "incremental", workers=2, cache=cache)
    rewritten = {path.name for path in cache.glob("*.npz") if path.stat().st_mtime_ns != mtimes[path.name]}
    assert rewritten == {f"{block[0]}_{block[1]}.npz" for block in reached}
    full = write(tiles, tmp_path / "full")
    assert incremental == full
    assert incremental[".dir"] != cover_bytes(tmp_path / "first" / "TILES")[".dir"]


def test_cache_of_another_grid_is_not_reused(tiles: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "blocks"
    write(tiles, tmp_path / "first", cache=cache)
    other = CoverConfig(basename="TILES", resolution_deg="1/1200")
    assert write(tiles, tmp_path / "other", cache=cache, settings=other) == write(
        tiles, tmp_path / "plain", settings=other
    )


@pytest.mark.usefixtures("small_blocks")
def test_a_bad_fill_found_in_a_worker_stops_the_cover_with_its_line(tiles: list[Path], tmp_path: Path) -> None:
    # A fill raster over the whole excerpt with a value no ECOSG cover has: the workers sample it per block.
    fill = tmp_path / "fill.tif"
    with rasterio.open(tiles[0]) as north, rasterio.open(tiles[1]) as south:
        profile, west, top = north.profile, north.bounds.left, north.bounds.top
        height, width = north.height + south.height, north.width
    profile |= {"height": height, "transform": rasterio.transform.from_origin(west, top, 25, 25)}
    with rasterio.open(fill, "w", **profile) as destination:
        destination.write(np.full((height, width), 40, np.uint8), 1)
    settings = SETTINGS.model_copy(update={"fill": str(fill)})
    with pytest.raises(InputError, match=r"fill\.tif: fill file holds values outside 0\.\.33 \(max 40\)"):
        write(tiles, tmp_path / "bad", workers=2, settings=settings)
    assert not list((tmp_path / "bad").glob("TILES*"))
