"""Values the config checks and parses: lon/lat boxes, date windows, cell sizes in degrees."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

LonLatBox = tuple[float, float, float, float]


def check_box(box: LonLatBox | None) -> LonLatBox | None:
    """A [west, south, east, north] box in degrees, with west < east and south < north inside the globe."""
    if box is None:
        return None
    west, south, east, north = box
    if not (-180 <= west < east <= 180):
        raise ValueError(f"[west, south, east, north] needs -180 <= west < east <= 180; got west {west}, east {east}")
    if not (-90 <= south < north <= 90):
        raise ValueError(
            f"[west, south, east, north] needs -90 <= south < north <= 90; got south {south}, north {north}"
        )
    return box


def check_window(window: tuple[dt.date, dt.date] | None) -> tuple[dt.date, dt.date] | None:
    """A [start, end] date window with start <= end."""
    if window is not None and window[0] > window[1]:
        raise ValueError(f"date window starts {window[0]} after it ends {window[1]}")
    return window


def degrees(value: float | str) -> float:
    """Parse a cell size in degrees given as a number or a fraction string such as ``"1/1800"``."""
    return float(Fraction(value)) if isinstance(value, str) else float(value)
