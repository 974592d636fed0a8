"""Config files: YAML read with file and line in errors, layered as ``--configfile a b``, and the paths they name.

:func:`check_input_paths` runs when the workflow is parsed: a moved or deleted input stops a rerun of an existing run
(Snakemake would otherwise find every output present and report nothing to do).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from s2ecosg.config import Config
from s2ecosg.errors import InputError
from s2ecosg.io import write_json
from s2ecosg.legend import legend_path, load_legend
from s2ecosg.surfex import is_direct


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One YAML config file as a dict; a syntax error names the file and the line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read config ({getattr(error, 'strerror', None) or error})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InputError(path, f"{where}not valid YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:
        raise InputError(path, f"not valid YAML ({error})") from None
    except ValueError as error:  # a date YAML accepts but the calendar does not, e.g. 2015-02-30
        raise InputError(path, f"not a valid date ({error})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(path, "a config must be a mapping of sections (run:, imagery:, ...)")
    return raw


def layered(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base`` as Snakemake layers ``--configfile`` files: mappings merge key by key."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            layered(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def read_config_file(*paths: str | Path) -> Config:
    """Read YAML config files, each layered over the ones before (as ``snakemake --configfile a b``), and validate."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw = layered(raw, read_yaml(path))
    return load_config(raw, str(paths[-1]) if len(paths) == 1 else " + ".join(map(str, paths)))


def validate_sections(raw: dict[str, Any], source: str = "--settings") -> Config:
    """Validate the sections present in ``raw`` one by one (others default), without cross-section checks.

    Used by commands, which receive only the sections their rule needs.
    """
    unknown = sorted(set(raw) - set(Config.model_fields))
    if unknown:
        raise InputError(source, f"{unknown[0]}: unknown key")
    values = {}
    for name, field in Config.model_fields.items():
        section_model: Any = field.default_factory  # each section field defaults to its model class
        try:
            # Absent sections keep their defaults unvalidated: the rule did not pass them, the command does not use them.
            values[name] = section_model.model_validate(raw[name]) if name in raw else section_model.model_construct()
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join([name, *(str(part) for part in first["loc"])])
            raise InputError(source, f"{key}: {first['msg'].removeprefix('Value error, ')}") from None
    return Config.model_construct(**values)


def check_input_paths(config: Config, source: str) -> None:
    """Refuse a config whose input files or folders do not exist, naming the key and the path.

    The workflow calls this at parse time, so a path that moved stops a rerun of an existing run too (Snakemake
    would otherwise find every output present and report nothing to do).
    """
    files = {
        "labels.path": config.labels.path,
        "model.weights": config.model.weights,
        "cover.sea_mask": config.cover.sea_mask,
        "evaluate.points": config.evaluate.points,
        "evaluate.ecosg_table": config.evaluate.ecosg_table,
        "labels.legend": None if legend_path(config.labels.legend).is_file() else config.labels.legend,
    }
    for key, path in files.items():
        if path is not None and not Path(path).exists():
            raise InputError(source, f"{key}: {path}: no such file or folder")
    for key, path in {"cover.fill": config.cover.fill, "evaluate.ecosg": config.evaluate.ecosg}.items():
        if path is not None and not Path(path).is_file() and not is_direct(path):
            raise InputError(source, f"{key}: {path}: neither a raster file nor a DIRECT pair <base>.dir + <base>.hdr")
    tree = config.cover.ecosg_tree
    if tree is not None and not Path(tree).is_dir():
        raise InputError(source, f"cover.ecosg_tree: {tree}: no such folder")
    if tree is not None and config.cover.tree == "patch" and not is_direct(Path(tree) / "COVER" / "ecosg_final_map"):
        raise InputError(source, f"cover.ecosg_tree: {tree}: no COVER/ecosg_final_map.dir + .hdr to patch")
    if config.labels.path is not None:
        load_legend(config.labels.legend)  # a legend CSV with a bad header or row stops here, naming its line
    bundle = config.model.bundle
    if bundle is not None:
        missing = [name for name in ("bundle.json", "weights.pt") if not (Path(bundle) / name).is_file()]
        if missing:
            raise InputError(source, f"model.bundle: {bundle}: not a model bundle (no {' or '.join(missing)})")


def load_config(raw: dict[str, Any], source: str = "config.yaml") -> Config:
    """Validate a config dict; raise :class:`InputError` with one line per the first problem found."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        raise InputError(source, f"{key}: {message}") from None


def config_hash(config: Config) -> str:
    """Short, stable hash of the validated config, recorded in outputs for provenance."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """JSON schema of ``config.yaml`` for editors and ``snakemake.utils.validate``."""
    return Config.model_json_schema()


def write_run_config(config: Config, path: str | Path) -> None:
    """Write the validated whole config where every command of the run reads it (once: the name is its hash)."""
    if not Path(path).exists():
        write_json(path, config.model_dump(mode="json"))
