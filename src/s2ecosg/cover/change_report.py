"""The change report of two cover products: ``changes.json``, ``changes.md`` and ``changes.png``.

Made by ``s2ecosg changes OLD NEW`` and by the nightly before it publishes (:mod:`s2ecosg.cover.changes` counts).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

from s2ecosg.cover.changes import (
    ChangeSettings,
    ChangeSummary,
    compare,
    member_bases,
    product_base,
    summary,
    thin_cells,
)
from s2ecosg.cover.writers.table import ecosg_table
from s2ecosg.io import atomic_path, write_json
from s2ecosg.legend import N_COVERS
from s2ecosg.surfex import open_cover

PICTURE_CELLS = 1200  # longest side of each panel, in kept cells


class SettingsRecord(TypedDict):
    """The :class:`~s2ecosg.cover.changes.ChangeSettings` a report was made with."""

    margin: float
    confidence: float
    min_clear: int


class MemberSpread(TypedDict):
    """Mean, least and largest changed share (%) over the ensemble members."""

    mean: float
    min: float
    max: float


class MemberChanges(TypedDict, total=False):
    """Each member's changed share (% of land cells, by ``Mnn``) and their spread; empty without shared members."""

    changed_percent: dict[str, float]
    spread: MemberSpread


class ChangeReport(ChangeSummary):
    """``changes.json``: the two products, the settings, the figures, the members; ``thin_percent`` with a netCDF."""

    old: str
    new: str
    settings: SettingsRecord
    members: MemberChanges
    thin_percent: NotRequired[float]


class FirstProduct(TypedDict):
    """``changes.json`` of a night without a published product to compare with."""

    first_product: bool
    created: str  # ISO 8601, UTC


def change_report(old: str | Path, new: str | Path, out: str | Path, settings: ChangeSettings) -> ChangeReport:
    """Compare two cover folders; write the report into ``out``; return ``changes.json``'s content."""
    old_base, new_base = product_base(old), product_base(new)
    _, header = open_cover(new_base)
    step = max(1, int(np.ceil(max(header["rows"], header["cols"]) / PICTURE_CELLS)))
    tally = compare(old_base, new_base, settings, step)
    recorded = SettingsRecord(margin=settings.margin, confidence=settings.confidence, min_clear=settings.min_clear)
    members = member_changes(old_base, new_base, settings)
    report = ChangeReport(old=str(old_base), new=str(new_base), settings=recorded, **summary(tally), members=members)
    if Path(f"{new_base}.nc").is_file():
        thin, land = thin_cells(new_base, settings.min_clear)
        report["thin_percent"] = round(100 * thin / land, 4) if land else 0.0
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / "changes.json", report)
    with atomic_path(Path(out) / "changes.md") as temporary:
        temporary.write_text(markdown(report))
    assert tally.changed_map is not None
    picture(old_base, new_base, tally.changed_map, Path(out) / "changes.png", header)
    return report


def member_changes(old_base: Path, new_base: Path, settings: ChangeSettings) -> MemberChanges:
    """The confident change of each ensemble member present in both products, and its spread over them."""
    old_members, new_members = member_bases(old_base), member_bases(new_base)
    shared = sorted(set(old_members) & set(new_members))
    if not shared:
        return {}
    # A member's own shares are not on disk (its pair only): every change of a member's cell counts.
    percents = {}
    for number in shared:
        figures = summary(
            compare(old_members[number], new_members[number], ChangeSettings(0.0, 0.0, settings.min_clear), 512)
        )
        percents[f"M{number:02d}"] = figures["changed_percent"]
    values = np.array(list(percents.values()))
    spread = MemberSpread(
        mean=round(float(values.mean()), 4), min=round(float(values.min()), 4), max=round(float(values.max()), 4)
    )
    return {"changed_percent": percents, "spread": spread}


def first_product(out: str | Path) -> FirstProduct:
    """Write ``changes.json`` of a night with nothing published to compare with (the first product)."""
    record = FirstProduct(first_product=True, created=dt.datetime.now(dt.UTC).isoformat())
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / "changes.json", record)
    return record


def markdown(report: ChangeReport) -> str:
    """The report for a person on duty: totals, covers gained and lost, the largest transitions."""
    names = {int(row["cover"]): row["name"] for row in ecosg_table()}
    lines = [
        "# What changed",
        "",
        f"- from `{report['old']}` to `{report['new']}`",
        f"- confident changes: {report['changed_cells']} cells, {report['changed_km2']:.2f} km², "
        f"{report['changed_percent']:.3f} % of {report['land_cells']} land cells",
        f"- uncertain flips (new cover leads by less than {report['settings']['margin']} of the cell's pixels"
        f" or confidence below {report['settings']['confidence']}): {report['uncertain_cells']} cells, "
        f"{report['uncertain_km2']:.2f} km², {report['uncertain_percent']:.3f} %",
    ]
    if "thin_percent" in report:
        lines.append(
            f"- {report['thin_percent']:.1f} % of the land cells rest on fewer than {report['settings']['min_clear']} "
            "clear observations (or on none: filled cells)"
        )
    if "spread" in report["members"]:
        spread = report["members"]["spread"]
        lines.append(
            f"- ensemble members: changed {spread['min']:.3f}–{spread['max']:.3f} % (mean {spread['mean']:.3f} %)"
        )
    lines += [
        "",
        "## Covers gained and lost (confident changes)",
        "",
        "| cover | gained km² | lost km² |",
        "|---|---|---|",
    ]
    for cover, figures in report["covers"].items():
        lines.append(f"| {cover} {figures['name']} | {figures['gained_km2']:.3f} | {figures['lost_km2']:.3f} |")
    lines += ["", "## Transitions (confident; largest first)", "", "| from | to | cells | km² |", "|---|---|---|---|"]
    for pair in report["transitions"][:30]:
        source, target = names.get(int(pair["from"]), "none"), names.get(int(pair["to"]), "none")
        lines.append(f"| {pair['from']} {source} | {pair['to']} {target} | {pair['cells']} | {pair['km2']:.3f} |")
    return "\n".join(lines) + "\n"


def picture(old_base: Path, new_base: Path, changed: NDArray[np.uint8], path: Path, header: dict[str, float]) -> None:
    """Three panels: the old cover, the new one, and the changed cells coloured by their new cover."""
    import matplotlib  # 0.4 s: imported when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used
    from matplotlib.colors import ListedColormap  # 0.6 s to import: loaded where used

    step = max(1, int(np.ceil(max(header["rows"], header["cols"]) / PICTURE_CELLS)))
    step = min(512, 1 << max(0, step - 1).bit_length())  # as compare() kept the change map
    old, new = (np.asarray(open_cover(base)[0][::step, ::step]) for base in (old_base, new_base))
    table = ecosg_table()
    cmap = ListedColormap(["#ffffff"] + [row["colour"] for row in table])
    extent = (header["west"], header["east"], header["south"], header["north"])
    aspect = 1 / max(np.cos(np.radians((header["north"] + header["south"]) / 2)), 0.1)
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.5), constrained_layout=True)
    shown = np.where(changed == 1, new, 0)
    titles = ("before", "after", "confident changes (new cover; grey: uncertain flips)")
    for axis, image, title in zip(axes, (old, new, shown), titles, strict=True):
        axis.imshow(
            image, cmap=cmap, vmin=-0.5, vmax=N_COVERS + 0.5, interpolation="nearest", extent=extent, aspect=aspect
        )
        axis.set_title(title)
        axis.set_xlabel("longitude (°E)")
    uncertain = np.ma.masked_where(changed != 2, changed)
    axes[2].imshow(uncertain, cmap=ListedColormap(["#9a9a9a"]), interpolation="nearest", extent=extent, aspect=aspect)
    axes[0].set_ylabel("latitude (°N)")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    plt.close(figure)


def report_line(report: ChangeReport) -> str:
    """``changed=0.31% km2=262 uncertain=0.05%``: the figures of the nightly's OK and FAILED lines."""
    return (
        f"changed={report['changed_percent']:.2f}% km2={report['changed_km2']:.0f} "
        f"uncertain={report['uncertain_percent']:.2f}%"
    )
