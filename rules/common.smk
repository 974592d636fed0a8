# Shared wiring: validated config, paths, settings passed to commands, tile lists from the inventory.
import functools
import json
import os
import shlex

from s2ecosg.config import CLIMATES, load_config
from s2ecosg.config_files import check_input_paths
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.launch import launch_prefix
from s2ecosg.inventory import inventory_tiles
from s2ecosg.scenes import archive_fingerprint, expand_patterns
from s2ecosg.surfex import direct_base

CONFIG_SOURCE = " + ".join(map(str, workflow.overwrite_configfiles or workflow.configfiles or ["config"]))
try:
    CONFIG = load_config(config, CONFIG_SOURCE)
    check_input_paths(CONFIG, CONFIG_SOURCE)  # a moved input stops a rerun too, not only a new run
except InputError as error:
    raise SystemExit(f"error: {error}")

RUN = CONFIG.run.name
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
BENCHMARKS = f"benchmarks/{RUN}"
PREDICT_ONLY = CONFIG.model.bundle is not None
BASELINE = CONFIG.evaluate.baseline and not PREDICT_ONLY  # the baseline trains on the shards
BUNDLE = CONFIG.model.bundle if PREDICT_ONLY else f"{RESULTS}/model"
COVER = f"{RESULTS}/cover/{CONFIG.cover.basename}"


wildcard_constraints:
    tile=r"E-?\d+N-?\d+",
    block=r"E-?\d+N-?\d+",


def settings(*names):
    """Config sections as one shell-quoted JSON argument (a change re-runs exactly the rules using it)."""
    dumped = CONFIG.model_dump(mode="json")
    return shlex.quote(json.dumps({name: dumped[name] for name in names}, sort_keys=True))


def stage_settings():
    """Only the imagery keys a stage job uses, so that adding a path pattern does not restage every tile."""
    imagery = CONFIG.model_dump(mode="json")["imagery"]
    keys = ("source", "stac", "aoi", "cloud_mask", "scl_invalid", "seasons")
    used = {key: imagery[key] for key in keys} | {"paths": ["(listed in the tile's scene list)"]}
    return shlex.quote(json.dumps({"imagery": used}, sort_keys=True))


def tiles(wildcards=None):
    """Grid tiles that have imagery (known once the inventory checkpoint has run)."""
    return inventory_tiles(checkpoints.inventory.get().output.inventory)


GRID = TargetGrid(CONFIG.grid.crs, CONFIG.grid.resolution, CONFIG.grid.tile_size)
BLOCK_TILES = CONFIG.grid.block_tiles


def blocks(wildcards=None):
    """Job blocks that hold at least one tile with imagery (named like their lower-left tile)."""
    return sorted(tiles_by_block(tuple(tiles())))


def block_tiles(block):
    """The tiles of a block that have imagery."""
    return tiles_by_block(tuple(tiles())).get(block, [])


@functools.lru_cache(maxsize=4)
def tiles_by_block(names):
    """Tiles grouped by their job block, once per inventory (input functions ask per job)."""
    grouped = {}
    for tile in names:
        grouped.setdefault(GRID.block_of(tile, BLOCK_TILES), []).append(tile)
    return grouped


def block_tile_lists(wildcards):
    """Input function: the scene lists of a block's tiles (each rewritten only when its scenes change)."""
    checkpoints.inventory.get()
    return [f"{RESULTS}/stage/scenes/{tile}.json" for tile in block_tiles(wildcards.block)]


def predict_stage_manifests(wildcards):
    """Input function: the block's stage manifest, then those of the blocks holding its tiles' neighbours."""
    present = set(tiles())
    around = {
        GRID.block_of(neighbour, BLOCK_TILES)
        for tile in block_tiles(wildcards.block)
        for neighbour in GRID.neighbours(tile)
        if neighbour in present
    }
    others = sorted(around - {wildcards.block})
    return [f"{RESULTS}/stage/blocks/{block}.json" for block in [wildcards.block, *others]]


def block_runtime(base, per_tile):
    """Resources function: minutes for a block job, ``base`` + ``per_tile`` × its tiles with imagery."""
    return lambda wildcards: base + per_tile * len(block_tiles(wildcards.block))


def per_block(pattern):
    """Input function: ``pattern`` expanded over the blocks."""
    return lambda wildcards: expand(pattern, block=blocks())


def tile_block_manifest(stage):
    """Input function: the manifest of the block holding ``wildcards.tile`` in ``stage`` (stage, labels, predict)."""
    return lambda wildcards: f"{RESULTS}/{stage}/blocks/{GRID.block_of(wildcards.tile, BLOCK_TILES)}.json"


def glob_imagery(patterns):
    """Imagery files of the config's glob patterns (a rerun sees new scenes as new inputs)."""
    if CONFIG.imagery.source != "local":
        return []
    try:
        return expand_patterns(patterns)
    except InputError as error:
        raise SystemExit(f"error: {error}")


IMAGERY = glob_imagery(CONFIG.imagery.paths)
# Sizes and modification times of every imagery file: a replaced file reruns the inventory (a params change).
IMAGERY_FINGERPRINT = archive_fingerprint(IMAGERY)


def input_folder(name):
    """Params function: the folder of input ``name`` (its first file when it is a list)."""

    def folder(wildcards, input):
        value = input[name]
        return os.path.dirname(value if isinstance(value, str) else value[0])

    return folder


def block_stage_folder(name):
    """Params function: the stage folder of a block manifest output ``name`` (``<stage>/blocks/<block>.json``)."""
    return lambda wildcards, output: os.path.dirname(os.path.dirname(output[name]))


def output_folder(name):
    """Params function: the folder of output ``name``."""
    return lambda wildcards, output: os.path.dirname(output[name])


def train_launcher(wildcards, resources):
    """Params function: the launcher prefix of the train command for the job's GPUs and nodes."""
    try:
        return launch_prefix(CONFIG.train.backend, resources.gpu, resources.nodes, CONFIG.train.processes)
    except ValueError as error:
        raise SystemExit(f"error: train: {error}")


def ecosg_reference_files():
    """The ECOSG file(s) of evaluate.ecosg (both halves of a DIRECT pair, or one raster) and its table."""
    table = [CONFIG.evaluate.ecosg_table] if CONFIG.evaluate.ecosg_table else []
    return direct_or_raster(CONFIG.evaluate.ecosg) + table


def cover_fill_files():
    """The ECOSG fill file(s) of cover.fill: both halves of a DIRECT pair, or one raster."""
    return direct_or_raster(CONFIG.cover.fill)


def direct_or_raster(path):
    """Both halves of a DIRECT pair named by base name, .dir or .hdr; else the raster itself; [] for None."""
    if not path:
        return []
    base = direct_base(path)
    return [f"{base}.dir", f"{base}.hdr"] if os.path.exists(f"{base}.hdr") else [path]


def per_tile(pattern):
    """Input function: ``pattern`` expanded over the tiles."""
    return lambda wildcards: expand(pattern, tile=tiles())


def joined_tiles(wildcards):
    """Tiles as a comma-separated list (for --tiles)."""
    return ",".join(tiles())


def final_outputs(wildcards):
    """What `snakemake` builds by default: cover file, mosaic and (with labels) the evaluation."""
    outputs = [f"{COVER}.dir", f"{RESULTS}/predict/mosaic.vrt"]
    if CONFIG.labels.path:
        outputs.append(f"{RESULTS}/evaluate/metrics.json")
    return outputs
