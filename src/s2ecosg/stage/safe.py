"""Sentinel-2 SAFE products (Level-1C and Level-2A), unpacked or zipped: band files, masks and their metadata.

A zipped product (``*.SAFE.zip`` as the Copernicus Data Space delivers it, or any ``*.zip`` holding one ``*.SAFE``)
is read in place: its metadata from the archive's directory and its ``MTD_MSI*.xml`` member, its band and SCL
files through GDAL's ``/vsizip/`` (JPEG 2000 members are stored, not deflated, so reading one costs what reading
the unpacked file costs), with the same read settings as folders.

From baseline 04.00 (25 January 2022) ESA adds a radiometric offset of +1000 to the digital numbers
(``RADIO_ADD_OFFSET`` for L1C, ``BOA_ADD_OFFSET`` for L2A, both −1000): reflectance × 10000 =
(DN + offset) × 10000 / quantification. Reading the offsets from the metadata puts every product on the
same uint16 scale, so pre- and post-2022 composites can be mixed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path
from typing import Any

from s2ecosg.errors import InputError

# Band order of the band_id attributes in MTD files.
MTD_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
L2A_BAND_FILE = re.compile(r"_(?P<band>B(?:0[1-9]|1[0-2]|8A)|SCL)_(?P<resolution>10|20|60)m\.jp2$", re.IGNORECASE)
L1C_BAND_FILE = re.compile(r"_(?P<band>B(?:0[1-9]|1[0-2]|8A))\.jp2$", re.IGNORECASE)
TILE_IN_NAME = re.compile(r"_T(?P<tile>\d\d[A-Z]{3})_")
METADATA_FILE = re.compile(r"^MTD_MSIL(1C|2A)\.xml$", re.IGNORECASE)


def local_name(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse_metadata(path: Path, content: bytes | None = None) -> dict[str, Any]:
    """Date, level, processing baseline, cloud cover, quantification and per-band offsets of an MTD file.

    ``content``: the file's bytes when it is a member of a zipped product (``path`` then names it for errors).

    Returns:
        ``{"date", "level", "baseline", "cloud", "quantification", "offsets": {band: offset}}``; offsets
        are 0 when the file has none (baselines before 04.00).
    """
    try:
        root = ElementTree.fromstring(content) if content is not None else ElementTree.parse(path).getroot()
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


def band_files(names: list[str], place: Any) -> tuple[dict[str, str], str | None]:
    """Band name → JP2 file (finest resolution for L2A) and the SCL file (L2A), among a product's ``names``.

    ``names``: every file of the product, relative to it; ``place(name)`` gives where GDAL reads one.
    """
    bands: dict[str, tuple[int, str]] = {}
    scl = None
    for name in sorted(names):
        parts = name.split("/")
        if len(parts) < 4 or parts[0] != "GRANULE" or parts[2] != "IMG_DATA" or not name.lower().endswith(".jp2"):
            continue
        file_name = parts[-1]
        match = L2A_BAND_FILE.search(file_name)
        if match:
            band, resolution = match["band"].upper(), int(match["resolution"])
            if band == "SCL":
                scl = place(name) if scl is None or "20m" in file_name else scl
            elif band not in bands or resolution < bands[band][0]:
                bands[band] = (resolution, place(name))
            continue
        match = L1C_BAND_FILE.search(file_name)
        if match:
            bands[match["band"].upper()] = (0, place(name))
    return {band: path for band, (_, path) in bands.items()}, scl


def product_name(product: Path) -> str:
    """The product's name without ``.zip`` and ``.SAFE`` (its scene id)."""
    name = product.name.removesuffix(".zip").removesuffix(".ZIP")
    return name.removesuffix(".SAFE").removesuffix(".safe")


def zip_member_path(archive: Path, member: str) -> str:
    """Where GDAL reads a member of a zipped product."""
    return f"/vsizip/{archive.resolve()}/{member}"


def archive_of(path: str) -> str:
    """The file a band path is read from: the zip of a ``/vsizip/…`` path, else the path itself."""
    if path.startswith("/vsizip/"):
        inner = path[len("/vsizip") :]
        end = inner.lower().find(".zip/")
        return inner[: end + 4] if end >= 0 else inner
    return path


def zipped_product(archive: Path) -> tuple[list[str], Any, Any]:
    """(file names relative to the product, name → GDAL path, name → bytes) of a zipped SAFE product."""
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [info.filename for info in opened.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(archive, f"not a readable zip archive ({error}; truncated or not a zip?)") from None
    tops = {member.split("/", 1)[0] for member in members if "/" in member}
    safe = [top for top in tops if top.upper().endswith(".SAFE")]
    if len(safe) != 1:
        raise InputError(archive, f"a zipped SAFE product holds one *.SAFE folder, this zip holds {len(safe)}")
    prefix = safe[0] + "/"
    names = [member[len(prefix) :] for member in members if member.startswith(prefix)]

    def read(name: str) -> bytes:
        try:
            with zipfile.ZipFile(archive) as opened:
                return opened.read(prefix + name)
        except (zipfile.BadZipFile, OSError, KeyError) as error:
            raise InputError(archive, f"member {prefix + name}: cannot read it ({error})") from None

    return names, lambda name: zip_member_path(archive, prefix + name), read


def folder_product(product: Path) -> tuple[list[str], Any, Any]:
    """(file names relative to the product, name → path, name → bytes) of an unpacked SAFE product."""
    names = [str(path.relative_to(product)) for path in product.rglob("*") if path.is_file()]
    return names, lambda name: str(product / name), lambda name: (product / name).read_bytes()


def read_product(product: Path) -> dict[str, Any]:
    """Everything the inventory needs about one ``*.SAFE`` folder or zipped product."""
    zipped = product.suffix.lower() == ".zip"
    names, place, read = zipped_product(product) if zipped else folder_product(product)
    metadata_names = sorted(name for name in names if "/" not in name and METADATA_FILE.match(name))
    if not metadata_names:
        raise InputError(product, "SAFE product without MTD_MSIL1C.xml / MTD_MSIL2A.xml")
    where = Path(f"{product}/{metadata_names[0]}")
    metadata = parse_metadata(where, read(metadata_names[0]) if zipped else None)
    bands, scl = band_files(names, place)
    if not bands:
        raise InputError(product, "SAFE product without band files under GRANULE/*/IMG_DATA")
    tile = TILE_IN_NAME.search(product_name(product) + "_")
    return {**metadata, "bands": bands, "scl": scl, "mgrs_tile": tile["tile"] if tile else ""}
