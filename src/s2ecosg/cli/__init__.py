"""The ``s2ecosg`` command line: one command per workflow rule, one module per stage, registered here.

Commands use dashes; options use dashes on the command line and underscores in Python. Every command that a rule
runs gets the run's whole validated config (``--config``, :func:`s2ecosg.cli.common.with_config`).
"""

from __future__ import annotations

import click

from s2ecosg.cli import config, cover, evaluate, labels, nightly, predict, shards, stage, train

MODULES = (stage, labels, shards, train, predict, cover, evaluate, config, nightly)


@click.group()
@click.version_option(package_name="s2ecosg")
def main() -> None:
    """Sentinel-2 → CNN land cover → ECOCLIMAP-SG cover file for SURFEX."""


for module in MODULES:
    for each in module.COMMANDS:
        main.add_command(each)


def run() -> None:
    """Console-script entry point."""
    main()
