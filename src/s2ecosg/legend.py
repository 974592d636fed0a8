"""Legends: source codes → class ids → CORINE levels and ECOSG covers (tables in ``data/legends``).

A legend CSV has the columns ``id, code, name, clc_l1, clc_l2, clc_l3, ecosg, ecosg_boreal,
ecosg_mediterranean``. Several codes may share an id (e.g. OSM ``grass`` and ``meadow``); id 0 marks
codes that are known and deliberately ignored (nodata, unclassified).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.errors import InputError
from s2ecosg.io import open_text

COLUMNS = ["id", "code", "name", "clc_l1", "clc_l2", "clc_l3", "ecosg", "ecosg_boreal", "ecosg_mediterranean"]
LEVELS = ("clc_l1", "clc_l2", "clc_l3")
N_COVERS = 33


@dataclass(frozen=True)
class Legend:
    """A parsed legend.

    Attributes:
        source: Where it was read from (for messages).
        rows: One dict per CSV row, columns as in :data:`COLUMNS` (strings).
    """

    source: str
    rows: tuple[dict[str, str], ...]

    @property
    def digest(self) -> str:
        """Short hash of the table (ids, codes, names, levels, covers): what shards and bundles are checked by."""
        return hashlib.sha256(json.dumps(self.to_records(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def n_classes(self) -> int:
        """Largest class id K; the model predicts ids 1..K (0 = nodata)."""
        return max(int(row["id"]) for row in self.rows)

    def classes(self) -> dict[int, dict[str, str]]:
        """First row of each class id ≥ 1, by id."""
        table: dict[int, dict[str, str]] = {}
        for row in self.rows:
            table.setdefault(int(row["id"]), row)
        table.pop(0, None)
        return dict(sorted(table.items()))

    def code_to_id(self) -> dict[str, int]:
        """Source code (as text) → class id."""
        return {row["code"]: int(row["id"]) for row in self.rows}

    def lookup(self, column: str, fallback: str | None = None) -> np.ndarray:
        """uint8 array indexed by class id giving ``column`` (0 where empty; ``fallback`` column if set)."""
        table = np.zeros(self.n_classes + 1, dtype=np.uint8)
        for class_id, row in self.classes().items():
            value = row.get(column) or (row.get(fallback) if fallback else "") or "0"
            table[class_id] = int(value)
        return table

    def ecosg_lookup(self, climate: str = "temperate") -> np.ndarray:
        """Class id → ECOSG cover (1..33; 0 for id 0) for a climate variant."""
        return self.lookup("ecosg") if climate == "temperate" else self.lookup(f"ecosg_{climate}", "ecosg")

    def has_level(self, level: str) -> bool:
        """True when every class has a value for a CORINE level column."""
        return all(row.get(level) for row in self.classes().values())

    def to_records(self) -> list[dict[str, str]]:
        """Rows as plain dicts, for the model bundle."""
        return [dict(row) for row in self.rows]


def legend_path(name_or_path: str) -> Path | Any:
    """A shipped legend by name (``clc``, ``osm_landuse``, ...) or a CSV file path."""
    shipped = resources.files("s2ecosg") / "data" / "legends" / f"{name_or_path}.csv"
    return shipped if shipped.is_file() else Path(name_or_path)


def load_legend(name_or_path: str) -> Legend:
    """Read and check a legend CSV; errors name the file and the bad row."""
    path = legend_path(name_or_path)
    try:
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            check_columns(list(reader.fieldnames or []), str(path))
            rows = tuple(reader)
    except OSError as error:
        raise InputError(name_or_path, f"legend not found ({error.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(name_or_path, f"not a CSV legend ({error})") from None
    return legend_from_records(rows, str(path))


def check_columns(header: list[str], source: str) -> None:
    """The header row must name every column of :data:`COLUMNS` (comma-separated)."""
    names = [name.strip() for name in header]
    missing = [column for column in COLUMNS if column not in names]
    if not missing:
        return
    if len(names) == 1 and any(mark in names[0] for mark in ";\t"):
        raise InputError(source, "columns are separated by ';' or tabs; a legend CSV separates them by ','")
    raise InputError(source, f"legend has no column {', '.join(missing)}; columns are {', '.join(COLUMNS)}")


def legend_from_records(rows: Any, source: str) -> Legend:
    """Build a :class:`Legend` from row dicts (a CSV or a bundle), checking ids, codes and covers."""
    rows = tuple({column: (row.get(column) or "").strip() for column in COLUMNS} for row in rows)
    if not rows:
        raise InputError(source, "legend has no rows")
    seen: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        check_row(row, number, source)
        if row["code"] in seen:
            raise InputError(source, f"line {number}: code {row['code']} listed twice")
        seen[row["code"]] = row["id"]
    return Legend(source, rows)


def check_row(row: dict[str, str], number: int, source: str) -> None:
    """Check one legend row: integer id 0..255, covers 0..33, non-empty code."""
    try:
        class_id = int(row["id"])
        covers = [int(row[column]) for column in ("ecosg", "ecosg_boreal", "ecosg_mediterranean") if row[column]]
    except ValueError as error:
        raise InputError(source, f"line {number}: not an integer ({error})") from None
    if not row["code"] or not 0 <= class_id <= 255:
        raise InputError(source, f"line {number}: empty code or id outside 0..255")
    if any(not 0 <= cover <= N_COVERS for cover in covers) or (class_id > 0 and not row["ecosg"]):
        raise InputError(source, f"line {number}: ECOSG cover must be 1..{N_COVERS}")


def map_codes(
    codes: np.ndarray, legend: Legend, source: str, nodata_codes: frozenset[str] | set[str] = frozenset()
) -> np.ndarray:
    """Map an array of source codes to uint8 class ids; a code missing from the legend is an error.

    Args:
        codes: Array of integer or string codes (any shape).
        legend: The legend to map through.
        source: File the codes came from, for the error message.
        nodata_codes: Codes (as text) that mean "no data" and map to 0 without being listed.
    """
    unique, inverse = np.unique(codes, return_inverse=True)
    mapping = legend.code_to_id()
    ids = np.zeros(len(unique), dtype=np.uint8)
    for index, code in enumerate(unique):
        text = str(code.item() if hasattr(code, "item") else code)
        if text in nodata_codes:
            continue
        if text not in mapping:
            raise InputError(source, f"class code {text} is not in legend {legend.source}")
        ids[index] = mapping[text]
    return ids[inverse].reshape(codes.shape)
