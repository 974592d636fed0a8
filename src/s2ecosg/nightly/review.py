"""The nightly's review of tonight's product before it is published: what changed, on what imagery, whether to hold it.

Tonight's cover is compared with the last published one (``<publish>/latest``, :mod:`s2ecosg.cover.change_report`);
the report is written beside the run (``results/<run>/changes/``) and kept there for review. The product is held
(not published) when its confident change exceeds ``nightly.max_change_percent`` of the land cells (``reason=change``)
or when more than ``nightly.max_thin_percent`` of its land cells rest on fewer than ``cover.min_clear_observations``
clear observations (``reason=clear``). ``s2ecosg nightly --accept`` publishes a held product after review.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s2ecosg.config import Config
from s2ecosg.cover.change_report import change_report, first_product, report_line
from s2ecosg.cover.changes import ChangeSettings, product_base, thin_cells
from s2ecosg.layout import RunLayout
from s2ecosg.stage.inventory import read_inventory


@dataclass(frozen=True)
class Night:
    """What tonight brought: scenes in the inventory, those first found tonight, the newest scene's date."""

    scenes: int
    new_scenes: int
    newest_scene: str

    @classmethod
    def read(cls, settings: Config) -> Night:
        """From the inventory the run just wrote (scenes carry when they were first found)."""
        path = Path(RunLayout(settings.run.name).inventory)
        inventory = read_inventory(path) if path.is_file() else None
        scenes = inventory["scenes"] if inventory is not None else []
        created = inventory.get("created") if inventory is not None else None
        new = sum(scene.get("found") == created for scene in scenes)
        newest = max((str(scene.get("date", "")) for scene in scenes), default="") or "unknown"
        return cls(len(scenes), new, newest)

    def line(self) -> str:
        """``new_scenes=3 newest_scene=2026-12-05`` (or ``new_scenes=0 (no new scene)``)."""
        note = " (no new scene)" if self.new_scenes == 0 else ""
        return f"new_scenes={self.new_scenes}{note} scenes={self.scenes} newest_scene={self.newest_scene}"


@dataclass(frozen=True)
class Verdict:
    """The review's outcome: hold the product (with the reason) or publish it; the figures for the log line."""

    hold: str | None  # "change", "clear" or None
    figures: str
    report: Path


def review(settings: Config, published: Path | None, max_change: float | None) -> Verdict:
    """Compare tonight's cover with the last published product; write the report; decide whether to hold it."""
    layout = RunLayout(settings.run.name)
    cover, out = Path(layout.results("cover")), Path(layout.results("changes"))
    gate = settings.nightly
    limit = gate.max_change_percent if max_change is None else max_change
    thin_count, land = thin_cells(product_base(cover), settings.cover.min_clear_observations)
    thin = 100.0 * thin_count / land if land else 0.0
    figures = f"thin={thin:.1f}%"
    hold = None
    if published is not None and published.is_dir():
        margins = ChangeSettings(gate.change_margin, gate.change_confidence, settings.cover.min_clear_observations)
        changes = change_report(published, cover, out, margins)
        figures = f"{report_line(changes)} {figures}"
        if changes["changed_percent"] > limit:
            hold = "change"
    else:
        first_product(out)
        figures = f"changed=first-product {figures}"
    if hold is None and thin > gate.max_thin_percent:
        hold = "clear"
    return Verdict(hold, figures, out)


def failure_reason(settings: Config, since: float) -> str:
    """Why tonight's workflow failed, from the rule logs it wrote: ``archive``, ``crash`` or ``workflow``.

    ``archive``: the archive or the STAC catalogue stayed unreachable after the retries; ``crash``: a job died in
    native code (its log holds the stacks); anything else is ``workflow`` (the logs say more).
    """
    folder = Path(RunLayout(settings.run.name).log())
    for path in sorted(folder.rglob("*.log")) if folder.is_dir() else []:
        if path.stat().st_mtime < since:
            continue
        text = path.read_text(errors="replace")
        if "unreachable after" in text:
            return f"archive log={path}"
        if "Fatal Python error" in text:
            return f"crash log={path}"
    return "workflow"
