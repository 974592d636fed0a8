"""Soft fractions: a cell's cover fractions are its pixels' summed probabilities, against a brute-force reference."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray
from affine import Affine
from conftest import make_cover
from pyproj import Transformer

from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.cover.aggregate import CoverMapping, open_sources
from s2ecosg.cover.readers import Probabilities
from s2ecosg.cover.run import output_grid
from s2ecosg.cover.writers.table import share_codes
from s2ecosg.io import write_raster
from s2ecosg.legend import N_COVERS, load_legend
from s2ecosg.surfex import read_cover


def test_soft_fractions_sum_the_probabilities_of_every_pixel(tmp_path: Path) -> None:
    generator = np.random.default_rng(8)
    size = 240
    ranked = np.zeros((6, size, size), np.uint8)
    for row in range(size):  # three distinct CLC classes per pixel, probabilities summing to at most 1
        ranked[0::2, row] = np.stack([generator.choice(np.arange(1, 45), 3, replace=False) for _ in range(size)]).T
    codes = np.sort(generator.integers(1, 90, (3, size, size)), axis=0)[::-1]
    ranked[1::2] = codes
    transform = Affine(10, 0, 4_300_000, 0, -10, 3_200_000)
    path = tmp_path / "E4300N3197.probs.tif"
    write_raster(path, ranked, crs="EPSG:3035", transform=transform)
    settings = CoverConfig(basename="SOFT", resolution_deg="1/3600", climate="temperate", fractions="soft")
    legend, base = load_legend("clc"), tmp_path / "cover" / "SOFT"
    make_cover(
        [str(path)], [None], legend, settings, DomainConfig(), str(base), {"run_hash": "0"}, reader=Probabilities()
    )

    # Brute force: every pixel centre transformed exactly, its three covers given their renormalised probabilities.
    grid, _ = output_grid(settings, DomainConfig(), open_sources([str(path)], [None]))
    columns, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    x, y = transform.c + columns * transform.a, transform.f + rows * transform.e
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(x, y)
    cell_rows, cell_columns = grid.cell_of(lon, lat)
    weights = codes / codes.sum(axis=0)
    covers = CoverMapping.from_legend(legend, settings).covers(ranked[0::2], None)
    sums = np.zeros((grid.rows, grid.cols, N_COVERS + 1))
    for rank in range(3):
        np.add.at(sums, (cell_rows, cell_columns, covers[rank]), weights[rank])
    pixels = sums[..., 1:].sum(axis=-1)
    occupied = pixels > 0
    with np.errstate(invalid="ignore"):
        expected = share_codes((sums[..., 1:] / pixels[..., None]).astype(np.float32))

    with netCDF4.Dataset(f"{base}.nc") as dataset:
        dataset.set_auto_maskandscale(False)
        written = np.moveaxis(dataset["fraction"][:], 0, -1)
    assert np.abs(written[occupied].astype(int) - expected[occupied]).max() <= 1  # summation order: one code at most
    assert (written[occupied] == expected[occupied]).mean() > 0.999
    cover, _ = read_cover(base)
    assert np.array_equal(cover[occupied], sums[..., 1:].argmax(axis=-1)[occupied] + 1)
    with xarray.open_dataset(f"{base}.nc") as dataset:
        total = dataset["fraction"].sum("cover_class").values
        entropy = dataset["cover_entropy"].values
    assert np.abs(total[occupied] - 1).max() <= N_COVERS * 0.5 / 250  # 1 to within packing precision
    share = sums[..., 1:][occupied] / pixels[occupied][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = np.where(share > 0, -share * np.log(share), 0).sum(axis=-1) / np.log(N_COVERS)
    np.testing.assert_allclose(entropy[occupied], reference, atol=0.5 / 250 + 1e-6)
