"""Cover ensemble members: every pixel's class drawn from its calibrated probabilities with correlated uniforms.

Member ``m`` draws pixel p's class by inverse CDF: its K most likely classes (``predict/{tile}.probs.tif`` with
``predict.probabilities: K``, else ``predict/{tile}.top2.tif``, K = 2: class, 255 × p, runner-up, 255 × p, …) with
the probabilities renormalised over the K (the rest of the mass, spread over classes the file does not name, is
shared between them in proportion), and a uniform u(p) = Φ(z(p)) where z is a Gaussian
random field of correlation ρ(d) = exp(−d² / 2L²) (L = ``cover.member_length_m``). So neighbouring pixels tend to
move together, as the errors of a segmentation network do, and every pixel's u is exactly uniform: each member's
class frequencies follow the probabilities.

The field is a kernel sum over a global lattice in the target grid's coordinates: z(p) = Σ_n w(p − n) g_n /
√(Σ_n w(p − n)²), with w a Gaussian of σ = L/√2 (two such kernels convolve to ρ) and g_n standard normal values
drawn from a counter-based hash of (seed, member, node). A pixel's value depends only on its coordinates and the
nodes near it, never on which tile or block it is computed in: no seams, memory per chunk, reruns identical.
L = 0 gives independent pixels (hashed per pixel); a length far beyond the domain gives one value per map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from scipy.special import ndtr

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

NODES_PER_SIGMA = 3  # lattice nodes per kernel σ: the sum is then a faithful Gaussian field
RADIUS = 5.0  # kernel σs summed on each side of a pixel (weight e^-12.5 ≈ 4e-6 there, 0 beyond)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(values: Any) -> Any:
    """SplitMix64's finaliser: uint64 → well-mixed uint64 (a counter-based generator, vectorised)."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def hashed_uniform(seed: int, member: int, first: np.ndarray, second: np.ndarray, salt: int = 0) -> np.ndarray:
    """Uniforms in (0, 1) from a hash of (seed, member, two signed integer coordinates, salt)."""
    with np.errstate(over="ignore"):
        key = mix(np.uint64(seed) * GOLDEN + np.uint64(member) + np.uint64(salt) * np.uint64(0xD1B54A32D192ED03))
        key = mix(key ^ first.astype(np.int64).astype(np.uint64) * GOLDEN)
        key = mix(key ^ second.astype(np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    return ((key >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def node_normals(seed: int, member: int, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(len(rows), len(columns)) standard normal values of lattice nodes (Box–Muller on two hashed uniforms)."""
    row_index, column_index = np.meshgrid(rows, columns, indexing="ij")
    radius = np.sqrt(-2.0 * np.log(hashed_uniform(seed, member, row_index, column_index, 1)))
    return radius * np.cos(2 * np.pi * hashed_uniform(seed, member, row_index, column_index, 2))


def kernel_weights(positions: np.ndarray, sigma: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(positions, nodes) Gaussian weights of the lattice nodes within RADIUS σ, and those nodes' indices."""
    first = int(np.floor((positions.min() - RADIUS * sigma) / spacing))
    last = int(np.ceil((positions.max() + RADIUS * sigma) / spacing))
    nodes = np.arange(first, last + 1)
    distance = np.abs(positions[:, None] - nodes[None, :] * spacing)
    # Cut at RADIUS σ from each pixel, not from the chunk: a pixel sums the same nodes in any chunk or tile.
    return np.where(distance <= RADIUS * sigma, np.exp(-0.5 * (distance / sigma) ** 2), 0.0), nodes


def member_uniforms(x: np.ndarray, y: np.ndarray, length: float, member: int, seed: int, pixel: float) -> np.ndarray:
    """(len(y), len(x)) uniforms of member ``member`` at the pixel centres of a grid-aligned chunk.

    Args:
        x: Pixel-centre x of the chunk's columns (metres, target grid CRS).
        y: Pixel-centre y of the chunk's rows (metres).
        length: Correlation length L (m); 0 = independent pixels.
        member: Member number (≥ 1).
        seed: The run's seed.
        pixel: Pixel size (m), to number pixels globally when L = 0.
    """
    if length <= 0:
        columns, rows = np.round(x / pixel - 0.5), np.round(y / pixel - 0.5)
        row_index, column_index = np.meshgrid(rows, columns, indexing="ij")
        return hashed_uniform(seed, member, row_index, column_index)
    sigma = length / np.sqrt(2.0)
    spacing = sigma / NODES_PER_SIGMA
    column_weights, column_nodes = kernel_weights(x, sigma, spacing)
    row_weights, row_nodes = kernel_weights(y, sigma, spacing)
    field = row_weights @ node_normals(seed, member, row_nodes, column_nodes) @ column_weights.T
    norm = np.sqrt(np.square(row_weights).sum(axis=1))[:, None] * np.sqrt(np.square(column_weights).sum(axis=1))
    return np.clip(ndtr(field / norm), 1e-12, 1 - 1e-12)


def draw_classes(ranked: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Each pixel's class drawn by inverse CDF over its ranked classes (renormalised) with its uniform; 0 stays 0.

    Args:
        ranked: (2K, rows, cols) uint8: class, 255 × p, runner-up class, 255 × p, … (``top2.tif``: K = 2,
            ``probs.tif``: K = ``predict.probabilities``).
        uniforms: (rows, cols) in (0, 1).
    """
    classes, codes = ranked[0::2], ranked[1::2].astype(np.float64)
    total = codes.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cumulative = np.where(total > 0, np.cumsum(codes, axis=0) / total, 1.0)
    rank = np.minimum((uniforms[None] >= cumulative).sum(axis=0), len(classes) - 1)
    return np.take_along_axis(classes, rank[None], axis=0)[0].astype(np.uint8)


@dataclass(frozen=True)
class MemberDraw:
    """Member ``member`` (≥ 1) of the ensemble: correlation length (m) and seed of its random field.

    A :class:`~s2ecosg.cover.readers.PixelClasses` reader of ranked-classes rasters (``probs.tif``, ``top2.tif``).
    """

    member: int
    length: float
    seed: int
    weighted: bool = False

    def read(self, raster: DatasetReader, window: Window, transform: Affine) -> tuple[np.ndarray, np.ndarray | None]:
        """The member's class of every pixel of a chunk of an open ranked-classes raster."""
        ranked = raster.read(window=window)
        return (self.classes(ranked, window, transform) if ranked[0].any() else ranked[0])[None], None

    def classes(self, ranked: np.ndarray, window: Window, transform: Affine) -> np.ndarray:
        """The member's class ids of a chunk (rasterio window) of a ranked-classes raster with the given transform."""
        height, width = ranked.shape[1:]
        x = transform.c + (window.col_off + np.arange(width) + 0.5) * transform.a
        y = transform.f + (window.row_off + np.arange(height) + 0.5) * transform.e
        uniforms = member_uniforms(x, y, self.length, self.member, self.seed, abs(transform.a))
        return draw_classes(ranked, uniforms)
