"""HARMONIE domains: grid, extent and namelists against numbers worked out independently with pyproj."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from pyproj import Proj

from s2ecosg.cli import main
from s2ecosg.config_files import load_config
from s2ecosg.domain import domain_from_keys, named_domains
from s2ecosg.errors import InputError
from s2ecosg.lonlat import snap_grid


def independent_extent(nlon, nlat, lonc, latc, lon0, lat0, gsize, ezone=11, margin=0):
    """Lon/lat box of the cell corners, following pysurfex's ConfProj (centre cell formula), by hand."""
    projection = Proj(proj="lcc", lat_0=lat0, lon_0=lon0, lat_1=lat0, lat_2=lat0, R=6.37122e6)
    nimax, njmax = nlon - ezone, nlat - ezone
    xc, yc = projection(lonc, latc)
    # pysurfex: first cell centre at xc - 0.5 * (NIMAX - 1) * XDX; corners half a cell further out.
    x0 = xc - 0.5 * (nimax - 1) * gsize - 0.5 * gsize - margin * gsize
    y0 = yc - 0.5 * (njmax - 1) * gsize - 0.5 * gsize - margin * gsize
    xs = x0 + gsize * np.arange(nimax + 2 * margin + 1)
    ys = y0 + gsize * np.arange(njmax + 2 * margin + 1)
    lon, lat = projection(*np.meshgrid(xs, ys), inverse=True)
    return lon.min(), lat.min(), lon.max(), lat.max()


def test_ireland25_extent_and_namelists() -> None:
    domain = named_domains()["IRELAND25"]
    assert (domain.nimax, domain.njmax) == (529, 489)
    expected = independent_extent(540, 500, -7.5, 53.5, 5.0, 53.5, 2500.0, margin=2)
    assert domain.lonlat_extent(2) == pytest.approx(expected, abs=1e-9)
    # Rough sanity: 529 × 2.5 km ≈ 1322 km wide around 7.5° W, so the box spans about 20° of longitude.
    assert -21 < expected[0] < -19 and 2 < expected[2] < 3.5 and 46 < expected[1] < 47.5 and 59 < expected[3] < 60.5
    text = domain.namelists()
    assert "CGRID='CONF PROJ'" in text and "NIMAX=529, NJMAX=489" in text and "XDX=2500.0, XDY=2500.0" in text
    assert f"XRPK={math.sin(math.radians(53.5))!r}" in text and "XLAT0=53.5, XLON0=5.0" in text


def test_output_grid_snapped_and_containing() -> None:
    extent = named_domains()["TEST_11"].lonlat_extent(2)
    grid = snap_grid(extent, 1 / 1800)
    west, south, east, north = grid.bounds
    assert west <= extent[0] and south <= extent[1] and east >= extent[2] and north >= extent[3]
    for edge in grid.bounds:
        assert edge * 1800 == pytest.approx(round(edge * 1800), abs=1e-6)
    assert east - extent[2] < 1 / 1800 + 1e-9 and extent[0] - west < 1 / 1800 + 1e-9


def test_polar_stereographic_domain() -> None:
    domain = domain_from_keys(
        "POLAR", {"nlon": 61, "nlat": 61, "lonc": 20.0, "latc": 78.0, "lon0": 20.0, "lat0": 90.0, "gsize": 2500.0}
    )
    assert "+proj=stere" in domain.proj4
    projection = Proj(proj="stere", lat_0=90, lat_ts=90, lon_0=20, R=6.37122e6)
    xc, yc = projection(20.0, 78.0)
    corners = [(xc + dx * 62500, yc + dy * 62500) for dx in (-1, 1) for dy in (-1, 1)]  # 50 cells of 2.5 km
    lons, lats = zip(*(projection(x, y, inverse=True) for x, y in corners), strict=True)
    west, south, east, north = domain.lonlat_extent()
    assert south == pytest.approx(min(lats), abs=1e-9) and west <= min(lons) and east >= max(lons)
    assert "XRPK=1.0" in domain.namelists()


def test_domain_command_prints_grid_and_namelists() -> None:
    result = CliRunner().invoke(main, ["domain", "IRELAND25"])
    assert result.exit_code == 0, result.output
    assert "NIMAX 529 × NJMAX 489" in result.output and "&NAM_CONF_PROJ_GRID" in result.output
    grid = snap_grid(independent_extent(540, 500, -7.5, 53.5, 5.0, 53.5, 2500.0, margin=2), 1 / 1800)
    assert f"output grid: {grid.rows} rows × {grid.cols} cols" in result.output


def test_unknown_domain_and_bad_keys() -> None:
    with pytest.raises(InputError, match="unknown domain"):
        load_config({"labels": {"path": "x"}, "imagery": {"paths": ["x"]}, "domain": {"name": "NOWHERE"}})
    with pytest.raises(InputError, match=r"missing HARMONIE key\(s\) NLAT, LONC, LATC, LON0, LAT0, GSIZE"):
        load_config(
            {"labels": {"path": "x"}, "imagery": {"paths": ["x"]}, "domain": {"name": "X", "harmonie": {"nlon": 50}}}
        )


@pytest.mark.parametrize("name", ["IRELAND25", "DKCOEXP"])
def test_cell_centres_equal_pysurfex_conf_proj_from_harmonie(name: str) -> None:
    """Pysurfex (the HARMONIE surface tools) builds the same grid from the same domain keys, to the millimetre."""
    from pyproj import Transformer
    from pysurfex.geo import ConfProjFromHarmonie

    domain = named_domains()[name]
    keys = {"NLON": domain.nlon, "NLAT": domain.nlat, "LONC": domain.lonc, "LATC": domain.latc}
    keys |= {"LON0": domain.lon0, "LAT0": domain.lat0, "GSIZE": domain.gsize, "EZONE": domain.ezone}
    oracle = ConfProjFromHarmonie({key: str(value) for key, value in keys.items()})
    assert (oracle.nimax, oracle.njmax) == (domain.nimax, domain.njmax)
    x_edges, y_edges = domain.cell_edges()
    x, y = np.meshgrid((x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2, indexing="ij")
    lon, lat = Transformer.from_crs(domain.proj4, "EPSG:4326", always_xy=True).transform(x, y)
    np.testing.assert_allclose(lon, oracle.lons, atol=1e-8)  # 1e-8° ≈ 1 mm
    np.testing.assert_allclose(lat, oracle.lats, atol=1e-8)
