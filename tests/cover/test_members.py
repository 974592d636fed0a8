"""Member draws: class frequencies follow the probabilities, uniforms correlate as asked, no seams at tile edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray
from affine import Affine
from conftest import make_cover
from scipy.special import ndtri
from scipy.stats import chi2

from s2ecosg.config import CoverConfig, DomainConfig
from s2ecosg.config_files import validate_sections
from s2ecosg.cover.aggregate import CoverMapping, aggregate_block, open_sources
from s2ecosg.cover.members import MemberDraw, draw_classes, member_uniforms
from s2ecosg.cover.run import CoverRequest, output_grid, run_members
from s2ecosg.io import write_raster
from s2ecosg.legend import load_legend
from s2ecosg.surfex import read_cover
from s2ecosg.validate import validate_cover

PIXEL = 10.0


def centres(first: int, count: int) -> np.ndarray:
    """Pixel-centre coordinates (m) of ``count`` pixels from global pixel ``first``."""
    return (np.arange(first, first + count) + 0.5) * PIXEL


@pytest.mark.parametrize("length", [0.0, 20.0])
def test_each_members_classes_follow_the_probabilities(length: float) -> None:
    # Every pixel: class 3 with 255 × p = 153 (0.6), class 7 with 51 (0.2): renormalised 0.75 / 0.25.
    top2 = np.zeros((4, 600, 600), np.uint8)
    top2[:] = np.array([3, 153, 7, 51], np.uint8)[:, None, None]
    for member in (1, 2, 3):
        uniforms = member_uniforms(centres(1000, 600), centres(-300, 600), length, member, seed=11, pixel=PIXEL)
        drawn = draw_classes(top2, uniforms)
        # Pixels 10 apart (100 m = 5 L) are independent: a plain chi-square test at the 0.1 % level.
        sample = drawn[::10, ::10].ravel()
        observed = np.array([(sample == 3).sum(), (sample == 7).sum()])
        expected = sample.size * np.array([0.75, 0.25])
        assert observed.sum() == sample.size
        assert ((observed - expected) ** 2 / expected).sum() < chi2.ppf(0.999, 1)


def test_member_zero_is_not_drawn_and_nodata_stays() -> None:
    top2 = np.array([[[0, 5]], [[0, 255]], [[0, 0]], [[0, 0]]], np.uint8)  # nodata, then a sure class 5
    assert draw_classes(top2, np.array([[0.3, 0.999]])).tolist() == [[0, 5]]


@pytest.mark.parametrize("length", [100.0, 500.0])
def test_uniforms_correlate_with_the_chosen_length(length: float) -> None:
    lags = {0.5: int(0.5 * length / PIXEL), 1.0: int(length / PIXEL), 2.0: int(2 * length / PIXEL)}
    sums = dict.fromkeys(lags, 0.0)
    count = dict.fromkeys(lags, 0)
    everything = []
    for member in range(1, 81):
        z = ndtri(member_uniforms(centres(0, 2500), centres(7, 1), length, member, seed=5, pixel=PIXEL))[0]
        everything.append(z)
        for distance, lag in lags.items():
            sums[distance] += float((z[:-lag] * z[lag:]).sum())
            count[distance] += z.size - lag
    values = np.concatenate(everything)
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05  # standard normal before Φ
    for distance in lags:
        assert sums[distance] / count[distance] == pytest.approx(np.exp(-(distance**2) / 2), abs=0.06)


def test_no_jump_across_tile_edges() -> None:
    # One 200 × 200 region at once, or as four 100 × 100 tiles: the same uniforms, to float rounding.
    x, y = centres(4000, 200), centres(2000, 200)[::-1]
    whole = member_uniforms(x, y, 300.0, 2, seed=1, pixel=PIXEL)
    tiles = np.block(
        [
            [
                member_uniforms(x[:100], y[:100], 300.0, 2, 1, PIXEL),
                member_uniforms(x[100:], y[:100], 300.0, 2, 1, PIXEL),
            ],
            [
                member_uniforms(x[:100], y[100:], 300.0, 2, 1, PIXEL),
                member_uniforms(x[100:], y[100:], 300.0, 2, 1, PIXEL),
            ],
        ]
    )
    np.testing.assert_allclose(tiles, whole, rtol=0, atol=1e-12)
    # And the field is smooth across the edge: the step between columns 99 and 100 is like any other step.
    steps = np.abs(np.diff(ndtri(whole), axis=1))
    assert steps[:, 99].mean() < 2 * steps.mean()


def test_lengths_zero_and_huge_are_the_two_limits() -> None:
    x, y = centres(0, 300), centres(0, 300)
    independent = ndtri(member_uniforms(x, y, 0.0, 1, seed=3, pixel=PIXEL))
    assert abs(np.corrcoef(independent[:, :-1].ravel(), independent[:, 1:].ravel())[0, 1]) < 0.02
    one_value = member_uniforms(x, y, 1e7, 1, seed=3, pixel=PIXEL)
    assert one_value.max() - one_value.min() < 1e-3  # ρ(3 km) = 1 − 5e-8 at L = 10⁴ km
    assert member_uniforms(x, y, 1e7, 2, seed=3, pixel=PIXEL)[0, 0] != one_value[0, 0]  # per member


def test_member_covers_are_valid_pairs_that_differ_where_the_model_hesitates(tmp_path: Path) -> None:
    # 600 × 600 px of 10 m (EPSG:3035): the west half sure of class 3 (255), the east half torn between class 3
    # (128) and class 7 (127); class ids of the CLC legend map to distinct ECOSG covers.
    top2 = np.zeros((4, 600, 600), np.uint8)
    top2[:, :, :300] = np.array([3, 255, 0, 0], np.uint8)[:, None, None]
    top2[:, :, 300:] = np.array([3, 128, 7, 127], np.uint8)[:, None, None]
    transform = Affine(10, 0, 4_300_000, 0, -10, 3_200_000)
    write_raster(tmp_path / "E4300N3194.top2.tif", top2, crs="EPSG:3035", transform=transform)
    write_raster(tmp_path / "E4300N3194.tif", top2[:1], crs="EPSG:3035", transform=transform)
    settings = CoverConfig(basename="TOP", members=2, member_length_m=50.0)
    legend, provenance = load_legend("clc"), {"s2ecosg_version": "test", "run_hash": "0" * 16}
    base = tmp_path / "cover" / "TOP"
    make_cover([str(tmp_path / "E4300N3194.tif")], [None], legend, settings, DomainConfig(), str(base), provenance)
    deterministic, _ = read_cover(base)
    drawn = []
    for number in (1, 2):
        member_base = tmp_path / "cover" / f"TOP_M{number:02d}"
        member = MemberDraw(number, settings.member_length_m, settings.member_seed)
        paths = [str(tmp_path / "E4300N3194.top2.tif")]
        make_cover(paths, [None], legend, settings, DomainConfig(), str(member_base), provenance, reader=member)
        assert validate_cover(member_base) == []
        assert (tmp_path / "cover" / f"TOP_M{number:02d}.nam").read_text().count("YCOVER='TOP_M0") == 1
        cover, _ = read_cover(member_base)
        drawn.append(cover)
    columns = deterministic.shape[1]
    sure, torn = (slice(None), slice(0, columns // 3)), (slice(None), slice(2 * columns // 3, None))
    for cover in drawn:
        assert np.array_equal(cover[sure], deterministic[sure])  # nothing to draw where the model is sure
        assert (cover[torn] != deterministic[torn]).mean() > 0.1  # half the pixels go the other way
    assert not np.array_equal(drawn[0], drawn[1])  # members differ
    assert not (tmp_path / "cover" / "TOP_M01.nc").exists()  # members: the pair PGD reads and its namelist


def test_a_rerun_reuses_every_member_block_and_another_length_redraws(tmp_path: Path) -> None:
    generator = np.random.default_rng(4)
    top2 = np.stack(
        [
            generator.integers(1, 10, (300, 300)),
            np.full((300, 300), 150),
            generator.integers(10, 20, (300, 300)),
            np.full((300, 300), 100),
        ]
    ).astype(np.uint8)
    path = tmp_path / "E4300N3197.top2.tif"
    write_raster(path, top2, crs="EPSG:3035", transform=Affine(10, 0, 4_300_000, 0, -10, 3_200_000))
    settings = CoverConfig(basename="TOP", members=1, resolution_deg="1/3600")
    cache, provenance = tmp_path / "cache" / "M01", {"s2ecosg_version": "test"}

    def member_run(folder: str, length: float) -> bytes:
        draw = MemberDraw(1, length, 0)
        base = tmp_path / folder / "TOP_M01"
        make_cover(
            [str(path)],
            [None],
            load_legend("clc"),
            settings,
            DomainConfig(),
            str(base),
            provenance,
            1,
            str(cache),
            draw,
        )
        return Path(f"{base}.dir").read_bytes()

    first = member_run("first", 100.0)
    stored = {file.name: file.stat().st_mtime_ns for file in cache.glob("*.npz")}
    assert stored and member_run("second", 100.0) == first
    assert {file.name: file.stat().st_mtime_ns for file in cache.glob("*.npz")} == stored  # nothing redrawn
    assert member_run("third", 0.0) != first  # another field: every block redrawn
    assert all(file.stat().st_mtime_ns != stored[file.name] for file in cache.glob("*.npz"))


def test_draws_over_the_top_three_follow_their_renormalised_probabilities() -> None:
    # class 4: 120, class 9: 60, class 2: 40 (of 255; the remaining 35 named nowhere) → 120/220, 60/220, 40/220.
    ranked = np.zeros((6, 400, 400), np.uint8)
    ranked[:] = np.array([4, 120, 9, 60, 2, 40], np.uint8)[:, None, None]
    uniforms = member_uniforms(centres(0, 400), centres(0, 400), 0.0, 1, seed=2, pixel=PIXEL)
    drawn = draw_classes(ranked, uniforms).ravel()
    observed = np.array([(drawn == value).sum() for value in (4, 9, 2)])
    expected = drawn.size * np.array([120, 60, 40]) / 220
    assert observed.sum() == drawn.size
    assert ((observed - expected) ** 2 / expected).sum() < chi2.ppf(0.999, 2)


def test_the_netcdf_gives_the_spread_of_each_fraction_over_the_members(tmp_path: Path) -> None:
    top2 = np.zeros((4, 400, 400), np.uint8)
    top2[:, :, :200] = np.array([3, 255, 0, 0], np.uint8)[:, None, None]  # sure: class 3
    top2[:, :, 200:] = np.array([3, 128, 7, 127], np.uint8)[:, None, None]  # torn between 3 and 7
    transform = Affine(10, 0, 4_300_000, 0, -10, 3_200_000)
    write_raster(tmp_path / "T.top2.tif", top2, crs="EPSG:3035", transform=transform)
    write_raster(tmp_path / "T.tif", top2[:1], crs="EPSG:3035", transform=transform)
    config = validate_sections(
        {"cover": {"basename": "TOP", "members": 4, "member_length_m": 30.0}, "predict": {"top2": True}}
    )
    legend, provenance, base = load_legend("clc"), {"run_hash": "0"}, str(tmp_path / "cover" / "TOP")
    ranked = [str(tmp_path / "T.top2.tif")]
    request = CoverRequest(ranked, legend, config.cover, config.domain, base, provenance, cache=str(tmp_path / "cache"))
    ensemble = run_members(request)
    assert ensemble is not None and len(ensemble.members) == 4
    make_cover(
        [str(tmp_path / "T.tif")], [None], legend, config.cover, config.domain, base, provenance, ensemble=ensemble
    )
    with xarray.open_dataset(f"{base}.nc") as dataset:
        spread = dataset["fraction_spread"].values  # (33, rows, cols)
    columns = spread.shape[2]
    sure, torn = slice(0, columns // 3), slice(2 * columns // 3, None)
    assert np.nanmax(spread[:, :, sure]) == 0  # the members agree where the model is sure
    assert np.nanmean(spread[:, :, torn].max(axis=0)) > 0.05  # and spread where it hesitates
    # Reference: each member aggregated over the whole grid as one block, the spread of its fractions by NumPy.
    sources = open_sources(ranked, [None])
    grid, _ = output_grid(config.cover, config.domain, sources)
    mapping = CoverMapping.from_legend(legend, config.cover)
    shares = []
    for member in range(1, 5):
        draw = MemberDraw(member, 30.0, 0)
        counts = aggregate_block(sources, grid, (0, 0, grid.rows, grid.cols), mapping, draw).counts[..., 1:]
        with np.errstate(invalid="ignore"):
            shares.append(np.moveaxis(counts / counts.sum(axis=-1, keepdims=True), -1, 0))
    reference = np.std(np.stack(shares), axis=0)
    occupied = ~np.isnan(reference[0])
    assert np.abs(spread[:, occupied] - reference[:, occupied]).max() <= 0.5 / 250 + 1e-6
