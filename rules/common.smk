# Shared wiring: validated config, the run's files (s2ecosg.layout), what each rule depends on, tile lists.
import functools
import hashlib
import json
import os

from s2ecosg.config import CLIMATES
from s2ecosg.config_files import check_input_paths, config_hash, load_config, write_run_config
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.layout import RunLayout
from s2ecosg.memory import cover_need, predict_need, profile_megabytes, stage_need
from s2ecosg.stage.inventory import inventory_tiles
from s2ecosg.stage.scenes import archive_fingerprint
from s2ecosg.stage.sources import source_of
from s2ecosg.surfex import direct_base, is_direct
from s2ecosg.train.launch import launch_prefix

CONFIG_SOURCE = " + ".join(map(str, workflow.overwrite_configfiles or workflow.configfiles or ["config"]))
try:
    CONFIG = load_config(config, CONFIG_SOURCE)
    check_input_paths(CONFIG, CONFIG_SOURCE)  # a moved input stops a rerun too, not only a new run
except InputError as error:
    raise SystemExit(f"error: {error}")

RUN = CONFIG.run.name
LAYOUT = RunLayout(RUN)
# The run hash names the validated whole config, one file that every command of the run reads; bundle.json and the
# cover's README, netCDF and .hdr record the same hash. Rules hand its path to their command as a resource
# (run_config): params are a rerun trigger and this path changes with any key, while a rule's outputs depend on a
# few sections only, which its params name (depends_on).
RUN_HASH = config_hash(CONFIG)
RUN_CONFIG = LAYOUT.config(RUN_HASH)
write_run_config(CONFIG, RUN_CONFIG)
PREDICT_ONLY = CONFIG.model.bundle is not None
BASELINE = CONFIG.evaluate.baseline and not PREDICT_ONLY  # the baseline trains on the shards
BUNDLE = CONFIG.model.bundle if PREDICT_ONLY else LAYOUT.bundle()
COVER = LAYOUT.cover(CONFIG.cover.basename)


wildcard_constraints:
    tile=r"E-?\d+N-?\d+",
    block=r"E-?\d+N-?\d+",


def digest(content):
    """Short hash of JSON-serialisable content."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def depends_on(*names):
    """Params value: a digest of the config sections a rule's outputs depend on.

    Every command reads the whole config (--config); this value only decides when Snakemake reruns a rule: a
    change in these sections does, a change elsewhere does not.
    """
    dumped = CONFIG.model_dump(mode="json")
    return digest({name: dumped[name] for name in names})


def stage_depends_on():
    """Params value: the imagery keys a stage job depends on (adding a path pattern restages nothing: each tile's
    scene list, an input of the job, names its files)."""
    imagery = CONFIG.model_dump(mode="json")["imagery"]
    keys = ("source", "stac", "aoi", "cloud_mask", "scl_invalid", "seasons", "bands")
    return digest({key: imagery[key] for key in keys})


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
    return [LAYOUT.scene_list(tile) for tile in block_tiles(wildcards.block)]


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
    return [LAYOUT.manifest("stage", block) for block in [wildcards.block, *others]]


def block_runtime(base, per_tile):
    """Resources function: minutes for a block job, ``base`` + ``per_tile`` × its tiles with imagery."""
    return lambda wildcards: base + per_tile * len(block_tiles(wildcards.block))


def manifests(stage):
    """Input function: the block manifests of ``stage`` (stage, labels, shards, predict), one per block."""
    return lambda wildcards: [LAYOUT.manifest(stage, block) for block in blocks()]


def tile_block_manifest(stage):
    """Input function: the manifest of the block holding ``wildcards.tile`` in ``stage`` (stage, labels, predict)."""
    return lambda wildcards: LAYOUT.manifest(stage, GRID.block_of(wildcards.tile, BLOCK_TILES))


def watched_imagery():
    """Imagery files the source watches (a rerun sees new scenes as new inputs); none for a remote catalogue."""
    try:
        return source_of(CONFIG.imagery).watched_files(CONFIG.imagery)
    except InputError as error:
        raise SystemExit(f"error: {error}")


IMAGERY = watched_imagery()
# Sizes and modification times of every imagery file: a replaced file reruns the inventory (a params change).
IMAGERY_FINGERPRINT = archive_fingerprint(IMAGERY)


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
    return [f"{base}.dir", f"{base}.hdr"] if is_direct(path) else [path]


def tile_files(stage, role):
    """Input function: the file of ``role`` of every tile with imagery in ``stage`` (e.g. the scene lists)."""
    if stage == "scenes":
        return lambda wildcards: [LAYOUT.scene_list(tile) for tile in tiles()]
    return lambda wildcards: [LAYOUT.tile(stage, role, tile) for tile in tiles()]


def repeated(option, name):
    """Params function: ``option path`` for every file of input ``name`` (a repeatable command-line option)."""
    return lambda wildcards, input: " ".join(f"{option} {path}" for path in input[name])


def final_outputs(wildcards):
    """What `snakemake` builds by default: cover file, mosaic and (with labels) the evaluation."""
    outputs = [f"{COVER}.dir", LAYOUT.mosaic]
    if CONFIG.cover.tree:
        outputs.append(tree_cover(0, "dir"))
    if CONFIG.labels.path:
        outputs.append(LAYOUT.evaluate("metrics.json"))
    return outputs


def tree_cover(member, suffix):
    """COVER/ecosg_final_map.<suffix> in the ECOSG tree of the run (member 0) or of ensemble member ``member``."""
    tree = LAYOUT.tree if member == 0 else f"{LAYOUT.tree}_M{member:02d}"
    return f"{tree}/COVER/ecosg_final_map.{suffix}"


def memory_mb(need):
    """Resource function: ``mem_mb`` of a block job, the memory its command estimates for its block (s2ecosg.memory)."""
    return lambda wildcards: profile_megabytes(need(CONFIG, len(tiles_by_block(tuple(tiles()))[wildcards.block])))


def cover_memory_mb(wildcards, threads):
    """Resource function: ``mem_mb`` of the cover, the memory its command estimates for ``threads`` workers."""
    return profile_megabytes(cover_need(CONFIG, threads))
