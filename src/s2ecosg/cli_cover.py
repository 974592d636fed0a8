"""Commands of the cover and evaluate stages, and config helpers (registered on :func:`s2ecosg.cli.main`)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click

import s2ecosg
from s2ecosg.cli import LOG, command, log_option, main, sections, settings_option, tile_paths, tiles_option


def file_digest(path: str | Path) -> str:
    """First 12 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


@main.command("cover")
@settings_option
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--predict-dir", required=True, type=click.Path(exists=True, file_okay=False))
@tiles_option
@click.option("--basename", "output_basename", required=True, help="Output path without extension.")
@log_option
@command
def cover_command(settings: str, bundle: str, predict_dir: str, tiles: str, output_basename: str) -> None:
    """Aggregate predicted classes to ECOSG covers and write the SURFEX DIRECT pair."""
    from s2ecosg.config import config_hash
    from s2ecosg.cover import run_cover

    config = sections(settings)
    provenance = (
        f"{Path(output_basename).name} s2ecosg {s2ecosg.__version__} bundle {file_digest(Path(bundle) / 'weights.pt')}"
        f" config {config_hash(config)}"
    )
    run_cover(
        list(tile_paths(predict_dir, tiles).values()),
        bundle,
        config.cover,
        config.domain.bbox,
        output_basename,
        provenance,
    )
    LOG.info("cover file: %s.dir", output_basename)


@main.command("validate-cover")
@click.argument("basename")
def validate_cover_command(basename: str) -> None:
    """Check a cover pair against SURFEX's format rules; one line per problem, exit 1 if any."""
    from s2ecosg.validate import validate_cover

    problems = validate_cover(basename)
    for problem in problems:
        click.echo(f"{basename}: {problem}")
    if problems:
        sys.exit(1)
    click.echo(f"{basename}: ok")


@main.command("evaluate")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--predict-dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--labels-dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--stage-dir", required=True, type=click.Path(exists=True, file_okay=False))
@tiles_option
@click.option("--split", type=click.Path(dir_okay=False), help="split.geojson with the validation blocks.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@log_option
@command
def evaluate_command(
    bundle: str, predict_dir: str, labels_dir: str, stage_dir: str, tiles: str, split: str | None, out: str
) -> None:
    """Agreement, IoU and F1 against the reference labels; metrics files and a picture."""
    from s2ecosg.evaluate import run_evaluate

    run_evaluate(
        tile_paths(predict_dir, tiles), tile_paths(labels_dir, tiles), tile_paths(stage_dir, tiles), bundle, split, out
    )


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
@command
def check_config_command(path: str) -> None:
    """Validate a config file; print the full config with defaults."""
    import yaml

    from s2ecosg.config import read_config_file

    click.echo(yaml.safe_dump(read_config_file(path).model_dump(mode="json"), sort_keys=False))


@main.command("config-schema")
def config_schema_command() -> None:
    """Print the JSON schema of config.yaml."""
    from s2ecosg.config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command("summary")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False))
def summary_command(config_path: str) -> None:
    """Print where a finished run's cover file is, its format check and the agreement metrics."""
    from s2ecosg.config import read_config_file
    from s2ecosg.surfex import read_cover
    from s2ecosg.validate import validate_cover

    config = read_config_file(config_path)
    results = Path("results") / config.run.name
    base = results / "cover" / config.cover.basename
    problems = validate_cover(base)
    cover, header = read_cover(base)
    click.echo(
        f"cover file: {base}.dir (+ .hdr, .nam): {int(header['rows'])} rows × {int(header['cols'])} cols, "
        f"{100 * (cover > 0).mean():.1f} % of cells with a cover; format check: {'; '.join(problems) or 'ok'}"
    )
    metrics = results / "evaluate" / "metrics.md"
    if metrics.exists():
        click.echo(metrics.read_text())
        click.echo(f"picture: {results / 'evaluate' / 'panels.png'}")
