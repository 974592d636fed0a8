"""Format rules of a SURFEX DIRECT cover pair, checked one by one (``s2ecosg validate-cover``).

Each rule comes from how SURFEX's Fortran reads the files (surfex-ecosg-format.md §6, §7); every
broken rule gives one line, so a forecaster sees all problems at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2ecosg.domain import HarmonieDomain
from s2ecosg.errors import InputError
from s2ecosg.surfex import (
    KEYS,
    MAX_BASENAME,
    N_COVERS,
    PLAIN_NUMBER,
    RECORDTYPE,
    binary_rows,
    header_lines,
    parse_header,
)


def header_problems(lines: list[str]) -> list[str]:
    """Problems of the header text (after reading it as lines)."""
    problems = []
    if len(lines) != 1 + len(KEYS):
        problems.append(f"header has {len(lines)} lines, expected {1 + len(KEYS)} (comment + {len(KEYS)} keys)")
    found = {}
    for number, line in enumerate(lines[1:], start=2):
        key, colon, value = line.partition(":")
        if not colon or key not in KEYS:
            problems.append(f"line {number}: {line!r} is not 'key: value' with a lower-case known key at column 1")
            continue
        if value != " " + value.strip() or "\t" in line:
            problems.append(f"line {number}: write exactly one blank after the colon")
        found[key] = value.strip()
    problems += [f"key {key}: missing" for key in KEYS if key not in found]
    for key in ("north", "south", "west", "east", "rows", "cols", "nodata"):
        if key in found and not PLAIN_NUMBER.match(found[key]):
            problems.append(f"key {key}: {found[key]!r} is not a plain decimal number")
    if found.get("recordtype", RECORDTYPE) != RECORDTYPE:
        problems.append(f"recordtype: {found['recordtype']!r}, expected {RECORDTYPE!r}")
    if found.get("nodata", "0") != "0":
        problems.append("nodata must be 0")
    return problems + geometry_problems(found)


def geometry_problems(found: dict[str, str]) -> list[str]:
    """Problems of the extent and size values."""
    problems: list[str] = []
    try:
        north, south, west, east = (float(found[key]) for key in ("north", "south", "west", "east"))
        rows, cols = int(found["rows"]), int(found["cols"])
    except (KeyError, ValueError):
        return problems
    if not -90 <= south < north <= 90:
        problems.append(f"south {south} / north {north} must satisfy -90 <= south < north <= 90")
    if not -180 <= west < east <= 180:
        problems.append(f"west {west} / east {east} must lie in -180..180 with west < east")
    if rows <= 0 or cols <= 0:
        problems.append("rows and cols must be positive")
    return problems


def validate_cover(basename: str | Path, paths: tuple[Path, Path] | None = None, values: bool = True) -> list[str]:
    """Every problem of a cover pair (empty when SURFEX will read it correctly).

    Args:
        basename: The pair's base name (its file name is what SURFEX's namelist holds).
        paths: (header, binary) when the files are not ``<basename>.hdr`` and ``.dir`` (temporaries, say).
        values: Also scan every byte for values outside 0..33 (chunk by chunk: a global file is gigabytes).
    """
    basename = Path(basename)
    problems = []
    if len(basename.name) > MAX_BASENAME:
        problems.append(f"base name {basename.name!r} is longer than {MAX_BASENAME} characters")
    return problems + pair_problems(*(paths or (Path(f"{basename}.hdr"), Path(f"{basename}.dir"))), values=values)


def pair_problems(header_path: Path, binary_path: Path, values: bool = True) -> list[str]:
    """Problems of a header and a binary file read as a DIRECT pair (the base-name rule aside)."""
    missing = [str(path) for path in (header_path, binary_path) if not path.is_file()]
    if missing:
        return [f"{path}: missing" for path in missing]
    try:
        lines = header_lines(header_path)
    except InputError as error:
        return [str(error)]
    problems = header_problems(lines)
    return problems + data_problems(binary_path, lines, values)


def data_problems(binary_path: Path, lines: list[str], values: bool = True, chunk: int = 1 << 26) -> list[str]:
    """Problems of the ``.dir``: size (1 byte per cell: 16-bit records are refused) and values."""
    found = dict(line.partition(": ")[::2] for line in lines[1:])
    try:
        rows, cols = int(found["rows"]), int(found["cols"])
    except (KeyError, ValueError):
        return ["cannot check the .dir without valid rows and cols"]
    size = binary_path.stat().st_size
    if size != rows * cols:
        hint = " (2 bytes per cell: 16-bit records; SURFEX reads 1 byte)" if size == 2 * rows * cols else ""
        return [f"{binary_path}: {size} bytes, expected rows × cols = {rows * cols}{hint}"]
    if not values or size == 0:
        return []
    data, step = binary_rows(binary_path, rows, cols), max(1, chunk // cols)
    bad: set[int] = set()
    for first in range(0, rows, step):
        part = np.asarray(data[first : first + step])
        bad.update(np.unique(part[part > N_COVERS]).tolist())
    if bad:
        return [f"{binary_path}: values {sorted(bad)[:10]} outside 0..{N_COVERS}"]
    return []


def domain_problems(
    basename: str | Path,
    domain: HarmonieDomain,
    margin: int = 2,
    chunk_rows: int = 256,
    paths: tuple[Path, Path] | None = None,
) -> list[str]:
    """Problems of a (format-valid) cover file for a HARMONIE domain.

    The file must contain the lon/lat extent of the domain grown by ``margin`` cells, and every domain cell
    (NIMAX × NJMAX) must hold at least one valid (non-zero) pixel centre; SURFEX would otherwise interpolate it.
    ``paths`` are (header, binary) when they are not ``<basename>.hdr`` and ``.dir``.
    """
    header_path, binary_path = paths or (Path(f"{basename}.hdr"), Path(f"{basename}.dir"))
    problems = extent_problems(header_path, domain, margin)
    empty, cells = empty_domain_cells(header_path, binary_path, domain, chunk_rows)
    if empty:
        problems.append(empty_cells_line(empty, cells))
    return problems


def empty_cells_line(empty: int, cells: int) -> str:
    """The problem line of a cover with empty domain cells."""
    return f"{empty} of {cells} domain cells have no valid pixel (SURFEX would interpolate them)"


def extent_problems(header_path: Path, domain: HarmonieDomain, margin: int) -> list[str]:
    """A problem line when the pair's extent does not contain the domain grown by ``margin`` cells."""
    problems = []
    need = domain.lonlat_extent(margin)
    header = parse_header(header_path)
    west, south, east, north = header["west"], header["south"], header["east"], header["north"]
    if need[0] < west or need[1] < south or need[2] > east or need[3] > north:
        problems.append(
            "file extent W {:.4f} S {:.4f} E {:.4f} N {:.4f} does not contain domain {} + {} cells: "
            "W {:.4f} S {:.4f} E {:.4f} N {:.4f}".format(west, south, east, north, domain.name, margin, *need)
        )
    return problems


def empty_domain_cells(
    header_path: Path, binary_path: Path, domain: HarmonieDomain, chunk_rows: int = 256
) -> tuple[int, int]:
    """(cells without a valid pixel centre, all cells) of a HARMONIE domain in a DIRECT pair."""
    from pyproj import Transformer  # 0.1 s to import: loaded where used

    header = parse_header(header_path)
    west, north = header["west"], header["north"]
    south, east = header["south"], header["east"]
    rows, cols = int(header["rows"]), int(header["cols"])
    data = binary_rows(binary_path, rows, cols)
    step_lat, step_lon = (north - south) / rows, (east - west) / cols
    x_edges, y_edges = domain.cell_edges(0)
    to_domain = Transformer.from_crs("EPSG:4326", domain.proj4, always_xy=True)
    hit = np.zeros((domain.njmax, domain.nimax), dtype=bool)
    lon = west + (np.arange(cols) + 0.5) * step_lon
    for first in range(0, rows, chunk_rows):
        block = np.asarray(data[first : first + chunk_rows])
        lat = north - (first + np.arange(block.shape[0]) + 0.5) * step_lat
        valid_rows, valid_cols = np.nonzero(block)
        x, y = to_domain.transform(lon[valid_cols], lat[valid_rows])
        i = np.floor((x - x_edges[0]) / domain.gsize).astype(np.int64)
        j = np.floor((y - y_edges[0]) / domain.gsize).astype(np.int64)
        inside = (i >= 0) & (i < domain.nimax) & (j >= 0) & (j < domain.njmax)
        hit[j[inside], i[inside]] = True
    return int((~hit).sum()), int(hit.size)


def check_direct(base: str) -> None:
    """Refuse a DIRECT pair that ``validate-cover`` would refuse (header rules, 1 byte per cell)."""
    problems = pair_problems(Path(f"{base}.hdr"), Path(f"{base}.dir"), values=False)
    if problems:
        raise InputError(f"{base}.hdr", f"not a valid DIRECT cover pair: {problems[0]}")
