"""HARMONIE domains: their SURFEX CONF PROJ grid, its lon/lat extent and the PGD grid namelists.

A domain is given by the HARMONIE keys ``NLON, NLAT, LONC, LATC, LON0, LAT0, GSIZE`` and ``EZONE``
(``scr/Harmonie_domains.pm``). SURFEX's grid has ``NIMAX = NLON − EZONE`` by ``NJMAX = NLAT − EZONE`` cells of
``GSIZE`` metres, centred on (LONC, LATC), on a Lambert conformal projection tangent at LAT0 (polar
stereographic when LAT0 = ±90) on a sphere of radius 6 371 220 m, as pysurfex builds it
(surfex-ecosg-format.md §5). Named domains ship in ``data/domains.csv``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from s2ecosg.errors import InputError
from s2ecosg.io import open_text

EARTH_RADIUS = 6.37122e6  # metres, SURFEX's XRADIUS


@dataclass(frozen=True)
class HarmonieDomain:
    """A HARMONIE domain (keys as in ``Harmonie_domains.pm``; angles in degrees, GSIZE in metres)."""

    name: str
    nlon: int
    nlat: int
    lonc: float
    latc: float
    lon0: float
    lat0: float
    gsize: float
    ezone: int = 11

    @property
    def nimax(self) -> int:
        """Cells west–east without the extension zone."""
        return self.nlon - self.ezone

    @property
    def njmax(self) -> int:
        """Cells south–north without the extension zone."""
        return self.nlat - self.ezone

    @property
    def proj4(self) -> str:
        """PROJ string of the domain's projection."""
        if abs(self.lat0) == 90:
            return f"+proj=stere +lat_0={self.lat0} +lat_ts={self.lat0} +lon_0={self.lon0} +R={EARTH_RADIUS} +units=m +no_defs"
        return (
            f"+proj=lcc +lat_0={self.lat0} +lon_0={self.lon0} +lat_1={self.lat0} +lat_2={self.lat0} "
            f"+R={EARTH_RADIUS} +units=m +no_defs"
        )

    def cell_edges(self, margin: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """X and y of the cell edges (projection metres), grown by ``margin`` cells on every side."""
        from pyproj import Transformer  # 0.1 s to import: loaded where used

        x_centre, y_centre = Transformer.from_crs("EPSG:4326", self.proj4, always_xy=True).transform(
            self.lonc, self.latc
        )
        x_edges = x_centre + (np.arange(-margin, self.nimax + margin + 1) - self.nimax / 2) * self.gsize
        y_edges = y_centre + (np.arange(-margin, self.njmax + margin + 1) - self.njmax / 2) * self.gsize
        return x_edges, y_edges

    def lonlat_extent(self, margin: int = 0) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees of all cell corners, grown by ``margin`` cells."""
        from pyproj import Transformer  # 0.1 s to import: loaded where used

        x_edges, y_edges = self.cell_edges(margin)
        x, y = np.meshgrid(x_edges, y_edges)
        lon, lat = Transformer.from_crs(self.proj4, "EPSG:4326", always_xy=True).transform(x, y)
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    def namelists(self) -> str:
        """``NAM_PGD_GRID``, ``NAM_CONF_PROJ`` and ``NAM_CONF_PROJ_GRID`` for SURFEX's PGD."""
        rpk = math.sin(math.radians(self.lat0))
        return (
            "&NAM_PGD_GRID CGRID='CONF PROJ' /\n"
            f"&NAM_CONF_PROJ XLAT0={self.lat0!r}, XLON0={self.lon0!r}, XRPK={rpk!r}, XBETA=0.0 /\n"
            f"&NAM_CONF_PROJ_GRID XLATCEN={self.latc!r}, XLONCEN={self.lonc!r}, NIMAX={self.nimax}, NJMAX={self.njmax}, "
            f"XDX={self.gsize!r}, XDY={self.gsize!r} /\n"
        )


def named_domains() -> dict[str, HarmonieDomain]:
    """Domains shipped in ``data/domains.csv``, by name."""
    table = resources.files("s2ecosg") / "data" / "domains.csv"
    with open_text(table) as handle:
        rows = list(csv.DictReader(handle))
    return {
        row["name"]: domain_from_keys(row["name"], {key: value for key, value in row.items() if key != "name"})
        for row in rows
    }


KEYS = ("nlon", "nlat", "lonc", "latc", "lon0", "lat0", "gsize")


def whole_number(key: str, value: object) -> int:
    """A HARMONIE count (NLON, NLAT, EZONE): an integer, also when written as 300.0."""
    number = float(value)  # type: ignore[arg-type]
    if not number.is_integer():
        raise ValueError(f"{key.upper()} {value} is not a whole number")
    return int(number)


def domain_from_keys(name: str, keys: Mapping[str, float | str]) -> HarmonieDomain:
    """A domain from HARMONIE keys (any case); a missing, bad or impossible key is a one-line error."""
    lower = {str(key).lower(): value for key, value in keys.items()}
    missing = [key.upper() for key in KEYS if lower.get(key) in (None, "")]
    unknown = sorted(set(lower) - {*KEYS, "ezone"})
    if missing or unknown:
        problem = f"missing HARMONIE key(s) {', '.join(missing)}" if missing else f"unknown key(s) {', '.join(unknown)}"
        raise InputError(f"domain {name}", f"{problem}; keys are NLON, NLAT, LONC, LATC, LON0, LAT0, GSIZE, EZONE")
    ezone = lower.get("ezone")
    try:
        domain = HarmonieDomain(
            name=name,
            nlon=whole_number("nlon", lower["nlon"]),
            nlat=whole_number("nlat", lower["nlat"]),
            lonc=float(lower["lonc"]),
            latc=float(lower["latc"]),
            lon0=float(lower["lon0"]),
            lat0=float(lower["lat0"]),
            gsize=float(lower["gsize"]),
            ezone=11 if ezone in (None, "") else whole_number("ezone", ezone),  # Harmonie_domains.pm's default
        )
    except (TypeError, ValueError) as error:
        raise InputError(f"domain {name}", f"bad HARMONIE key ({error})") from None
    found = domain_problem(domain)
    if found:
        raise InputError(f"domain {name}", found)
    return domain


def domain_problem(domain: HarmonieDomain) -> str | None:
    """Why SURFEX could not build this grid (NIMAX/NJMAX < 1, GSIZE ≤ 0, a latitude beyond a pole), or None."""
    if domain.ezone < 0:
        return f"EZONE {domain.ezone} must be >= 0"
    if domain.nimax < 1 or domain.njmax < 1:
        return f"NLON {domain.nlon} and NLAT {domain.nlat} must exceed EZONE {domain.ezone} (NIMAX {domain.nimax}, NJMAX {domain.njmax})"
    if not (np.isfinite(domain.gsize) and domain.gsize > 0):
        return f"GSIZE {domain.gsize} must be a positive number of metres"
    for key, value, limit in (
        ("LAT0", domain.lat0, 90),
        ("LATC", domain.latc, 90),
        ("LON0", domain.lon0, 360),
        ("LONC", domain.lonc, 360),
    ):
        if not (np.isfinite(value) and -limit <= value <= limit):
            return f"{key} {value} must lie within -{limit}..{limit} degrees"
    if abs(domain.lat0) < 1e-6:
        return "LAT0 0 is SURFEX's Mercator projection, which s2ecosg does not build; use a Lambert domain (LAT0 != 0)"
    if abs(domain.latc) >= 90:
        return f"LATC {domain.latc} puts the domain centre on a pole"
    return None


def resolve_domain(name: str | None, keys: dict[str, float] | None) -> HarmonieDomain | None:
    """The config's domain: custom keys first, else a named domain, else None (no HARMONIE domain)."""
    if keys:
        return domain_from_keys(name or "custom", keys)
    if name is None:
        return None
    known = named_domains()
    if name not in known:
        raise InputError(f"domain {name}", f"unknown domain; known: {', '.join(known)} (or give domain.harmonie keys)")
    return known[name]
