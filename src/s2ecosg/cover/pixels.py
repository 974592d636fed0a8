"""Which output cell each 10 m pixel centre falls in: a coarse lattice of exact transforms, exact near edges.

Transforming every pixel centre with PROJ costs ≈ 0.4 µs a pixel, the whole cover stage's time. Over a chunk the
map pixel → cell coordinate is smooth, so it is transformed exactly on a lattice every :data:`LATTICE` pixels and
interpolated bilinearly in between (two small matrix products). The interpolation error of each lattice cell is
measured where bilinear interpolation errs most (the midpoints of its edges and its centre) and multiplied by
:data:`SAFETY`; a pixel whose interpolated position lies within that bound of a cell edge (or of a climate
latitude) is transformed exactly, with the very arithmetic of the per-pixel reference. Every pixel therefore lands
in the same cell as if all were transformed exactly. Lattice cells where the map is not smooth (the antimeridian,
a pole, points PROJ cannot transform) get an infinite bound: all their pixels are transformed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from s2ecosg.lonlat import Block, LonLatGrid
from s2ecosg.resample import transformer

if TYPE_CHECKING:
    from rasterio.crs import CRS
    from rasterio.windows import Window

LATTICE = 32  # source pixels between exact lattice points
SAFETY = 8.0  # measured interpolation error × SAFETY = distance from an edge below which a pixel is redone exactly
ROUNDING = 1e-9  # cells: float rounding of the cell coordinates (≈ 1e-11 at 10⁵ cells), with room to spare


def exact_lonlat(crs: CRS, transform: Affine, rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact longitude and latitude of pixel centres at absolute (row, column) indices of a raster.

    The arithmetic is the per-pixel reference's: index + 0.5, times the pixel size, plus the origin, then PROJ.
    """
    x = transform.c + (columns + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    lon, lat = transformer(crs.to_wkt(), "EPSG:4326").transform(x, y)  # made once per thread
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def lattice_points(size: int) -> np.ndarray:
    """Pixel offsets 0, LATTICE, 2·LATTICE, … and always the last pixel (size − 1)."""
    points = np.arange(0, size, LATTICE, dtype=np.float64)
    return points if points[-1] == size - 1 else np.append(points, size - 1)


def interpolation_matrix(positions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(len(positions), len(points)) weights of linear interpolation between lattice points."""
    matrix = np.zeros((positions.size, points.size))
    if points.size == 1:
        matrix[:, 0] = 1.0
        return matrix
    left = np.clip(np.searchsorted(points, positions, side="right") - 1, 0, points.size - 2)
    weight = (positions - points[left]) / (points[left + 1] - points[left])
    matrix[np.arange(positions.size), left] = 1.0 - weight
    matrix[np.arange(positions.size), left + 1] = weight
    return matrix


def lattice_cell_index(positions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the lattice cell (between points i and i + 1) holding each pixel offset."""
    return np.clip(np.searchsorted(points, positions, side="right") - 1, 0, max(0, points.size - 2))


def cell_coordinates(grid: LonLatGrid, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v): column and row coordinates in output cells, as :meth:`LonLatGrid.cell_of` computes them."""
    return (lon - grid.west) / grid.step, (grid.north - lat) / grid.step


@dataclass(frozen=True)
class Lattice:
    """Exact cell coordinates on the lattice of one chunk, and each lattice cell's error bound.

    Attributes:
        row_points, column_points: Lattice pixel offsets inside the chunk.
        u, v: (len(row_points), len(column_points)) exact column and row coordinates in output cells.
        bound: (max(1, len(row_points) − 1), max(1, len(column_points) − 1)) distance in cells within which an
            interpolated coordinate lies of the exact one, in each lattice cell (measured × SAFETY + ROUNDING).
    """

    row_points: np.ndarray
    column_points: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bound: np.ndarray


def build_lattice(source: Any, window: Window, grid: LonLatGrid) -> Lattice:
    """Exact transforms on the lattice of a chunk, and the interpolation error at its probes.

    The probes are the lattice refined by two in each direction: lattice points, midpoints of lattice cell edges
    (where interpolation along one axis errs most) and lattice cell centres (where both errors add).
    """
    height, width = int(window.height), int(window.width)
    row_points, column_points = lattice_points(height), lattice_points(width)
    row_probes = np.interp(np.arange(2 * row_points.size - 1) / 2, np.arange(row_points.size), row_points)
    column_probes = np.interp(np.arange(2 * column_points.size - 1) / 2, np.arange(column_points.size), column_points)
    probe_rows, probe_columns = np.meshgrid(window.row_off + row_probes, window.col_off + column_probes, indexing="ij")
    u, v = cell_coordinates(grid, *exact_lonlat(source.crs, source.transform, probe_rows, probe_columns))
    u_lattice, v_lattice = u[::2, ::2], v[::2, ::2]
    row_weights = interpolation_matrix(row_probes, row_points)
    column_weights = interpolation_matrix(column_probes, column_points)
    with np.errstate(invalid="ignore"):
        error = np.maximum(
            np.abs(row_weights @ u_lattice @ column_weights.T - u),
            np.abs(row_weights @ v_lattice @ column_weights.T - v),
        )
    error[~np.isfinite(error)] = np.inf
    return Lattice(row_points, column_points, u_lattice, v_lattice, cell_bounds(error, u_lattice * grid.step))


def cell_bounds(error: np.ndarray, lon_lattice: np.ndarray) -> np.ndarray:
    """Largest error of each lattice cell's 3 × 3 probes × SAFETY + ROUNDING; ∞ where the map is not smooth.

    A lattice cell whose corner longitudes differ by more than 90° straddles the antimeridian or a pole: there
    the probes cannot vouch for the interpolation, so all its pixels are transformed exactly.
    """
    rows, columns = max(1, (error.shape[0] - 1) // 2), max(1, (error.shape[1] - 1) // 2)
    bound = np.zeros((rows, columns))
    for row_offset in range(min(3, error.shape[0])):
        for column_offset in range(min(3, error.shape[1])):
            part = error[row_offset::2][:rows, column_offset::2][:, :columns]
            bound[: part.shape[0], : part.shape[1]] = np.maximum(bound[: part.shape[0], : part.shape[1]], part)
    row_pairs = (0, min(1, lon_lattice.shape[0] - 1))
    column_pairs = (0, min(1, lon_lattice.shape[1] - 1))
    corners = np.stack([lon_lattice[a : a + rows, b : b + columns] for a in row_pairs for b in column_pairs])
    with np.errstate(invalid="ignore"):
        jump = ~((corners.max(axis=0) - corners.min(axis=0)) <= 90)
    bound = bound * SAFETY + ROUNDING
    bound[jump | ~np.isfinite(bound)] = np.inf
    return bound


@dataclass
class Placement:
    """Output cells of the placed pixels of a chunk, as 1-D arrays in the row-major order of ``selected``.

    Attributes:
        selected: (height, width) bool, the valid pixels less those certainly outside the block asked for.
        rows, columns: int64 output cell of each placed pixel centre; −1 outside the grid.
        latitude: Degrees, exact wherever it decides a climate band (None when none is asked).
        exact: Number of pixels transformed exactly.
    """

    selected: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    latitude: np.ndarray | None
    exact: int


def interpolate(lattice: Lattice, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """(u, v, bound) of every pixel of a chunk: interpolated cell coordinates and their error bound (cells).

    The bound is one number for the chunk when its largest lattice-cell bound is below 10⁻³ cells (then it costs
    nothing to use it everywhere), else a per-pixel array.
    """
    row_offsets, column_offsets = np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64)
    row_weights = interpolation_matrix(row_offsets, lattice.row_points)
    column_weights = interpolation_matrix(column_offsets, lattice.column_points)
    u = row_weights @ lattice.u @ column_weights.T
    v = row_weights @ lattice.v @ column_weights.T
    largest = float(lattice.bound.max())
    if largest < 1e-3:
        return u, v, largest
    bound = lattice.bound[lattice_cell_index(row_offsets, lattice.row_points)][
        :, lattice_cell_index(column_offsets, lattice.column_points)
    ]
    return u, v, bound


def place_pixels(
    source: Any,
    window: Window,
    grid: LonLatGrid,
    valid: np.ndarray,
    latitudes: tuple[float, ...] = (),
    block: Block | None = None,
) -> Placement:
    """Output cell of every ``valid`` pixel of a chunk, equal to transforming each centre exactly.

    Args:
        source: The class raster (``crs``, ``transform``).
        window: The chunk (rasterio window, integer offsets).
        grid: Output lat/lon grid.
        valid: (height, width) bool, the pixels that count.
        latitudes: |latitude| limits of climate bands (degrees); pixels near them get an exact latitude.
        block: The output block (first row, first column, rows, columns) the caller keeps, if any: pixels
            certainly outside it (given the bound) are not placed at all.
    """
    u, v, bound = interpolate(build_lattice(source, window, grid), int(window.height), int(window.width))
    selected = valid if block is None else valid & around_block(u, v, bound, block)
    u, v = u[selected], v[selected]
    if isinstance(bound, np.ndarray):
        bound = bound[selected]
    with np.errstate(invalid="ignore"):
        u_floor, v_floor = np.floor(u), np.floor(v)
        u_part, v_part = u - u_floor, v - v_floor
        # Written as "not safely inside" so that NaN and ∞ count as near.
        near = ~((u_part > bound) & (u_part < 1 - bound) & (v_part > bound) & (v_part < 1 - bound))
        latitude = None
        if latitudes:
            latitude = grid.north - v * grid.step
            for limit in latitudes:
                near |= ~(np.abs(np.abs(latitude) - limit) > bound * grid.step + 1e-12)
    rows, columns = interpolated_cells(grid, u_floor, v_floor)
    redo = np.flatnonzero(near)
    if redo.size:
        pixel_rows, pixel_columns = np.nonzero(selected)
        lon, lat = exact_lonlat(
            source.crs, source.transform, window.row_off + pixel_rows[redo], window.col_off + pixel_columns[redo]
        )
        rows[redo], columns[redo] = grid.cell_of(lon, lat)
        if latitude is not None:
            latitude[redo] = lat
    return Placement(selected, rows, columns, latitude, int(redo.size))


def around_block(u: np.ndarray, v: np.ndarray, bound: np.ndarray | float, block: Block) -> np.ndarray | bool:
    """Pixels whose interpolated cell lies within a cell of ``block`` (True everywhere if the bound is ≥ ½ cell).

    With a bound below ½ cell, a pixel whose interpolated position is a cell or more outside the block is more
    than ½ cell outside it exactly, so leaving it out changes nothing.
    """
    if not float(np.max(bound)) < 0.5:  # NaN counts as large
        return True
    first_row, first_column, n_rows, n_columns = block
    with np.errstate(invalid="ignore"):
        return (
            (v >= first_row - 1)
            & (v < first_row + n_rows + 1)
            & (u >= first_column - 1)
            & (u < first_column + n_columns + 1)
        )


def interpolated_cells(grid: LonLatGrid, u_floor: np.ndarray, v_floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of floored cell coordinates as :meth:`LonLatGrid.cell_of` numbers them (−1 outside)."""
    with np.errstate(invalid="ignore"):
        # Compared as floats, so NaN and ±∞ (whose integer casts are undefined) count as outside.
        outside = ~((v_floor >= 0) & (v_floor < grid.rows) & (u_floor >= 0) & (u_floor < grid.cols))
        rows, columns = v_floor.astype(np.int64), u_floor.astype(np.int64)
    rows[outside], columns[outside] = -1, -1
    return rows, columns
