"""Command of the train stage: ``s2ecosg train`` (once per process under torchrun, horovodrun or srun)."""

from __future__ import annotations

from pathlib import Path

import click

from s2ecosg.cli.common import command, log_option, with_config
from s2ecosg.config import Config


@click.command("train")
@click.option("--index", required=True, type=click.Path(exists=True, dir_okay=False), help="shards/index.json")
@click.option("--checkpoints", required=True, type=click.Path(file_okay=False))
@click.option("--card", required=True, type=click.Path(dir_okay=False), help="model/bundle.json to write")
@log_option
@command
@with_config
def train_command(config: Config, index: str, checkpoints: str, card: str) -> None:
    """Train the U-Net and write the model bundle."""
    from s2ecosg.train.run import run_train

    run_train(str(Path(index).parent), config, checkpoints, str(Path(card).parent))


COMMANDS = [train_command]
