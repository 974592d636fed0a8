"""Sentinel-2 SAFE products (Level-1C and Level-2A): band files, mask files and ``MTD_MSI*.xml`` metadata.

From baseline 04.00 (25 January 2022) ESA adds a radiometric offset of +1000 to the digital numbers
(``RADIO_ADD_OFFSET`` for L1C, ``BOA_ADD_OFFSET`` for L2A, both −1000): reflectance × 10000 =
(DN + offset) × 10000 / quantification. Reading the offsets from the metadata puts every product on the
same uint16 scale, so pre- and post-2022 composites can be mixed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from s2ecosg.errors import InputError

# Band order of the band_id attributes in MTD files.
MTD_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
L2A_BAND_FILE = re.compile(r"_(?P<band>B(?:0[1-9]|1[0-2]|8A)|SCL)_(?P<resolution>10|20|60)m\.jp2$", re.IGNORECASE)
L1C_BAND_FILE = re.compile(r"_(?P<band>B(?:0[1-9]|1[0-2]|8A))\.jp2$", re.IGNORECASE)
TILE_IN_NAME = re.compile(r"_T(?P<tile>\d\d[A-Z]{3})_")


def local_name(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse_metadata(path: Path) -> dict[str, Any]:
    """Date, level, processing baseline, cloud cover, quantification and per-band offsets of an MTD file.

    Returns:
        ``{"date", "level", "baseline", "cloud", "quantification", "offsets": {band: offset}}``; offsets
        are 0 when the file has none (baselines before 04.00).
    """
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise InputError(path, f"cannot read product metadata ({error})") from error
    values: dict[str, Any] = {"offsets": {}, "level": "L2A" if "L2A" in path.name else "L1C"}
    for element in root.iter():
        name, text = local_name(element.tag), (element.text or "").strip()
        if name == "PRODUCT_START_TIME":
            values["date"] = text[:10]
        elif name == "PROCESSING_BASELINE":
            values["baseline"] = text
        elif name == "Cloud_Coverage_Assessment":
            values["cloud"] = float(text)
        elif name in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE"):
            values["quantification"] = float(text)
        elif name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            values["offsets"][MTD_BANDS[int(element.attrib["band_id"])]] = int(float(text))
    if "date" not in values:
        raise InputError(path, "no PRODUCT_START_TIME in product metadata")
    values.setdefault("quantification", 10000.0)
    values.setdefault("baseline", "")
    return values


def band_files(product: Path) -> tuple[dict[str, str], str | None]:
    """Band name → JP2 path (finest resolution for L2A) and the SCL file (L2A), found under ``GRANULE``."""
    bands: dict[str, tuple[int, str]] = {}
    scl = None
    for path in sorted(product.glob("GRANULE/*/IMG_DATA/**/*.jp2")):
        match = L2A_BAND_FILE.search(path.name)
        if match:
            band, resolution = match["band"].upper(), int(match["resolution"])
            if band == "SCL":
                scl = str(path) if scl is None or "20m" in path.name else scl
            elif band not in bands or resolution < bands[band][0]:
                bands[band] = (resolution, str(path))
            continue
        match = L1C_BAND_FILE.search(path.name)
        if match:
            bands[match["band"].upper()] = (0, str(path))
    return {band: path for band, (_, path) in bands.items()}, scl


def read_product(product: Path) -> dict[str, Any]:
    """Everything the inventory needs about one ``*.SAFE`` folder."""
    metadata_files = sorted(product.glob("MTD_MSIL*.xml"))
    if not metadata_files:
        raise InputError(product, "SAFE product without MTD_MSIL1C.xml / MTD_MSIL2A.xml")
    metadata = parse_metadata(metadata_files[0])
    bands, scl = band_files(product)
    if not bands:
        raise InputError(product, "SAFE product without band files under GRANULE/*/IMG_DATA")
    tile = TILE_IN_NAME.search(product.name)
    return {**metadata, "bands": bands, "scl": scl, "mgrs_tile": tile["tile"] if tile else ""}
