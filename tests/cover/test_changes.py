"""Change counting on hand-made products: confident changes, near-ties apart, areas, members, the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import netCDF4
import numpy as np

from s2ecosg.cover.change_report import change_report, report_line
from s2ecosg.cover.changes import ChangeSettings
from s2ecosg.surfex import write_cover

BOUNDS = (10.0, 50.0, 10.02, 50.01)  # 2 rows × 4 columns of 1/200°


def product(folder: Path, cover: np.ndarray, fractions: np.ndarray | None = None, members: list | None = None) -> Path:
    """A cover folder: the DIRECT pair, a netCDF with fraction codes (33, rows, cols), member pairs."""
    folder.mkdir(parents=True)
    write_cover(folder / "P", cover, BOUNDS, "test")
    if fractions is not None:
        with netCDF4.Dataset(folder / "P.nc", "w") as dataset:
            dataset.createDimension("cover_class", 33)
            dataset.createDimension("lat", cover.shape[0])
            dataset.createDimension("lon", cover.shape[1])
            dataset.createVariable("fraction", "u1", ("cover_class", "lat", "lon"))[:] = fractions
            dataset.createVariable("model_confidence", "u1", ("lat", "lon"))[:] = np.full(cover.shape, 200)
            dataset.createVariable("cover", "u1", ("lat", "lon"))[:] = cover
            dataset.createVariable("clear_observations", "u1", ("lat", "lon"))[:] = np.array(
                [[5, 1, 5, 5], [5, 5, 255, 5]]
            )
    for number, member in enumerate(members or [], start=1):
        write_cover(folder / f"P_M{number:02d}", member, BOUNDS, "member")
    return folder


def codes(shares: dict[tuple[int, int], dict[int, float]]) -> np.ndarray:
    """(33, 2, 4) fraction codes (share × 250) from {cell: {cover: share}}."""
    array = np.zeros((33, 2, 4), np.uint8)
    for (row, column), by_cover in shares.items():
        for cover, share in by_cover.items():
            array[cover - 1, row, column] = round(share * 250)
    return array


def test_confident_changes_near_ties_and_areas(tmp_path: Path) -> None:
    old = np.array([[20, 20, 8, 1], [20, 20, 8, 0]], np.uint8)
    new = np.array([[17, 17, 8, 1], [20, 12, 17, 14]], np.uint8)
    shares = {
        (0, 0): {17: 0.70, 20: 0.30},  # lead 0.40: confident
        (0, 1): {17: 0.52, 20: 0.48},  # lead 0.04: a near-tie, uncertain
        (1, 1): {12: 0.55, 20: 0.45},  # lead 0.10: confident (at the margin)
        (1, 2): {17: 0.5, 8: 0.45, 20: 0.05},  # lead 0.05: uncertain
        (1, 3): {14: 1.0},  # from no cover: confident
    }
    members = [new.copy(), old.copy()]
    before = product(tmp_path / "old", old, members=members)
    after = product(tmp_path / "new", new, codes(shares), members=[new.copy(), new.copy()])
    report = change_report(before, after, tmp_path / "report", ChangeSettings(0.1, 0.0, 3))
    assert {(pair["from"], pair["to"]): pair["cells"] for pair in report["transitions"]} == {
        (20, 17): 1,
        (20, 12): 1,
        (0, 14): 1,
    }
    assert {(pair["from"], pair["to"]): pair["cells"] for pair in report["uncertain_transitions"]} == {
        (20, 17): 1,
        (8, 17): 1,
    }

    # Areas on the sphere of radius 6 371 007.2 m: a 1/200° cell of row 0 (50.01-50.005° N) and of row 1.
    def area(row: int) -> float:
        north, south = math.radians(50.01 - row / 200), math.radians(50.01 - (row + 1) / 200)
        return 6371007.2**2 * math.radians(1 / 200) * (math.sin(north) - math.sin(south)) / 1e6

    assert report["changed_km2"] == round(area(0) + 2 * area(1), 3)
    # Land: every cell but the sea one (row 0, column 3) that stayed sea.
    assert report["land_cells"] == 7 and report["changed_percent"] == round(100 * 3 / 7, 4)
    assert report["covers"]["17"]["gained_cells"] == 1 and report["covers"]["20"]["lost_cells"] == 2
    # Thin: land cells of the new product on fewer than 3 clear observations or none (1 and 255 above).
    assert report["thin_percent"] == round(100 * 2 / 7, 4)
    # Members: M01 unchanged (0 %), M02 changed in 5 of 7 land cells: every change counts (no shares on disk).
    assert report["members"]["changed_percent"] == {"M01": 0.0, "M02": round(100 * 5 / 7, 4)}
    assert (
        report_line(report)
        == f"changed={100 * 3 / 7:.2f}% km2={report['changed_km2']:.0f} uncertain={100 * 2 / 7:.2f}%"
    )
    saved = json.loads((tmp_path / "report" / "changes.json").read_text())
    assert saved["changed_cells"] == 3 and (tmp_path / "report" / "changes.png").stat().st_size > 10000
    assert (
        "| 20 summer C3 crops | 12 boreal needleleaf evergreen | 1 |"
        in (tmp_path / "report" / "changes.md").read_text()
    )


def test_a_product_compared_with_itself_changes_nothing(tmp_path: Path) -> None:
    cover = np.array([[20, 20, 8, 1], [20, 12, 17, 14]], np.uint8)
    report = change_report(
        product(tmp_path / "a", cover), product(tmp_path / "b", cover), tmp_path / "r", ChangeSettings()
    )
    assert report["changed_cells"] == report["uncertain_cells"] == 0 and report["transitions"] == []
