"""Build SAFE product trees around the real Brandenburg JP2 bands (the metadata file is written here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from conftest import DEMO

SCENE = "T33UUU_20170216T102101"
ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
RESOLUTION = {
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B08": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B8A": 20,
    "B11": 20,
    "B12": 20,
    "B01": 60,
    "B09": 60,
    "B10": 60,
}


def metadata(level: str, baseline: str, offset: int | None, cloud: float, date: str = "2017-02-16") -> str:
    """An MTD_MSIL1C/2A.xml with the fields s2ecosg reads (namespaced like ESA's files)."""
    tag = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    quantification = "QUANTIFICATION_VALUE" if level == "L1C" else "BOA_QUANTIFICATION_VALUE"
    offsets = "".join(f'<{tag} band_id="{index}">{offset}</{tag}>' for index in range(13)) if offset is not None else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<n1:Level-{level[1:]}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd">'
        f"<n1:General_Info><Product_Info><PRODUCT_START_TIME>{date}T10:21:01.026Z</PRODUCT_START_TIME>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>"
        f'<Product_Image_Characteristics><{quantification} unit="none">10000</{quantification}>'
        f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List></Product_Image_Characteristics></n1:General_Info>"
        f"<n1:Quality_Indicators_Info><Cloud_Coverage_Assessment>{cloud}</Cloud_Coverage_Assessment>"
        f"</n1:Quality_Indicators_Info></n1:Level-{level[1:]}_User_Product>\n"
    )


def write_band(source: Path, target: Path, add: int) -> None:
    """Copy a JP2 band, adding ``add`` to every valid DN (lossless JPEG2000)."""
    with rasterio.open(source) as band:
        values, profile = band.read(1), band.profile
    values = np.where(values > 0, values.astype(np.int64) + add, 0).astype(np.uint16)
    profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    with rasterio.open(target, "w", **profile) as destination:
        destination.write(values, 1)


def make_safe(
    root: Path,
    level: str = "L1C",
    baseline: str = "02.04",
    offset: int | None = None,
    cloud: float = 12.5,
    bands: list[str] | None = None,
    scl: np.ndarray | None = None,
    date: str = "2017-02-16",
    shift: int = 0,
) -> Path:
    """A SAFE folder of the Brandenburg scene; with ``offset`` = −1000 the DNs carry +1000 as from baseline 04.00.

    ``date`` names another acquisition of the same pixels, ``shift`` is added to every valid DN (another scene).
    """
    day = date.replace("-", "")
    product = root / f"S2A_MSI{level}_{day}T102101_N{baseline.replace('.', '')}_R065_T33UUU_{day}T102204.SAFE"
    images = product / "GRANULE" / f"{level}_T33UUU_A008600_{day}T102204" / "IMG_DATA"
    images.mkdir(parents=True)
    (product / f"MTD_MSI{level}.xml").write_text(metadata(level, baseline, offset, cloud, date))
    for band in bands or ORDER:
        if level == "L1C":
            target = images / f"{SCENE}_{band}.jp2"
        else:
            folder = images / f"R{RESOLUTION[band]}m"
            folder.mkdir(exist_ok=True)
            target = folder / f"{SCENE}_{band}_{RESOLUTION[band]}m.jp2"
        write_band(DEMO / "IMG_DATA" / f"{SCENE}_{band}.jp2", target, shift - (offset or 0))
    if scl is not None:
        with rasterio.open(DEMO / "IMG_DATA" / f"{SCENE}_B11.jp2") as reference:
            profile = dict(reference.profile, dtype="uint8", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
        (images / "R20m").mkdir(exist_ok=True)
        with rasterio.open(images / "R20m" / f"{SCENE}_SCL_20m.jp2", "w", **profile) as destination:
            destination.write(scl, 1)
    return product


def make_eopf(
    root: Path,
    level: str = "L2A",
    bands: list[str] | None = None,
    scl: np.ndarray | None = None,
    date: str = "2017-02-16",
    shift: int = 0,
) -> Path:
    """The Brandenburg scene as an EOPF Zarr product, built as xarray-eopf's own test products are built.

    Source of the layout: ``tests/helpers.py`` of github.com/EOPF-Sample-Service/xarray-eopf (``make_s2_msi_l2a``:
    an ``xr.DataTree`` of ``measurements/reflectance/r10m|r20m|r60m`` with uint16 bands ``b02`` … and the attributes
    ``_FillValue`` 0, ``scale_factor`` 0.0001, ``units`` digital_counts, ``valid_min``/``valid_max``, ``proj:epsg``;
    ``conditions/mask/l2a_classification/r20m`` with ``scl``; pixel-centre ``x``, ``y``; the CRS as the root's
    ``other_metadata.horizontal_CRS_code``), written with ``DataTree.to_zarr`` as those tests write it. As products
    from baseline 04.00 are, the DNs carry +1000 and ``add_offset`` is −0.1.
    """
    import xarray as xr

    day = date.replace("-", "")
    product = root / f"S2A_MSI{level}_{day}T102101_N0400_R065_T33UUU_{day}T102204.zarr"
    groups: dict[str, dict[str, xr.DataArray]] = {}
    coordinates: dict[str, dict[str, np.ndarray]] = {}
    for band in bands or ORDER:
        with rasterio.open(DEMO / "IMG_DATA" / f"{SCENE}_{band}.jp2") as source:
            values, transform = source.read(1), source.transform
        stored = np.where(values > 0, values.astype(np.int64) + shift + 1000, 0).astype(np.uint16)
        group = f"measurements/reflectance/r{RESOLUTION[band]}m"
        attributes = {"_FillValue": 0, "scale_factor": 0.0001, "add_offset": -0.1, "units": "digital_counts"}
        attributes |= {"valid_min": 1, "valid_max": 65535, "proj:epsg": 32633}
        groups.setdefault(group, {})[band.lower()] = xr.DataArray(stored, dims=("y", "x"), attrs=attributes)
        coordinates[group] = centres(transform, values.shape)
    if scl is not None:
        with rasterio.open(DEMO / "IMG_DATA" / f"{SCENE}_B11.jp2") as reference:
            transform = reference.transform
        group = "conditions/mask/l2a_classification/r20m"
        groups[group] = {"scl": xr.DataArray(scl, dims=("y", "x"), attrs={"proj:epsg": 32633})}
        coordinates[group] = centres(transform, scl.shape)
    tree = xr.DataTree.from_dict(
        {f"/{group}": xr.Dataset(variables, coords=coordinates[group]) for group, variables in groups.items()}
    )
    tree.attrs["other_metadata"] = {"horizontal_CRS_code": "EPSG:32633"}
    tree.to_zarr(product)
    return product


def centres(transform: object, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Pixel-centre coordinates ``x`` (west to east) and ``y`` (north to south) of a north-up grid."""
    rows, columns = shape
    return {
        "x": transform.c + (np.arange(columns) + 0.5) * transform.a,  # type: ignore[attr-defined]
        "y": transform.f + (np.arange(rows) + 0.5) * transform.e,  # type: ignore[attr-defined]
    }
