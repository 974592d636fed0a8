"""Imagery sources: where the inventory finds scenes and where a stage job gets their files.

``imagery.source`` names one of :data:`SOURCES`. A source answers three questions: which files the workflow must
watch (a replaced file reruns the inventory), which scenes and tiles there are (nothing is downloaded), and where a
scene's band files are on this machine once a stage job needs them. A new source (an object store, another catalogue)
is one module with a class of this shape, listed in :data:`SOURCES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from s2ecosg.config import ImageryConfig
from s2ecosg.grid import TargetGrid
from s2ecosg.stage.inventory import Inventory, build_inventory, stac_inventory
from s2ecosg.stage.scenes import Scene, expand_patterns
from s2ecosg.stage.stac import localise as localise_assets

Area = tuple[float, float, float, float] | None


class ImagerySource(Protocol):
    """What the workflow asks of a source of Sentinel-2 scenes."""

    name: str

    def watched_files(self, imagery: ImageryConfig) -> list[Path]:
        """Files whose sizes and times the workflow fingerprints (none for a remote catalogue)."""

    def inventory(self, imagery: ImageryConfig, grid: TargetGrid, area: Area, area_name: str) -> Inventory:
        """The scenes (band files or URLs, footprint, date, offsets) and the grid tiles each touches."""

    def localise(self, scene: Scene, imagery: ImageryConfig) -> Scene:
        """The scene with every band (and mask) file on this machine, fetched when needed."""


class LocalArchive:
    """Files under ``imagery.paths`` (SAFE products, loose band files, GeoTIFF stacks)."""

    name = "local"

    def watched_files(self, imagery: ImageryConfig) -> list[Path]:
        """Every file of the glob patterns."""
        return expand_patterns(imagery.paths)

    def inventory(self, imagery: ImageryConfig, grid: TargetGrid, area: Area, area_name: str) -> Inventory:
        """Scenes grouped from the archive's files (:func:`~s2ecosg.stage.inventory.build_inventory`)."""
        return build_inventory(
            imagery.paths,
            imagery.bands,
            grid,
            stack_bands=imagery.stack_bands,
            dates=imagery.dates,
            aoi=area,
            max_cloud=imagery.max_cloud,
            area_name=area_name,
        )

    def localise(self, scene: Scene, imagery: ImageryConfig) -> Scene:
        """Local files are where they are."""
        return scene


class StacApi:
    """A STAC API (``imagery.stac``): searched by the inventory, assets downloaded by the stage jobs."""

    name = "stac"

    def watched_files(self, imagery: ImageryConfig) -> list[Path]:
        """Nothing local: new scenes appear through the inventory's search."""
        return []

    def inventory(self, imagery: ImageryConfig, grid: TargetGrid, area: Area, area_name: str) -> Inventory:
        """Scenes of the STAC search (:func:`~s2ecosg.stage.inventory.stac_inventory`)."""
        return stac_inventory(imagery, grid, area, area_name)

    def localise(self, scene: Scene, imagery: ImageryConfig) -> Scene:
        """Every http(s) asset replaced by its copy in ``imagery.stac.cache`` (downloaded when missing)."""
        return localise_assets(scene, imagery.stac_settings)


SOURCES: dict[str, ImagerySource] = {source.name: source for source in (LocalArchive(), StacApi())}


def source_of(imagery: ImageryConfig) -> ImagerySource:
    """The source ``imagery.source`` names (the config has checked the name)."""
    return SOURCES[imagery.source]
