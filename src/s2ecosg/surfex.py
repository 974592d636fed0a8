"""SURFEX DIRECT cover files (``.hdr`` text header + ``.dir`` raw uint8): writer, reader, validator.

Format as SURFEX's READHEAD/READ_DIRECT parse it (``../shared/docs/surfex-ecosg-format.md`` §1.6, §6,
§7): line 1 a free comment; then lower-case ``key: value`` lines (colon right after the key, plain
decimals, no exponent); north/south/west/east are the outer EDGES in degrees; ``rows × cols`` bytes,
row 1 = north, column 1 = west; ``nodata: 0`` and values 0 or 1..33 only; base name ≤ 24 characters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.errors import InputError

MAX_BASENAME = 24
N_COVERS = 33
KEYS = ("nodata", "north", "south", "west", "east", "rows", "cols", "recordtype")
RECORDTYPE = "integer 8 bits"
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d*)?$")


def decimal(value: float) -> str:
    """A plain decimal with a decimal point and no exponent (``53.0``, ``-7.25``, ``0.000555555556``)."""
    text = np.format_float_positional(float(value), precision=12, unique=True, trim="0")
    return "0.0" if text in ("-0.0", "-0") else text


def header_text(comment: str, bounds: tuple[float, float, float, float], shape: tuple[int, int]) -> str:
    """The 9-line header for a (rows, cols) uint8 cover with edges (west, south, east, north)."""
    west, south, east, north = bounds
    rows, cols = shape
    lines = [
        comment.replace("\n", " ")[:200] or "s2ecosg cover",
        "nodata: 0",
        f"north: {decimal(north)}",
        f"south: {decimal(south)}",
        f"west: {decimal(west)}",
        f"east: {decimal(east)}",
        f"rows: {rows}",
        f"cols: {cols}",
        f"recordtype: {RECORDTYPE}",
    ]
    return "\n".join(lines) + "\n"


def check_basename(basename: str | Path) -> None:
    """Refuse base names SURFEX would truncate (``CHARACTER(LEN=28)`` minus ``.dir``)."""
    name = Path(basename).name
    if len(name) > MAX_BASENAME:
        raise InputError(
            basename, f"base name {name!r} has {len(name)} characters; SURFEX reads at most {MAX_BASENAME}"
        )


def write_cover(
    basename: str | Path, cover: np.ndarray, bounds: tuple[float, float, float, float], comment: str
) -> None:
    """Write ``<basename>.dir`` and ``<basename>.hdr``.

    Args:
        basename: Path without extension; its file name must have ≤ 24 characters.
        cover: (rows, cols) covers, row 0 = northernmost, column 0 = westernmost; values 0 or 1..33.
        bounds: (west, south, east, north) outer edges in degrees, west/east within −180..180.
        comment: Header line 1 (ignored by SURFEX; provenance).
    """
    from s2ecosg.io import atomic_path

    check_basename(basename)
    if cover.ndim != 2 or cover.min(initial=0) < 0 or cover.max(initial=0) > N_COVERS:
        raise ValueError("cover must be a 2-D array of values 0..33")
    data = np.ascontiguousarray(cover, dtype=np.uint8)
    with atomic_path(f"{basename}.dir") as binary, atomic_path(f"{basename}.hdr") as header:
        binary.write_bytes(data.tobytes(order="C"))
        header.write_text(header_text(comment, bounds, data.shape))


def parse_header(path: str | Path) -> dict[str, Any]:
    """Read a ``.hdr`` the way READHEAD does (first 5 characters of each line after the comment)."""
    lines = Path(path).read_text().splitlines()
    values: dict[str, Any] = {"comment": lines[0] if lines else ""}
    for line in lines[1:11]:
        key, _, value = line.strip().partition(":")
        key = key.strip()
        if key == "recordtype":
            values[key] = value.strip()
        elif key in KEYS:
            number = float(value.strip().rstrip("NE") or "nan")
            values[key] = -number if value.strip()[-1:] in ("S", "W") else number
    return values


def read_cover(basename: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DIRECT cover pair: ((rows, cols) uint8 array, row 0 north; header values)."""
    header = parse_header(f"{basename}.hdr")
    rows, cols = int(header["rows"]), int(header["cols"])
    data = np.fromfile(f"{basename}.dir", dtype=np.uint8)
    if data.size != rows * cols:
        raise InputError(f"{basename}.dir", f"has {data.size} bytes, header says {rows} × {cols}")
    return data.reshape(rows, cols), header
