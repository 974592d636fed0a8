"""Commands of the cover and evaluate stages, and config helpers (registered on :func:`s2ecosg.cli.main`)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

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


def cover_provenance(config: Any, bundle: str, scene_lists: list[str]) -> dict[str, str]:
    """Provenance recorded in the netCDF, the header comment and the README."""
    import datetime as dt

    from s2ecosg.config import config_hash
    from s2ecosg.io import read_json

    scenes = sorted({scene["scene_id"] for path in scene_lists for scene in read_json(path)["scenes"]})
    return {
        "s2ecosg_version": s2ecosg.__version__,
        "bundle": file_digest(Path(bundle) / "weights.pt"),
        "config_hash": config_hash(config),
        "scenes": " ".join(scenes) or "unknown",
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@main.command("cover")
@settings_option
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--predict-dir", required=True, type=click.Path(exists=True, file_okay=False))
@tiles_option
@click.option("--scene-lists", type=click.Path(exists=True, file_okay=False), help="Folder of per-tile scene lists.")
@click.option("--basename", "output_basename", required=True, help="Output path without extension.")
@log_option
@command
def cover_command(
    settings: str, bundle: str, predict_dir: str, tiles: str, scene_lists: str | None, output_basename: str
) -> None:
    """Aggregate predicted classes to ECOSG covers and write the SURFEX DIRECT pair and its companions."""
    from s2ecosg.cover import run_cover
    from s2ecosg.io import read_json
    from s2ecosg.legend import legend_from_records

    config = sections(settings)
    classes = list(tile_paths(predict_dir, tiles).values())
    confidences = [
        path if Path(path).exists() else None for path in tile_paths(predict_dir, tiles, ".conf.tif").values()
    ]
    legend = legend_from_records(read_json(Path(bundle) / "bundle.json")["legend"], f"{bundle}/bundle.json")
    lists = list(tile_paths(scene_lists, tiles, ".json").values()) if scene_lists else []
    provenance = cover_provenance(config, bundle, [path for path in lists if Path(path).exists()])
    run_cover(classes, confidences, legend, config.cover, config.domain, output_basename, provenance)
    LOG.info("cover file: %s.dir", output_basename)


@main.command("domain")
@click.argument("name", required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take the domain of a config.")
@command
def domain_command(name: str | None, config_path: str | None) -> None:
    """Print a HARMONIE domain's extent, the output grid and the PGD grid namelists."""
    from s2ecosg.config import CoverConfig, DomainConfig, degrees
    from s2ecosg.config_files import read_config_file
    from s2ecosg.domain import resolve_domain
    from s2ecosg.errors import InputError
    from s2ecosg.lonlat import snap_grid

    config = read_config_file(config_path) if config_path else None
    domain_settings = config.domain if config else DomainConfig(name=name)
    cover_settings = config.cover if config else CoverConfig()
    domain = resolve_domain(domain_settings.name, domain_settings.harmonie)
    if domain is None:
        raise InputError(config_path or "domain", "no HARMONIE domain given (a name or domain.harmonie keys)")
    extent = domain.lonlat_extent(domain_settings.margin)
    grid = snap_grid(extent, degrees(cover_settings.resolution_deg))
    click.echo(
        f"domain {domain.name}: NIMAX {domain.nimax} × NJMAX {domain.njmax} cells of {domain.gsize} m; {domain.proj4}"
    )
    click.echo(
        "extent with margin {}: west {:.6f} south {:.6f} east {:.6f} north {:.6f}".format(
            domain_settings.margin, *extent
        )
    )
    click.echo(
        "output grid: {} rows × {} cols of {:.10g}°, edges west {:.6f} south {:.6f} east {:.6f} north {:.6f}".format(
            grid.rows, grid.cols, grid.step, *grid.bounds
        )
    )
    click.echo(domain.namelists(), nl=False)


@main.command("validate-cover")
@click.argument("basename")
@click.option("--domain", "domain_name", help="Also check that the file covers this named domain (+ margin).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take the domain of a config.")
@click.option(
    "--margin", type=int, default=None, help="Model cells around the domain that must be covered (default 2)."
)
@command
def validate_cover_command(basename: str, domain_name: str | None, config_path: str | None, margin: int | None) -> None:
    """Check a cover pair against SURFEX's format rules (and a domain); one line per problem, exit 1 if any."""
    from s2ecosg.config_files import read_config_file
    from s2ecosg.domain import resolve_domain
    from s2ecosg.validate import domain_problems, validate_cover

    problems = validate_cover(basename)
    domain_settings = read_config_file(config_path).domain if config_path else None
    domain = (
        resolve_domain(domain_name, None)
        if domain_name
        else (resolve_domain(domain_settings.name, domain_settings.harmonie) if domain_settings else None)
    )
    if domain is not None and not problems:
        chosen_margin = margin if margin is not None else (domain_settings.margin if domain_settings else 2)
        problems += domain_problems(basename, domain, chosen_margin)
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
@click.option("--baseline-dir", type=click.Path(exists=True, file_okay=False), help="Baseline predictions to score.")
@settings_option
@log_option
@command
def evaluate_command(
    bundle: str,
    predict_dir: str,
    labels_dir: str,
    stage_dir: str,
    tiles: str,
    split: str | None,
    out: str,
    baseline_dir: str | None,
    settings: str,
) -> None:
    """Agreement, IoU and F1 against the reference labels (and the original ECOSG); metrics files and a picture."""
    from s2ecosg.evaluate import run_evaluate

    paths = tile_paths(predict_dir, tiles), tile_paths(labels_dir, tiles), tile_paths(stage_dir, tiles)
    baseline = tile_paths(baseline_dir, tiles) if baseline_dir else None
    config = sections(settings)
    run_evaluate(*paths, bundle, split, out, config.evaluate, baseline, config.labels.path)


@main.command("baseline-train")
@click.option("--shards", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@settings_option
@log_option
@command
def baseline_train_command(shards: str, out: str, settings: str) -> None:
    """Fit the per-pixel LightGBM baseline on the training shards."""
    from s2ecosg.baseline import run_baseline_train

    config = sections(settings)
    run_baseline_train(shards, out, config.evaluate, config.train.seed)


@main.command("baseline-predict")
@click.option("--model-dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--image", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--classes", required=True, type=click.Path(dir_okay=False))
@log_option
@command
def baseline_predict_command(model_dir: str, image: str, classes: str) -> None:
    """Class ids of one staged tile by the LightGBM baseline."""
    from s2ecosg.baseline import run_baseline_predict

    run_baseline_predict(model_dir, image, classes)


@main.command("check-config")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@command
def check_config_command(paths: tuple[str, ...]) -> None:
    """Validate config files (layered in order, as `snakemake --configfile A B`); print the config the workflow runs.

    Input files and folders the config names must exist (as the workflow checks at start).
    """
    import yaml

    from s2ecosg.config_files import check_input_paths, read_config_file

    config = read_config_file(*paths)
    check_input_paths(config, " + ".join(paths))
    click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


@main.command("config-schema")
@command
def config_schema_command() -> None:
    """Print the JSON schema of config.yaml."""
    from s2ecosg.config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command("summary")
@click.argument("config_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@command
def summary_command(config_paths: tuple[str, ...]) -> None:
    """Print where a finished run's cover file is, its format check and the agreement metrics."""
    from s2ecosg.config_files import read_config_file
    from s2ecosg.errors import InputError
    from s2ecosg.surfex import read_cover
    from s2ecosg.validate import validate_cover

    config = read_config_file(*config_paths)
    results = Path("results") / config.run.name
    base = results / "cover" / config.cover.basename
    if not Path(f"{base}.dir").exists():
        raise InputError(f"{base}.dir", f"no cover yet for run {config.run.name} (run the workflow first)")
    problems = validate_cover(base)
    if problems:
        raise InputError(f"{base}.dir", f"format check failed: {problems[0]}")
    cover, header = read_cover(base)
    click.echo(
        f"cover file: {base}.dir (+ .hdr, .nam): {int(header['rows'])} rows × {int(header['cols'])} cols, "
        f"{100 * (cover > 0).mean():.1f} % of cells with a cover; format check: ok"
    )
    metrics = results / "evaluate" / "metrics.md"
    if metrics.exists():
        click.echo(metrics.read_text())
        click.echo(f"picture: {results / 'evaluate' / 'panels.png'}")


@main.command("nightly")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--profile", default="profiles/slurm", show_default=True, help="Snakemake profile.")
@click.option("--publish", "publish_to", required=True, type=click.Path(file_okay=False), help="Product folder.")
@click.option("--keep", default=14, show_default=True, help="Dated products to keep (at least 1).")
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds before the run is stopped.")
@log_option
@command(append_log=True)
def nightly_command(config_path: str, profile: str, publish_to: str, keep: int, timeout: float) -> None:
    """Rerun the workflow, publish the cover to a dated folder, keep the newest; non-zero exit on failure."""
    from s2ecosg.nightly import run_nightly

    status = run_nightly(config_path, profile, publish_to, keep, timeout)
    if status:
        sys.exit(status)
