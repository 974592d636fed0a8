"""The results layout: every file a run writes, named in this one place for the rules, the commands and nightly.

A run writes under ``results/<run>/`` (logs under ``logs/<run>/``, Snakemake benchmarks under
``benchmarks/<run>/``), relative to the workflow's working directory. Per grid tile files lie in the stage's folder
(``stage/``, ``labels/``, ``shards/``, ``predict/``), named by the tile; each block job writes
``<stage>/blocks/<block>.json``, its manifest. Paths are strings so that the rules can put Snakemake wildcards in
them: ``RunLayout("ie").stage_manifest("{block}")`` is ``results/ie/stage/blocks/{block}.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TILE_FILES = {  # per stage: role → file name pattern of a tile in the stage's folder
    "scenes": {"list": "{tile}.json"},
    "stage": {"image": "{tile}.tif", "count": "{tile}.count.tif"},
    "labels": {"labels": "{tile}.tif"},
    "shards": {"header": "{tile}.json", "images": "{tile}.images.npy", "labels": "{tile}.labels.npy"},
    "predict": {
        "classes": "{tile}.tif",
        "confidence": "{tile}.conf.tif",
        "top2": "{tile}.top2.tif",
        "probabilities": "{tile}.probs.tif",
    },
    "baseline": {"classes": "{tile}.tif"},
}


# The last band of a stage count raster (``stage/{tile}.count.tif``): the day (since 1970-01-01) of the pixel's
# newest clear observation, 0 = none; the bands before it count the valid observations (one per season).
NEWEST_BAND = "newest_clear_day"


def tile_file(folder: str | Path, stage: str, role: str, tile: str) -> str:
    """The file of ``role`` (e.g. ``confidence``) of a tile in a stage's folder."""
    return str(Path(folder) / TILE_FILES[stage][role].format(tile=tile))


def folder_of_manifest(manifest: str | Path) -> str:
    """The stage folder of a block manifest ``<stage folder>/blocks/<block>.json``."""
    return str(Path(manifest).parent.parent)


@dataclass(frozen=True)
class RunLayout:
    """The files of run ``run`` under ``root`` (the workflow's working directory)."""

    run: str
    root: str = "."

    def results(self, *parts: str) -> str:
        """``results/<run>/<parts…>``."""
        return str(Path(self.root, "results", self.run, *parts))

    def log(self, *parts: str) -> str:
        """``logs/<run>/<parts…>`` (add the ``.log`` suffix in ``parts``)."""
        return str(Path(self.root, "logs", self.run, *parts))

    def benchmark(self, *parts: str) -> str:
        """``benchmarks/<run>/<parts…>``."""
        return str(Path(self.root, "benchmarks", self.run, *parts))

    def config(self, digest: str) -> str:
        """The validated whole config of the run with this run hash (written once, read by every command)."""
        return self.results("config", f"{digest}.json")

    def folder(self, stage: str) -> str:
        """The folder of a stage's per-tile files (``stage``, ``labels``, ``shards``, ``predict``, ``baseline``)."""
        return self.results(stage)

    def tile(self, stage: str, role: str, tile: str) -> str:
        """A tile's file of ``role`` in ``stage``."""
        return tile_file(self.folder(stage), stage, role, tile)

    def manifest(self, stage: str, block: str) -> str:
        """``<stage>/blocks/<block>.json``, a block job's manifest."""
        return self.results(stage, "blocks", f"{block}.json")

    @property
    def inventory(self) -> str:
        """The scenes and tiles found by the inventory."""
        return self.results("stage", "inventory.json")

    def scene_list(self, tile: str) -> str:
        """A tile's scene list (rewritten only when its scenes change)."""
        return tile_file(self.results("stage", "scenes"), "scenes", "list", tile)

    def shards(self, name: str) -> str:
        """``shards/index.json``, ``stats.json`` or ``split.geojson``."""
        return self.results("shards", name)

    def bundle(self, name: str = "") -> str:
        """The model bundle folder, or ``weights.pt`` / ``bundle.json`` in it."""
        return self.results("model", name) if name else self.results("model")

    @property
    def checkpoints(self) -> str:
        """Training checkpoints (``last.pt``, ``best.pt``, ``history.json``)."""
        return self.results("train", "checkpoints")

    @property
    def mosaic(self) -> str:
        """The VRT mosaic of the predicted tiles."""
        return self.results("predict", "mosaic.vrt")

    def cover(self, basename: str, suffix: str = "") -> str:
        """``cover/<basename><suffix>`` (``.dir``, ``.hdr``, ``.nc``, ``.nam``, ``.png``; no suffix: the base)."""
        return self.results("cover", f"{basename}{suffix}")

    def cover_file(self, name: str) -> str:
        """``cover/README.md`` or ``cover/validation.txt``."""
        return self.results("cover", name)

    @property
    def tree(self) -> str:
        """``tree/ECOCLIMAP-SG``: the ECOSG data tree with the run's cover (members: ``tree/ECOCLIMAP-SG_Mnn``)."""
        return self.results("tree", "ECOCLIMAP-SG")

    @property
    def cover_cache(self) -> str:
        """``cache/cover``: counts of each output block, reused by the next cover run (not a Snakemake output).

        Outside ``cover/``, which is what nightly runs publish.
        """
        return self.results("cache", "cover")

    def evaluate(self, name: str) -> str:
        """``evaluate/metrics.json``, ``metrics.md``, ``metrics.html``, ``panels.png``."""
        return self.results("evaluate", name)

    def baseline(self, name: str) -> str:
        """``baseline/model.txt`` or ``baseline/card.json``."""
        return self.results("baseline", name)
