"""Vector files (GeoPackage, shapefile, GeoJSON …) read with one-line errors: labels, sea masks and points use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s2ecosg.errors import InputError

VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".parquet", ".gml", ".kml"}


def is_vector(path: str | Path) -> bool:
    """True for vector formats (by file suffix)."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def read_vector(path: str) -> Any:
    """Read a vector file with geopandas, with a one-line error when it cannot be read."""
    import geopandas  # 0.7 s to import: loaded where used

    try:
        frame = geopandas.read_file(path)
    except Exception as error:  # pyogrio raises several types; the message is what matters
        raise InputError(path, f"not a readable vector file ({str(error).splitlines()[0]})") from error
    if frame.crs is None:
        raise InputError(path, "vector file has no CRS")
    return frame
