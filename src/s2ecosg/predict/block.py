"""Predict jobs: the tiles of a job block (or one tile) read from their staged files as one region, written per tile.

A block job predicts the bounding box of its tiles that need predicting as one :class:`~s2ecosg.predict.windows.Region`
with a one-window halo read from the neighbouring blocks' staged tiles, so each window is computed once and tiles
share the windows across their edges. Finished rows are cut into tiles; each tile is written, atomically and
tagged with its signature (:mod:`s2ecosg.blocks`), as soon as its last row is done, in a writer thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from numpy.typing import NDArray

from s2ecosg.blocks import SIGNATURE_TAG, block_name, read_manifests, report, signature, up_to_date, write_manifest
from s2ecosg.config import Config, PredictConfig
from s2ecosg.gdal_env import gdal_threads
from s2ecosg.grid import TargetGrid
from s2ecosg.io import open_raster, write_raster
from s2ecosg.layout import tile_file
from s2ecosg.model.card import read_card
from s2ecosg.model.network import pick_device
from s2ecosg.predict.windows import Predictor, Region, check_bands, ranks_kept, ready_model

if TYPE_CHECKING:
    from rasterio.crs import CRS

LOG = logging.getLogger(__name__)
PREDICTION_BANDS = ["class_id", "probability_255", "second_class_id", "second_probability_255"]


class StagedMosaic:
    """Staged tiles on one grid read as one image: any window of global pixels, 0 where no tile has data.

    Args:
        paths: GeoTIFFs on the same grid (same CRS and pixel size, pixel-aligned), with the bundle's bands.
        bands: The bundle's band names (a file with other bands or another order is refused naming it).
    """

    def __init__(self, paths: list[str], bands: list[str]) -> None:

        self.sources: list[tuple[str, int, int, int, int]] = []  # path, global row, column, rows, columns
        for path in paths:
            with open_raster(path) as source:
                check_bands(bands, list(source.descriptions), path)
                transform = source.transform
                row, column = round(-transform.f / transform.a), round(transform.c / transform.a)
                self.sources.append((path, row, column, source.height, source.width))
                if len(self.sources) == 1:
                    self.resolution, self.crs = transform.a, source.crs
        self.bands = len(bands)

    def region_of(self, index: int, halo: int) -> Region:
        """The pixels of source ``index`` as a region with ``halo``."""
        _, row, column, rows, columns = self.sources[index]
        return Region((row, column), (rows, columns), halo)

    def transform_of(self, row: int, column: int) -> Affine:
        """Affine transform of a raster whose first pixel has global index (row, column)."""
        return Affine(self.resolution, 0.0, column * self.resolution, 0.0, -self.resolution, -row * self.resolution)

    def read(self, rows: tuple[int, int], columns: tuple[int, int]) -> NDArray[np.uint16]:
        """(bands, rows, columns) uint16 of the global pixel ranges ``rows`` and ``columns`` (half-open)."""
        image = np.zeros((self.bands, rows[1] - rows[0], columns[1] - columns[0]), dtype=np.uint16)
        for path, row, column, height, width in self.sources:
            top, bottom = max(rows[0], row), min(rows[1], row + height)
            left, right = max(columns[0], column), min(columns[1], column + width)
            if top >= bottom or left >= right:
                continue
            with open_raster(path, NUM_THREADS="ALL_CPUS") as source:
                window = ((top - row, bottom - row), (left - column, right - column))
                image[:, top - rows[0] : bottom - rows[0], left - columns[0] : right - columns[0]] = source.read(
                    window=window
                )
        return image

    def reader(self, region: Region) -> Callable[[int, int], NDArray[np.uint16]]:
        """``read`` for :meth:`Predictor.predict`: padded rows of ``region`` over its whole padded width."""
        row0, column0 = region.origin[0] - region.halo, region.origin[1] - region.halo
        columns = (column0, column0 + region.padded[1])
        return lambda first, last: self.read((row0 + first, row0 + last), columns)


def write_prediction(
    outputs: Mapping[str, str | None], top: NDArray[np.uint8], transform: Affine, crs: CRS | str, tags: dict[str, str]
) -> None:
    """Write a tile's (2 × ranks, rows, columns) prediction: top-K and top2 (when asked), confidence, then classes."""
    top2, confidence, classes = outputs.get("top2"), outputs["confidence"], outputs["classes"]
    assert confidence is not None and classes is not None
    probabilities = outputs.get("probabilities")
    if probabilities:
        ranks = range(1, top.shape[0] // 2 + 1)
        names = [name for rank in ranks for name in (f"class_id_{rank}", f"probability_255_{rank}")]
        write_raster(probabilities, top, crs=crs, transform=transform, descriptions=names, tags=tags)
    if top2:
        write_raster(top2, top[:4], descriptions=PREDICTION_BANDS, crs=crs, transform=transform, tags=tags)
    write_raster(confidence, top[1], descriptions=["confidence"], crs=crs, transform=transform, tags=tags)
    write_raster(classes, top[0], descriptions=["class_id"], crs=crs, transform=transform, tags=tags)


@dataclass(frozen=True)
class PredictRequest:
    """One staged image to predict on its own (outside a block job), and where its rasters go.

    Attributes:
        bundle: The model bundle's folder.
        image: The staged image (``stage/<tile>.tif``).
        settings: The ``predict`` section.
        classes: Output class raster (uint8 class ids, 0 = none).
        confidence: Output confidence raster (uint8, probability × 255).
        neighbours: Staged images on the same grid around ``image``, read for its halo.
        legend_name: The run's legend (``labels.legend``): a bundle of another legend is refused; None: not checked.
        top2: Output of the quantised top-2 probabilities (class, p, runner-up class, p; uint8), or None.
    """

    bundle: str
    image: str
    settings: PredictConfig
    classes: str
    confidence: str
    neighbours: Sequence[str] = ()
    legend_name: str | None = None
    top2: str | None = None


def run_predict(request: PredictRequest) -> None:
    """Predict one staged image (with a halo from its neighbours on the same grid) and write its rasters.

    A bundle whose bands or band order differ from the image's, or whose legend differs from ``legend_name``, is
    refused.
    """
    settings, image_path = request.settings, request.image
    device = pick_device(settings.device)
    model, card = ready_model(request.bundle, settings, device, request.legend_name)
    mosaic = StagedMosaic([image_path, *request.neighbours], card.bands)
    region = mosaic.region_of(0, settings.window if settings.halo is None else settings.halo)
    result = np.zeros((2 * ranks_kept(settings), *region.shape), dtype=np.uint8)

    def emit(row: int, top: NDArray[np.uint8]) -> None:
        result[:, row : row + top.shape[1]] = top

    Predictor(model, card, settings, device).predict(region, mosaic.reader(region), emit)
    LOG.info("%s: %.1f %% predicted (halo %d px)", image_path, 100 * (result[0] > 0).mean(), region.halo)
    outputs = {"classes": request.classes, "confidence": request.confidence, "top2": request.top2}
    write_prediction(outputs, result, mosaic.transform_of(*region.origin), mosaic.crs, {})


class BlockTiles:
    """The tiles a block job predicts, as one region: their bounding box, which windows they need, and the writes.

    Args:
        grid: The run's ``TargetGrid``.
        tiles: Tile name → (outputs, signature) of each tile to predict.
        halo: Pixels read around the bounding box.
    """

    def __init__(self, grid: TargetGrid, tiles: dict[str, tuple[dict[str, str], str]], halo: int) -> None:
        self.grid, self.tiles, self.size = grid, tiles, grid.tile_pixels
        places = {name: self.place(name) for name in tiles}  # (tile row from the north, tile column)
        first_row, first_column = min(row for row, _ in places.values()), min(c for _, c in places.values())
        rows = max(row for row, _ in places.values()) - first_row + 1
        columns = max(c for _, c in places.values()) - first_column + 1
        self.cells = {name: (row - first_row, column - first_column) for name, (row, column) in places.items()}
        self.needed = np.zeros((rows, columns), dtype=bool)
        for row, column in self.cells.values():
            self.needed[row, column] = True
        origin = (first_row * self.size, first_column * self.size)
        self.region = Region(origin, (rows * self.size, columns * self.size), halo)
        self.buffers: dict[str, NDArray[np.uint8]] = {}
        self.writes: list[Future[None]] = []

    def place(self, name: str) -> tuple[int, int]:
        """(row counted southward, column) of a tile on the grid of tiles: its global pixel index / tile pixels."""
        column, row = self.grid.tile_index(name)
        return -(row + 1), column

    def wanted(self, row: int, column: int, size: int) -> bool:
        """Whether the window at padded (row, column) reaches a tile to predict."""
        halo, (height, width) = self.region.halo, self.region.shape
        top, bottom = max(0, row - halo), min(height, row - halo + size)
        left, right = max(0, column - halo), min(width, column - halo + size)
        if top >= bottom or left >= right:
            return False
        cells = self.needed[
            top // self.size : (bottom - 1) // self.size + 1, left // self.size : (right - 1) // self.size + 1
        ]
        return bool(cells.any())

    def paths_around(self, staged: dict[str, str]) -> list[str]:
        """Staged images of the tiles the region and its halo reach (the block's own and its neighbours')."""
        resolution, (row, column), halo = self.grid.resolution, self.region.origin, self.region.halo
        left, top = (column - halo) * resolution, -(row - halo) * resolution
        right = left + self.region.padded[1] * resolution
        bottom = top - self.region.padded[0] * resolution
        return [staged[name] for name in self.grid.tiles_covering((left, bottom, right, top)) if name in staged]

    def emit(self, row: int, top: NDArray[np.uint8], writer: ThreadPoolExecutor, crs: CRS | str) -> None:
        """Cut finished kept rows ``row`` … into the tiles; a tile whose last row is done is written (in ``writer``)."""
        last = row + top.shape[1]
        for name, (cell_row, cell_column) in self.cells.items():
            first, end = cell_row * self.size, (cell_row + 1) * self.size
            if end <= row or first >= last:
                continue
            buffer = self.buffers.setdefault(name, np.zeros((top.shape[0], self.size, self.size), dtype=np.uint8))
            rows = slice(max(row, first), min(last, end))
            columns = slice(cell_column * self.size, (cell_column + 1) * self.size)
            buffer[:, rows.start - first : rows.stop - first] = top[:, rows.start - row : rows.stop - row, columns]
            if last >= end:
                self.writes.append(writer.submit(self.write, name, self.buffers.pop(name), crs))

    def write(self, name: str, top: NDArray[np.uint8], crs: CRS | str) -> None:
        """Write one finished tile with its signature."""
        outputs, wanted = self.tiles[name]
        LOG.info("%s: %.1f %% predicted", name, 100 * (top[0] > 0).mean())
        write_prediction(outputs, top, self.grid.tile_transform(name), crs, {SIGNATURE_TAG: wanted})


def predict_block_tiles(
    bundle: str,
    settings: PredictConfig,
    grid: TargetGrid,
    tiles: dict[str, tuple[dict[str, str], str]],
    staged: dict[str, str],
    legend: str | None,
) -> int:
    """Predict ``tiles`` (name → (outputs, signature)) as one region read from ``staged`` (name → image); windows run.

    One model build; the tiles are written in a writer thread while the model goes on.
    """
    device = pick_device(settings.device)
    model, card = ready_model(bundle, settings, device, legend)
    block = BlockTiles(grid, tiles, settings.window if settings.halo is None else settings.halo)
    mosaic = StagedMosaic(block.paths_around(staged), card.bands)
    predictor = Predictor(model, card, settings, device)
    with gdal_threads(1) as writer:  # the writing thread opens, writes and closes each tile's files
        emit = lambda row, top: block.emit(row, top, writer, mosaic.crs)  # noqa: E731
        predictor.predict(block.region, mosaic.reader(block.region), emit, block.wanted)
        for write in block.writes:
            write.result()
    area = len(tiles) * (grid.tile_size / 1000) ** 2
    LOG.info("%d window(s) for %d tile(s): %.2f per km²", predictor.windows, len(tiles), predictor.windows / area)
    return predictor.windows


def run_predict_block(
    bundle: str,
    settings: Config,
    stage_manifests: list[str],
    folder: str,
    manifest: str,
    legend_name: str | None = None,
) -> int:
    """Predict the tiles of one job block: one model build, the block's tiles as one region with a halo.

    ``stage_manifests`` are the block's own stage manifest (first) and those of the blocks around it (for the
    halo). Tiles whose files carry the signature of the same bundle, settings and staged tiles (their own and
    their neighbours') are kept. Returns the number of windows the model ran on.
    """
    grid = TargetGrid(settings.grid.crs, settings.grid.resolution, settings.grid.tile_size)
    own, around = read_manifests(stage_manifests[:1]), read_manifests(stage_manifests)
    # The weights by their content, as the card records it: a touched weights.pt re-predicts nothing.
    bundle_record = read_card(bundle).model_dump(mode="json")
    settings_record = settings.predict.model_dump(mode="json")
    entries, pending = {}, {}
    for tile, staged in sorted(own.items()):
        neighbours = [name for name in grid.neighbours(tile) if name in around]
        wanted = signature(
            bundle_record,
            settings_record,
            legend_name,
            staged["signature"],
            [around[n]["signature"] for n in neighbours],
        )
        roles = ("classes", "confidence") + ("top2",) * settings.predict.top2
        roles += ("probabilities",) * bool(settings.predict.probabilities)
        outputs = {role: tile_file(folder, "predict", role, tile) for role in roles}
        entries[tile] = {"signature": wanted, **outputs}
        if not up_to_date(list(outputs.values()), wanted):
            pending[tile] = (outputs, wanted)
    windows = 0
    if pending:
        images = {tile: entry["image"] for tile, entry in around.items()}
        windows = predict_block_tiles(bundle, settings.predict, grid, pending, images, legend_name)
    report("predict", block_name(manifest), sorted(pending), sorted(set(entries) - set(pending)))
    write_manifest(manifest, block_name(manifest), entries)
    return windows
