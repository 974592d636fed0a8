"""Command of the nightly entry point: ``s2ecosg nightly``."""

from __future__ import annotations

import sys

import click

from s2ecosg.cli.common import command, log_option
from s2ecosg.nightly.run import NightlyRequest, run_nightly


@click.command("nightly")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--profile", default="profiles/slurm", show_default=True, help="Snakemake profile.")
@click.option("--publish", "publish_to", required=True, type=click.Path(file_okay=False), help="Product folder.")
@click.option("--keep", default=14, show_default=True, help="Dated products to keep (at least 1).")
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds before the run is stopped.")
@click.option("--accept", is_flag=True, help="Publish tonight's product even if the review holds it (after review).")
@click.option(
    "--max-change", type=float, default=None, help="Percent of land cells (default: nightly.max_change_percent)."
)
@log_option
@command(append_log=True)
def nightly_command(
    config_path: str, profile: str, publish_to: str, keep: int, timeout: float, accept: bool, max_change: float | None
) -> None:
    """Rerun the workflow, review what changed, publish the cover to a dated folder, keep the newest.

    Exit status: 0 published, 3 held by the review (nothing published; ``--accept`` publishes it), other: failed.
    """
    request = NightlyRequest(config_path, profile, publish_to, keep, timeout, accept, max_change)
    status = run_nightly(request)
    if status:
        sys.exit(status)


@click.command("changes")
@click.argument("old", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of changes.json, .md, .png.")
@click.option("--margin", type=float, default=0.1, show_default=True, help="Least lead of the new cover in a cell.")
@click.option("--confidence", type=float, default=0.0, show_default=True, help="Least mean model confidence.")
@click.option("--min-clear", type=int, default=3, show_default=True, help="Clear observations a cell should rest on.")
@log_option
@command
def changes_command(old: str, new: str, out: str, margin: float, confidence: float, min_clear: int) -> None:
    """What changed from the cover product OLD to NEW (cover folders on one grid): changes.json, .md, .png."""
    from s2ecosg.cover.change_report import change_report, report_line
    from s2ecosg.cover.changes import ChangeSettings

    report = change_report(old, new, out, ChangeSettings(margin, confidence, min_clear))
    click.echo(f"{report_line(report)} (report in {out})")


COMMANDS = [nightly_command, changes_command]
