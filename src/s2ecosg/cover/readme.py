"""The cover folder's README: what each file is, how to use it in PGD, cells by origin and provenance."""

from __future__ import annotations

from s2ecosg.lonlat import LonLatGrid


def readme_text(
    basename: str, grid: LonLatGrid, provenance: dict[str, str], namelist: str, counts: dict[str, int]
) -> str:
    """The cover folder's README: what each file is, how to use it, provenance and fill statistics."""
    west, south, east, north = grid.bounds
    lines = [
        f"# ECOCLIMAP-SG cover file {basename}",
        "",
        f"- `{basename}.dir` + `{basename}.hdr`: SURFEX DIRECT, uint8, nodata 0, covers 1..33, row 1 = north;",
        f"  {grid.rows} rows × {grid.cols} columns of {grid.step:.10g}°, edges W {west:.6f} S {south:.6f} E {east:.6f} N {north:.6f}.",
        f"- `{basename}.nc`: CF-1.8 netCDF with majority cover, 33 fractions, majority share, model confidence, source.",
        f"- `{basename}.nam`: PGD namelist lines; `{basename}.png`: quick-look.",
        "",
        "Use: link the `.dir` and `.hdr` into the PGD working directory and add to the PGD namelist:",
        "",
        "```fortran",
        namelist.rstrip(),
        "```",
        "",
        "## Cells by origin",
        "",
    ]
    origins = ("no cover", "predicted", "ECOSG fill", "sea mask")
    lines += [f"- {name}: {count}" for name, count in counts.items() if name in origins]
    thin = next((name for name in counts if name.startswith("land on fewer")), None)
    if thin is not None and counts.get("land"):
        share = 100 * counts[thin] / counts["land"]
        lines += [
            "",
            "## Data score",
            "",
            f"- {share:.1f} % of the {counts['land']} land cells rest on fewer than "
            f"{thin.split()[3]} clear observations (or on none: filled cells); `{basename}.nc` holds per cell "
            "`clear_observations` (mean of its predicted pixels), `newest_observation` (date of the newest clear one) "
            "and `predicted_share` (share of its area predicted), as CLC+ Backbone's data score.",
            f"- newest scene: {provenance.get('newest_scene', 'unknown')}",
        ]
    lines += ["", "## Provenance", ""] + [f"- {key}: {value}" for key, value in provenance.items()]
    return "\n".join(lines) + "\n"
