"""SURFEX DIRECT cover files (``.hdr`` text header + ``.dir`` raw uint8): the only writer and reader of the format.

The rules of the format are checked by :mod:`s2ecosg.validate`; the fill, the evaluation against the original
ECOSG and the cover stage read and write pairs through this module.

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
from s2ecosg.io import atomic_path

MAX_BASENAME = 24
N_COVERS = 33
KEYS = ("nodata", "north", "south", "west", "east", "rows", "cols", "recordtype")
RECORDTYPE = "integer 8 bits"
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d*)?$")


def decimal(value: float) -> str:
    """A plain decimal with a decimal point and no exponent (``53.0``, ``-7.25``, ``45.87527777777778``).

    The shortest text that reads back as the same double: an edge is never rounded (on a 1/360° grid, 12 decimals
    would move it by up to 5e-13°; two decimals, as some writers use, by half a kilometre).
    """
    text = np.format_float_positional(float(value), unique=True, trim="0")
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


def direct_base(path: str | Path) -> str:
    """The base name of a DIRECT pair named by its base name, its ``.dir`` or its ``.hdr``."""
    text = str(path)
    return text[:-4] if text.endswith((".dir", ".hdr")) else text


def is_direct(path: str | Path) -> bool:
    """True when ``path`` names both files of a DIRECT pair (``<base>.dir`` and ``<base>.hdr``)."""
    base = direct_base(path)
    return Path(f"{base}.dir").is_file() and Path(f"{base}.hdr").is_file()


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
    check_basename(basename)
    if cover.ndim != 2 or cover.min(initial=0) < 0 or cover.max(initial=0) > N_COVERS:
        raise ValueError("cover must be a 2-D array of values 0..33")
    data = np.ascontiguousarray(cover, dtype=np.uint8)
    with atomic_path(f"{basename}.dir") as binary, atomic_path(f"{basename}.hdr") as header:
        binary.write_bytes(data.tobytes(order="C"))
        header.write_text(header_text(comment, bounds, data.shape))


def header_lines(path: str | Path) -> list[str]:
    """The lines of a ``.hdr``; a binary or unreadable file is a one-line :class:`InputError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InputError(path, f"cannot read the header ({error.strerror})") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not text or "\0" in text:
        raise InputError(path, "not a DIRECT text header (binary or empty file; was the .dir given for the .hdr?)")
    return text.splitlines()


def parse_header(path: str | Path) -> dict[str, Any]:
    """Read a ``.hdr`` the way READHEAD does; keys it cannot read as numbers are one-line errors."""
    lines = header_lines(path)
    values: dict[str, Any] = {"comment": lines[0] if lines else ""}
    for line in lines[1:11]:
        key, _, value = line.strip().partition(":")
        key = key.strip()
        if key == "recordtype":
            values[key] = value.strip()
        elif key in KEYS:
            text = value.strip()
            try:
                number = float(text.rstrip("NESW") or "nan")
            except ValueError:
                raise InputError(path, f"{key}: {text!r} is not a number") from None
            values[key] = -number if text[-1:] in ("S", "W") else number
    missing = [key for key in ("north", "south", "west", "east", "rows", "cols") if key not in values]
    if missing:
        raise InputError(path, f"header has no {', '.join(missing)} line")
    return values


def read_cover(basename: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DIRECT cover pair: ((rows, cols) uint8 array, row 0 north; header values)."""
    header = parse_header(f"{basename}.hdr")
    rows, cols = int(header["rows"]), int(header["cols"])
    data = np.fromfile(f"{basename}.dir", dtype=np.uint8)
    if data.size != rows * cols:
        raise InputError(f"{basename}.dir", f"has {data.size} bytes, header says {rows} × {cols}")
    return data.reshape(rows, cols), header


def binary_rows(path: str | Path, rows: int, cols: int) -> np.ndarray:
    """The ``.dir`` as a read-only (rows, cols) uint8 map (nothing is read until used; row 0 north)."""
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, cols))


def open_cover(basename: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A DIRECT pair mapped, not read: ((rows, cols) uint8 map, row 0 north; header values); sizes checked."""
    header = parse_header(f"{basename}.hdr")
    rows, cols = int(header["rows"]), int(header["cols"])
    size = Path(f"{basename}.dir").stat().st_size
    if size != rows * cols:
        raise InputError(f"{basename}.dir", f"has {size} bytes, header says {rows} × {cols}")
    return binary_rows(f"{basename}.dir", rows, cols), header


class CoverStream:
    """A DIRECT pair written band of rows by band of rows, north first, under temporary names on ``stack``.

    The temporaries are renamed into place when ``stack`` closes without an error (:func:`s2ecosg.io.atomic_path`);
    memory holds one band of rows.
    """

    def __init__(
        self, stack: Any, basename: str, bounds: tuple[float, float, float, float], shape: tuple[int, int], comment: str
    ) -> None:

        check_basename(basename)
        self.bounds, self.shape, self.comment, self.written = bounds, shape, comment, 0
        self.binary = stack.enter_context(atomic_path(f"{basename}.dir"))
        self.header = stack.enter_context(atomic_path(f"{basename}.hdr"))
        self.handle = stack.enter_context(self.binary.open("wb"))

    def write_rows(self, band: np.ndarray) -> None:
        """Append (rows, cols) covers (0 or 1..33) below the rows written so far."""
        if band.shape[1] != self.shape[1] or band.min(initial=0) < 0 or band.max(initial=0) > N_COVERS:
            raise ValueError(f"a band of rows must be (rows, {self.shape[1]}) covers 0..33")
        self.handle.write(np.ascontiguousarray(band, dtype=np.uint8).tobytes())
        self.written += band.shape[0]

    def close(self) -> None:
        """Check every row was written, then write the header."""
        if self.written != self.shape[0]:
            raise ValueError(f"only {self.written} of {self.shape[0]} rows were written")
        self.handle.flush()
        self.header.write_text(header_text(self.comment, self.bounds, self.shape))
