"""Reprojection of north-up source rasters onto target windows by a pixel mapping shared between bands.

GDAL's warper recomputes the coordinate transformation for every band it warps. All bands of a Sentinel-2
scene, and all scenes of one MGRS tile, share one source CRS, so the target pixel centres are transformed into
that CRS once per tile (exactly on a lattice every :data:`LATTICE_STEP` pixels, linearly in between: between
UTM and a conformal or equal-area grid the error over 160 m is far below a micrometre) and every band is then
sampled with a vectorised bilinear (reflectance) or nearest (class) lookup on its own 10/20/60 m grid.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

if TYPE_CHECKING:
    from rasterio.crs import CRS

LATTICE_STEP = 16  # target pixels between exactly transformed lattice nodes
# Plans a process keeps: every (tile, source grid) of a 5 × 5-tile block at 10 and 20 m (50 plans of 1000² samples).
PLAN_BYTES = 1280 * 2**20
PLAN_BYTES_PER_SAMPLE = 25  # int32 index, 4 float32 weights, the outside flag, int32 nearest index


def lattice(size: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice nodes every ``step`` pixels (and the last pixel) and, per pixel, its lower node and fraction to the next.

    Returns:
        (nodes,) int node positions, (size,) index of each pixel's lower node, (size,) float64 fraction of the way
        to the node after it (0 at a node; the last pixel is the last node at fraction 1).
    """
    nodes = np.unique(np.append(np.arange(0, size, step), size - 1))
    positions = np.arange(size)
    if nodes.size == 1:
        return nodes, np.zeros(size, dtype=np.intp), np.zeros(size)
    upper = np.clip(np.searchsorted(nodes, positions, side="right"), 1, nodes.size - 1)
    lower = upper - 1
    return nodes, lower, (positions - nodes[lower]) / (nodes[upper] - nodes[lower])


def between_nodes(
    values: np.ndarray, rows: tuple[np.ndarray, np.ndarray], columns: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Values given on lattice nodes (row nodes, column nodes), linearly interpolated to every pixel (separable).

    Done with gathers rather than a matrix product: NumPy's BLAS would start its own threads, which then spin
    beside the stage job's decoding threads (5 % of a block job's CPU, measured with ``perf``).
    """
    (row_lower, row_fraction), (column_lower, column_fraction) = rows, columns
    upper_column = np.minimum(column_lower + 1, values.shape[1] - 1)
    along = values[:, column_lower] * (1 - column_fraction) + values[:, upper_column] * column_fraction
    upper_row = np.minimum(row_lower + 1, values.shape[0] - 1)
    return along[row_lower] * (1 - row_fraction)[:, None] + along[upper_row] * row_fraction[:, None]


TRANSFORMERS = threading.local()  # each thread's pyproj transformers, by (from CRS, to CRS)


def transformer(from_crs: str, to_crs: str) -> Any:
    """This thread's pyproj transformer between two CRS (x, y order), made once: PROJ's search for it costs 50 ms."""
    from pyproj import Transformer  # 0.1 s to import: loaded where used

    made: dict[tuple[str, str], Any] = TRANSFORMERS.__dict__.setdefault("made", {})
    if (from_crs, to_crs) not in made:
        made[from_crs, to_crs] = Transformer.from_crs(from_crs, to_crs, always_xy=True)
    return made[from_crs, to_crs]


@functools.lru_cache(maxsize=4)
def target_in_source(
    transform: tuple[float, ...], shape: tuple[int, int], target_crs: str, source_crs: str
) -> tuple[np.ndarray, np.ndarray]:
    """Source-CRS coordinates of the centres of a target window's pixels: two (rows, cols) float64 arrays.

    Args:
        transform: Target window affine transform as a 6-tuple (target CRS units, north-up).
        shape: Target window (rows, cols).
        target_crs: CRS of ``transform``.
        source_crs: CRS to express the pixel centres in.
    """
    rows, columns = shape
    affine = Affine(*transform[:6])
    row_nodes, *row_steps = lattice(rows, LATTICE_STEP)
    column_nodes, *column_steps = lattice(columns, LATTICE_STEP)
    x = affine.c + (column_nodes[np.newaxis, :] + 0.5) * affine.a + (row_nodes[:, np.newaxis] + 0.5) * affine.b
    y = affine.f + (column_nodes[np.newaxis, :] + 0.5) * affine.d + (row_nodes[:, np.newaxis] + 0.5) * affine.e
    source_x, source_y = transformer(target_crs, source_crs).transform(x, y)
    steps = (row_steps[0], row_steps[1]), (column_steps[0], column_steps[1])
    return between_nodes(np.asarray(source_x), *steps), between_nodes(np.asarray(source_y), *steps)


def is_north_up(transform: Affine) -> bool:
    """True for a transform without rotation or shear (every Sentinel-2 grid), which :func:`sample` requires."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def source_window(
    column: np.ndarray, row: np.ndarray, source_shape: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Source rows and columns (half-open, clipped to the source) that bilinear samples at (row, column) touch.

    The bounding box of all samples clipped to the source: a superset of what the samples inside need, found
    in four passes; None when the box misses the source.
    """
    height, width = source_shape
    row0 = max(0, int(np.floor(row.min())))
    row1 = min(height, int(np.floor(row.max())) + 2)
    column0 = max(0, int(np.floor(column.min())))
    column1 = min(width, int(np.floor(column.max())) + 2)
    if row0 >= row1 or column0 >= column1:
        return None
    return (row0, row1), (column0, column1)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where the pixels of part of a target tile fall in one source grid: computed once, used by every band.

    Attributes:
        window: Source rows and columns (half-open) that the samples touch.
        index: Flat index (in the window) of each sample's upper-left neighbour, shape of the part, intp.
        weights: Bilinear weights of the upper-left, upper-right, lower-left and lower-right neighbours: float32,
            shape (4,) + the part's shape.
        outside: True where the sample lies outside the source grid.
        steps: Flat offsets of the right and lower neighbours (0 where the window is one pixel wide or high).
    """

    window: tuple[tuple[int, int], tuple[int, int]]
    index: np.ndarray
    weights: np.ndarray
    outside: np.ndarray
    steps: tuple[int, int]

    @property
    def offsets(self) -> tuple[int, int, int, int]:
        """Flat offsets of the upper-left, upper-right, lower-left and lower-right neighbours from ``index``."""
        return 0, self.steps[0], self.steps[1], self.steps[0] + self.steps[1]

    @functools.cached_property
    def nearest_index(self) -> np.ndarray:
        """Flat index of each sample's nearest neighbour: the corner with the largest bilinear weight (int32)."""
        return self.index + np.asarray(self.offsets, dtype=np.int32)[np.argmax(self.weights, axis=0)]


def plan(
    tile: tuple[tuple[float, ...], tuple[int, int], str],
    part: tuple[tuple[int, int], tuple[int, int]],
    source: tuple[tuple[float, ...], tuple[int, int], str],
) -> Plan | None:
    """Sampling plan of ``part`` of a target tile in a north-up source grid; None if the part misses the source.

    Args:
        tile: Target tile (transform 6-tuple, (rows, cols), CRS).
        part: Rows and columns (half-open) of the tile to fill.
        source: Source grid (transform 6-tuple, (height, width), CRS).
    """
    x, y = target_in_source(*tile, source[2])
    rows, columns = slice(*part[0]), slice(*part[1])
    inverse = ~Affine(*source[0][:6])
    # Pixel positions are below 10⁵, so float32 keeps them to 0.01 pixel after the float64 affine step.
    column = (inverse.a * x[rows, columns] + (inverse.c - 0.5)).astype(np.float32)
    row = (inverse.e * y[rows, columns] + (inverse.f - 0.5)).astype(np.float32)
    window = source_window(column, row, source[1])
    if window is None:
        return None
    (row0, row1), (column0, column1) = window
    height, width = row1 - row0, column1 - column0
    column -= column0
    row -= row0
    outside = (column < -0.5) | (column > width - 0.5) | (row < -0.5) | (row > height - 0.5)
    np.clip(column, 0, width - 1, out=column)
    np.clip(row, 0, height - 1, out=row)
    left = np.minimum(column.astype(np.intp), max(0, width - 2))
    top = np.minimum(row.astype(np.intp), max(0, height - 2))
    right, down = column - left, row - top
    steps = (1 if width > 1 else 0, width if height > 1 else 0)
    index = (top * width + left).astype(np.int32)  # a window holds < 2³¹ pixels; half the bytes of intp
    weights = np.empty((4, *index.shape), dtype=np.float32)
    np.multiply(1 - right, 1 - down, out=weights[0])
    np.multiply(right, 1 - down, out=weights[1])
    np.multiply(1 - right, down, out=weights[2])
    np.multiply(right, down, out=weights[3])
    return Plan(window, index, weights, outside, steps)


PlanKey = tuple[
    tuple[tuple[float, ...], tuple[int, int], str],
    tuple[tuple[int, int], tuple[int, int]],
    tuple[tuple[float, ...], tuple[int, int], str],
]


class PlanCache:
    """The sampling plans of a job, each made once and kept until :meth:`clear`, within :data:`PLAN_BYTES`.

    Every band of every scene samples each tile of a block in turn, so plans are asked for in a cycle as long as
    the block's tiles × source grids. A least-recently-used cache shorter than that cycle misses (measured: 134 of
    320 plans recomputed on a block of 4 tiles with room for 6; at 25 tiles, a cycle of 50, it never hits), and a plan costs about
    5× the sampling it serves (35 ms against 6.5 ms for 1000² samples). So nothing is evicted: past the budget the
    plans made first stay and later ones are made afresh each time. Bands sampled in parallel wait for the one
    thread making their plan instead of each making it.
    """

    def __init__(self, budget: int = PLAN_BYTES) -> None:
        self.budget, self.held = budget, 0
        self.plans: dict[PlanKey, Plan | None] = {}
        self.locks: collections.defaultdict[PlanKey, threading.Lock] = collections.defaultdict(threading.Lock)
        self.guard = threading.Lock()

    def get(self, key: PlanKey) -> Plan | None:
        """The plan of ``key`` (tile grid, part, source grid; see :func:`plan`), made at the first ask."""
        with self.guard:
            if key in self.plans:
                return self.plans[key]
            lock = self.locks[key]
        with lock:
            with self.guard:
                if key in self.plans:
                    return self.plans[key]
            made = plan(*key)
            size = 0 if made is None else made.index.size * PLAN_BYTES_PER_SAMPLE
            with self.guard:
                if self.held + size <= self.budget:
                    self.plans[key], self.held = made, self.held + size
                self.locks.pop(key, None)
            return made

    def clear(self) -> None:
        """Forget every plan (a job's end: the next job's tiles differ)."""
        with self.guard:
            self.plans.clear()
            self.held = 0


PLANS = PlanCache()


def packed_neighbours(values: np.ndarray) -> np.ndarray:
    """Each pixel of a uint16 window with its right, lower and lower-right neighbours: (h × w,) uint64.

    One 8-byte gather then fetches all four bilinear neighbours; the last row and column repeat (the plan's
    clamped indices give them zero weight).
    """
    height, width = values.shape
    padded = np.empty((height + 1, width + 1), dtype=np.uint16)
    padded[:height, :width] = values
    padded[height, :width] = values[-1]
    padded[:, width] = padded[:, width - 1]
    quad = np.empty((height, width, 4), dtype=np.uint16)
    quad[..., 0], quad[..., 1] = padded[:height, :width], padded[:height, 1:]
    quad[..., 2], quad[..., 3] = padded[1:, :width], padded[1:, 1:]
    return quad.view(np.uint64).reshape(height * width)


def corners(values: np.ndarray, sampling: Plan) -> np.ndarray:
    """The four bilinear neighbours of every sample: (4,) + the plan's shape, dtype of ``values``."""
    if values.dtype == np.uint16:
        gathered = packed_neighbours(values).take(sampling.index).view(np.uint16)
        return np.ascontiguousarray(np.moveaxis(gathered.reshape(sampling.index.shape + (4,)), -1, 0))
    flat = values.ravel()
    return np.stack([flat.take(sampling.index + offset) for offset in sampling.offsets])


def weighted_sum(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σₖ values[k] × weights[k] over the leading axis of length 4, in float32 without large temporaries."""
    result = np.multiply(values[0], weights[0], dtype=np.float32)
    term = np.empty_like(result)
    for corner in range(1, 4):
        np.multiply(values[corner], weights[corner], out=term, dtype=np.float32)
        result += term
    return result


def bilinear(values: np.ndarray, sampling: Plan, valid: np.ndarray | None) -> np.ndarray:
    """Bilinear samples of a source window: float32 in the shape of the plan, NaN outside or where invalid.

    Args:
        values: Source window pixels, shape of ``sampling.window``.
        sampling: Plan of the samples.
        valid: Bool array like ``values``, False where the source has no data, or None when all are valid. As
            GDAL does, invalid neighbours are left out and the others' weights renormalised.
    """
    if valid is None:
        result = weighted_sum(corners(values, sampling), sampling.weights)
        outside = sampling.outside
    else:
        result = weighted_sum(corners(np.where(valid, values, 0).astype(values.dtype), sampling), sampling.weights)
        total = weighted_sum(corners(valid.view(np.uint8), sampling), sampling.weights)
        outside = sampling.outside | (total < 1e-6)
        result /= np.maximum(total, 1e-6)
    result[outside] = np.nan
    return result


def nearest(values: np.ndarray, sampling: Plan) -> np.ndarray:
    """Nearest-neighbour samples of a source window: float32 in the shape of the plan, NaN outside."""
    result = values.ravel().take(sampling.nearest_index).astype(np.float32)
    result[sampling.outside] = np.nan
    return result


def grid_key(
    transform: Affine, shape: tuple[int, int], crs: CRS | str
) -> tuple[tuple[float, ...], tuple[int, int], str]:
    """Hashable description of a grid: (transform 6-tuple, (rows, cols), CRS string)."""
    return tuple(transform)[:6], (int(shape[0]), int(shape[1])), crs if isinstance(crs, str) else crs.to_string()


def sample(
    source: Any, index: int, tile: tuple[Affine, tuple[int, int], str], part: tuple[slice, slice], method: str
) -> np.ndarray:
    """One band of an open north-up rasterio dataset on part of a target tile: float32, NaN where no data.

    Args:
        source: Open rasterio dataset with a north-up transform.
        index: 1-based band index.
        tile: Target tile (transform, (rows, cols), CRS); the pixel mapping is computed (and cached) for the
            whole tile, so that every band and scene on the same source grid reuses it.
        part: Rows and columns of the tile to fill.
        method: ``bilinear`` or ``nearest``.
    """
    rows, columns = part
    shape = (rows.stop - rows.start, columns.stop - columns.start)
    key = (
        grid_key(*tile),
        ((rows.start, rows.stop), (columns.start, columns.stop)),
        grid_key(source.transform, source.shape, source.crs),
    )
    sampling = PLANS.get(key)
    if sampling is None:
        return np.full(shape, np.nan, dtype=np.float32)
    values = source.read(index, window=sampling.window)
    return sample_values(values, source.nodata, sampling, method)


@dataclasses.dataclass(frozen=True)
class Decoded:
    """One band of a north-up source raster decoded once over a window, then sampled onto many target tiles.

    Attributes:
        values: The window's pixels as stored (e.g. uint16 DN), shape of ``window``.
        window: Source rows and columns (half-open) the values cover.
        grid: The source grid (:func:`grid_key`).
        nodata: The source's nodata value (None: 0 is taken, as Sentinel-2 files store it).
    """

    values: np.ndarray
    window: tuple[tuple[int, int], tuple[int, int]]
    grid: tuple[tuple[float, ...], tuple[int, int], str]
    nodata: float | None


def sample_values(values: np.ndarray, nodata: float | None, sampling: Plan, method: str) -> np.ndarray:
    """The plan's samples of a source window: float32, NaN outside the source or at its nodata."""
    if method == "nearest":
        return nearest(values, sampling)
    invalid = values == (nodata if nodata is not None else 0)
    if np.issubdtype(values.dtype, np.floating):
        invalid |= np.isnan(values)
    return bilinear(values, sampling, ~invalid if invalid.any() else None)


def sample_decoded(
    decoded: Decoded, tile: tuple[Affine, tuple[int, int], str], part: tuple[slice, slice], method: str
) -> np.ndarray | None:
    """Like :func:`sample`, from a decoded window; None when the samples need source pixels outside it."""
    rows, columns = part
    key = (grid_key(*tile), ((rows.start, rows.stop), (columns.start, columns.stop)), decoded.grid)
    sampling = PLANS.get(key)
    if sampling is None:
        return np.full((rows.stop - rows.start, columns.stop - columns.start), np.nan, dtype=np.float32)
    (row0, row1), (column0, column1) = sampling.window
    (top, bottom), (left, right) = decoded.window
    if row0 < top or row1 > bottom or column0 < left or column1 > right:
        return None
    values = decoded.values[row0 - top : row1 - top, column0 - left : column1 - left]
    return sample_values(np.ascontiguousarray(values), decoded.nodata, sampling, method)
