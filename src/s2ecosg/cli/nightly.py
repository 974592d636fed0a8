"""Command of the nightly entry point: ``s2ecosg nightly``."""

from __future__ import annotations

import sys

import click

from s2ecosg.cli.common import command, log_option
from s2ecosg.nightly import run_nightly


@click.command("nightly")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--profile", default="profiles/slurm", show_default=True, help="Snakemake profile.")
@click.option("--publish", "publish_to", required=True, type=click.Path(file_okay=False), help="Product folder.")
@click.option("--keep", default=14, show_default=True, help="Dated products to keep (at least 1).")
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds before the run is stopped.")
@log_option
@command(append_log=True)
def nightly_command(config_path: str, profile: str, publish_to: str, keep: int, timeout: float) -> None:
    """Rerun the workflow, publish the cover to a dated folder, keep the newest; non-zero exit on failure."""
    status = run_nightly(config_path, profile, publish_to, keep, timeout)
    if status:
        sys.exit(status)


COMMANDS = [nightly_command]
