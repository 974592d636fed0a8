"""The 33 ECOSG covers as the writers name and colour them (``data/ecosg_covers.csv``)."""

from __future__ import annotations

import csv

from s2ecosg.io import package_csv

FRACTION_SCALE = 1 / 250  # fractions and shares stored as uint8 × 1/250 (255 = missing)


def ecosg_table() -> list[dict[str, str]]:
    """The 33 ECOSG covers: number, name, SURFEX tile, colour."""
    with package_csv("ecosg_covers.csv") as handle:
        return list(csv.DictReader(handle))
