"""Sentinel-2 EOPF Zarr products (``S02MSIL1C_*.zarr``, ``S02MSIL2A_*.zarr``, ESA's successor of SAFE).

The layout, as xarray-eopf's own test products build it (``tests/helpers.py`` of EOPF-Sample-Service/xarray-eopf:
``make_s2_msi_l1c``/``make_s2_msi_l2a``) and as the products are delivered: bands ``b01`` … ``b12``, ``b8a`` as
uint16 digital counts in ``measurements/reflectance/r10m|r20m|r60m`` (``scale_factor`` 0.0001 and, from processing
baseline 04.00, ``add_offset`` −0.1 in their attributes; ``_FillValue`` 0), the Sen2Cor classes ``scl`` in
``conditions/mask/l2a_classification/r20m`` (L2A), pixel-centre coordinates ``x`` and ``y`` per resolution group,
and the CRS as ``other_metadata.horizontal_CRS_code`` of the root (or ``proj:epsg`` of a variable).

A band is named ``eopf:<product>#<group>/<variable>`` in scene lists and read here, window by window, through
xarray's Zarr backend without decoding: only the chunks a window reaches are read, so a stage job reads each band
of a product once for all the tiles of its block, as it decodes a JPEG 2000 file once. The raw digital counts go
the same way as SAFE's (offset = add_offset / scale_factor, gain = 10000 × scale_factor). Read with xarray and
zarr rather than xarray-eopf: its Sentinel-2 mode resamples every band onto one grid (a second interpolation the
stage avoids by warping each band once from its own grid) and brings numba, s3fs and dask-image to every install;
its ``native`` mode is the datatree that xarray's Zarr backend gives.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from s2ecosg.errors import InputError
from s2ecosg.io import BAND_READERS

if TYPE_CHECKING:
    from rasterio.windows import Window

PREFIX = "eopf:"

REFLECTANCE = "measurements/reflectance"
SCL_GROUP = "conditions/mask/l2a_classification/r20m"
RESOLUTIONS = ("r10m", "r20m", "r60m")  # finest first: a band present at several takes the finest
BASELINE_IN_NAME = re.compile(r"_N(?P<major>\d\d)(?P<minor>\d\d)_")
LEVEL_IN_NAME = re.compile(r"MSIL(?P<level>1C|2A)", re.IGNORECASE)
DATE_IN_NAME = re.compile(r"_(?P<year>20\d\d)(?P<month>[01]\d)(?P<day>[0-3]\d)T\d{6}")


def is_product(path: Path) -> bool:
    """True for an EOPF Zarr product folder (``*.zarr``)."""
    return path.suffix.lower() == ".zarr" and path.is_dir()


def band_path(product: Path, group: str, variable: str) -> str:
    """The name of one variable of a product in scene lists: ``eopf:<product>#<group>/<variable>``."""
    return f"{PREFIX}{product.resolve()}#{group}/{variable}"


def product_of(path: str) -> str:
    """The product folder of an ``eopf:`` band name."""
    return path[len(PREFIX) :].split("#", 1)[0]


@functools.lru_cache(maxsize=64)
def open_group(product: str, group: str) -> Any:
    """A resolution group of a product as a lazy dataset, undecoded (digital counts, attributes as stored)."""
    import xarray  # 0.6 s to import: loaded where used

    try:
        return xarray.open_dataset(
            product, group=group, engine="zarr", chunks=None, decode_cf=False, mask_and_scale=False
        )
    except (OSError, KeyError, ValueError) as error:
        raise InputError(product, f"group {group}: cannot open it ({str(error).splitlines()[0]})") from None


@functools.lru_cache(maxsize=16)
def product_crs(product: str) -> str:
    """The CRS the product states (root ``other_metadata.horizontal_CRS_code``), e.g. ``EPSG:32633``."""
    import xarray  # 0.6 s to import: loaded where used

    try:
        root = xarray.open_dataset(product, engine="zarr", chunks=None, decode_cf=False)
        attributes = dict(root.attrs)
    except (OSError, KeyError, ValueError) as error:
        raise InputError(product, f"not a readable Zarr product ({str(error).splitlines()[0]})") from None
    code = (attributes.get("other_metadata") or {}).get("horizontal_CRS_code")
    return str(code) if code else ""


@dataclass(frozen=True)
class EopfBand:
    """One band of a product as the stage reads rasters: CRS, transform, shape, nodata and window reads."""

    path: str
    product: str
    group: str
    variable: str

    @classmethod
    def open(cls, path: str) -> EopfBand:
        """The band an ``eopf:`` name points at (a missing group or variable is one line naming both)."""
        product, _, inside = path[len(PREFIX) :].partition("#")
        group, _, variable = inside.rpartition("/")
        if variable not in open_group(product, group).data_vars:
            raise InputError(product, f"no variable {variable} in group {group}")
        return cls(path, product, group, variable)

    @property
    def array(self) -> Any:
        """The lazy variable."""
        return open_group(self.product, self.group)[self.variable]

    @property
    def crs(self) -> Any:
        """The product's CRS (from the root, else the variable's ``proj:epsg``)."""
        from rasterio.crs import CRS  # 0.2 s to import: loaded where used

        code = product_crs(self.product) or (
            f"EPSG:{self.array.attrs['proj:epsg']}" if "proj:epsg" in self.array.attrs else ""
        )
        if not code:
            raise InputError(self.product, "states no CRS (other_metadata.horizontal_CRS_code, proj:epsg)")
        return CRS.from_user_input(code)

    @property
    def transform(self) -> Affine:
        """North-up transform from the group's pixel-centre coordinates."""
        dataset = open_group(self.product, self.group)
        x, y = np.asarray(dataset["x"].values, dtype=np.float64), np.asarray(dataset["y"].values, dtype=np.float64)
        step_x, step_y = (x[-1] - x[0]) / (len(x) - 1), (y[-1] - y[0]) / (len(y) - 1)
        return Affine(step_x, 0.0, x[0] - step_x / 2, 0.0, step_y, y[0] - step_y / 2)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        rows, columns = self.array.shape
        return int(rows), int(columns)

    @property
    def height(self) -> int:
        """Rows."""
        return self.shape[0]

    @property
    def width(self) -> int:
        """Columns."""
        return self.shape[1]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the product's CRS."""
        transform, (rows, columns) = self.transform, self.shape
        return transform.c, transform.f + rows * transform.e, transform.c + columns * transform.a, transform.f

    count = 1
    nodata = 0

    def read(self, index: int = 1, window: Window = None) -> np.ndarray:
        """Digital counts of a window ``((row0, row1), (col0, col1))`` (the whole band without one)."""
        (row0, row1), (column0, column1) = window if window is not None else ((0, self.height), (0, self.width))
        try:
            return np.asarray(self.array[row0:row1, column0:column1].values)
        except (OSError, ValueError, KeyError) as error:
            raise InputError(self.product, f"{self.group}/{self.variable}: cannot read ({error})") from None

    def scaling(self) -> tuple[int, float]:
        """(offset added to the digital counts, gain) that make reflectance × 10000, as the attributes state."""
        attributes = self.array.attrs
        scale, add = float(attributes.get("scale_factor", 1e-4)), float(attributes.get("add_offset", 0.0))
        return round(add / scale), 10000.0 * scale

    def __enter__(self) -> EopfBand:
        return self

    def __exit__(self, *exception: object) -> None:
        return None


def product_bands(product: Path) -> tuple[dict[str, str], str | None]:
    """Band name (``B02``) → ``eopf:`` name at its finest resolution, and the SCL (L2A) or None."""
    bands: dict[str, str] = {}
    for resolution in RESOLUTIONS:
        group = f"{REFLECTANCE}/{resolution}"
        try:
            variables = open_group(str(product.resolve()), group).data_vars
        except InputError:
            continue
        for variable in variables:
            name = str(variable).upper()
            if re.fullmatch(r"B(0[1-9]|1[0-2]|8A)", name) and name not in bands:
                bands[name] = band_path(product, group, str(variable))
    try:
        scl = (
            band_path(product, SCL_GROUP, "scl")
            if "scl" in open_group(str(product.resolve()), SCL_GROUP).data_vars
            else None
        )
    except InputError:
        scl = None
    return bands, scl


def date_in_name(name: str) -> str:
    """The acquisition date ``YYYY-MM-DD`` of a product name (``…_20250101T102101_…``), or ``""``."""
    found = DATE_IN_NAME.search(name)
    return f"{found['year']}-{found['month']}-{found['day']}" if found else ""


def product_record(product: Path) -> dict[str, Any]:
    """Date, level, baseline, offsets, gain, bands and SCL of a product (what the inventory needs)."""
    bands, scl = product_bands(product)
    if not bands:
        raise InputError(product, f"EOPF product without bands under {REFLECTANCE}/r10m|r20m|r60m")
    scalings = {band: EopfBand.open(path).scaling() for band, path in bands.items()}
    gains = {gain for _, gain in scalings.values()}
    if len(gains) != 1:
        raise InputError(product, f"bands of several scale factors ({sorted(gains)}): not one reflectance scale")
    baseline = BASELINE_IN_NAME.search(product.name)
    level = LEVEL_IN_NAME.search(product.name)
    return {
        "date": date_in_name(product.name),
        "level": f"L{level['level'].upper()}" if level else ("L2A" if scl else "L1C"),
        "baseline": f"{baseline['major']}.{baseline['minor']}" if baseline else "",
        "offsets": {band: offset for band, (offset, _) in scalings.items()},
        "gain": gains.pop(),
        "bands": bands,
        "scl": scl,
    }


BAND_READERS[PREFIX] = EopfBand.open  # open_raster reads eopf: names through this module
