"""Commands of the evaluate stage: ``s2ecosg evaluate``, ``s2ecosg baseline-train``, ``s2ecosg baseline-predict``."""

from __future__ import annotations

from pathlib import Path

import click

from s2ecosg.blocks import read_manifests
from s2ecosg.cli.common import command, log_option, with_config
from s2ecosg.config import Config

manifests_option = click.Path(exists=True, dir_okay=False)


def role_of(manifests: tuple[str, ...], role: str) -> dict[str, str]:
    """Tile → its file of ``role`` in the block manifests."""
    return {tile: entry[role] for tile, entry in sorted(read_manifests(list(manifests)).items())}


@click.command("evaluate")
@click.option("--predicted", multiple=True, required=True, type=manifests_option, help="predict/blocks/<block>.json")
@click.option("--labelled", multiple=True, required=True, type=manifests_option, help="labels/blocks/<block>.json")
@click.option("--staged", multiple=True, required=True, type=manifests_option, help="stage/blocks/<block>.json")
@click.option("--card", required=True, type=click.Path(exists=True, dir_okay=False), help="The bundle's bundle.json")
@click.option("--split", type=click.Path(dir_okay=False), help="split.geojson with the validation blocks.")
@click.option("--baseline", multiple=True, type=click.Path(exists=True, dir_okay=False), help="baseline/<tile>.tif")
@click.option("--metrics", required=True, type=click.Path(dir_okay=False), help="evaluate/metrics.json to write")
@log_option
@command
@with_config
def evaluate_command(
    config: Config,
    predicted: tuple[str, ...],
    labelled: tuple[str, ...],
    staged: tuple[str, ...],
    card: str,
    split: str | None,
    baseline: tuple[str, ...],
    metrics: str,
) -> None:
    """Agreement, IoU and F1 against the reference labels (and the original ECOSG); metrics files and a picture."""
    from s2ecosg.evaluate.run import EvaluateRequest, run_evaluate

    request = EvaluateRequest(
        predictions=role_of(predicted, "classes"),
        labels=role_of(labelled, "labels"),
        images=role_of(staged, "image"),
        bundle=str(Path(card).parent),
        split_path=split,
        out=str(Path(metrics).parent),
        settings=config.evaluate,
        baseline={Path(path).name.split(".")[0]: path for path in baseline} or None,
        labels_source=config.labels.path,
    )
    run_evaluate(request)


@click.command("baseline-train")
@click.option("--index", required=True, type=click.Path(exists=True, dir_okay=False), help="shards/index.json")
@click.option("--card", required=True, type=click.Path(dir_okay=False), help="baseline/card.json to write")
@log_option
@command
@with_config
def baseline_train_command(config: Config, index: str, card: str) -> None:
    """Fit the per-pixel LightGBM baseline on the training shards."""
    from s2ecosg.evaluate.baseline import run_baseline_train

    run_baseline_train(str(Path(index).parent), str(Path(card).parent), config.evaluate, config.train.seed)


@click.command("baseline-predict")
@click.option("--card", required=True, type=click.Path(exists=True, dir_okay=False), help="baseline/card.json")
@click.option("--image", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--classes", required=True, type=click.Path(dir_okay=False))
@log_option
@command
def baseline_predict_command(card: str, image: str, classes: str) -> None:
    """Class ids of one staged tile by the LightGBM baseline."""
    from s2ecosg.evaluate.baseline import run_baseline_predict

    run_baseline_predict(str(Path(card).parent), image, classes)


COMMANDS = [evaluate_command, baseline_train_command, baseline_predict_command]
