"""The one configuration: pydantic models for every section of ``config.yaml``.

The Snakefile validates the user's config once with :func:`load_config`; a mistyped key or a bad
value stops the run with one line naming the key. ``s2ecosg config-schema`` exports the JSON schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, field_validator, model_validator

from s2ecosg.config_base import CLIMATES as CLIMATES  # noqa: F401  (re-exported: the rules read it here)
from s2ecosg.config_base import SOURCE_NAMES, Section, known
from s2ecosg.config_output import CoverConfig, EvaluateConfig, NightlyConfig
from s2ecosg.domain import resolve_domain
from s2ecosg.encoder_shapes import ENCODER_SHAPES
from s2ecosg.errors import InputError
from s2ecosg.values import LonLatBox, check_box, check_window, degrees

DEFAULT_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
ALL_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


class RunConfig(Section):
    """Run identity."""

    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$", description="Run name: results/{name}/, logs/{name}/.")


class DomainConfig(Section):
    """Area the cover file must cover: a HARMONIE domain (named or by its keys), a lon/lat box, or the imagery."""

    name: str | None = Field(
        None, description="Named HARMONIE domain (data/domains.csv) or the label of harmonie keys."
    )
    harmonie: dict[str, float] | None = Field(
        None, description="Custom domain keys: nlon, nlat, lonc, latc, lon0, lat0, gsize (m), ezone (default 11)."
    )
    bbox: LonLatBox | None = Field(None, description="[west, south, east, north] in degrees when there is no domain.")
    margin: int = Field(2, ge=0, le=1000, description="Model grid cells added on every side of the domain.")

    _box = field_validator("bbox")(classmethod(lambda cls, value: check_box(value)))

    @model_validator(mode="after")
    def known_domain(self) -> DomainConfig:
        """A name without keys must be a shipped domain; keys must be complete."""
        try:
            resolve_domain(self.name, self.harmonie)
        except InputError as error:
            raise ValueError(error.problem) from None
        return self


class GridConfig(Section):
    """The one target grid and its tiles."""

    crs: str = Field("EPSG:3035", description="Target CRS every raster is warped to once.")
    resolution: float = Field(10.0, gt=0, description="Pixel size of the target grid, in CRS units (m).")
    tile_size: float = Field(10000.0, gt=0, description="Grid tile edge in CRS units (m); a multiple of 1000.")
    block_tiles: int = Field(
        5, ge=1, le=20, description="Job blocks of block_tiles × block_tiles grid tiles (stage, labels, predict)."
    )

    @model_validator(mode="after")
    def tiles_fit(self) -> GridConfig:
        """Tiles hold whole pixels and are named in whole km."""
        if self.tile_size % 1000 or (self.tile_size / self.resolution) % 1:
            raise ValueError("tile_size must be a multiple of 1000 m and of the resolution")
        return self

    @field_validator("crs")
    @classmethod
    def projected_in_metres(cls, value: str) -> str:
        """A CRS PROJ knows, projected, in metres (tiles are named in km of it)."""
        from pyproj import CRS  # 0.1 s to import: loaded where used
        from pyproj.exceptions import CRSError  # 0.1 s to import: loaded where used

        try:
            crs = CRS.from_user_input(value)
        except CRSError:
            raise ValueError(f"{value!r} is not a CRS PROJ knows (e.g. EPSG:3035)") from None
        units = {axis.unit_name for axis in crs.axis_info}
        if not crs.is_projected or not units <= {"metre", "meter"}:
            raise ValueError(f"{value!r} is not a projected CRS in metres (tiles are named in km; e.g. EPSG:3035)")
        return value


class StacConfig(Section):
    """A STAC API to search (imagery.source: stac)."""

    url: str = Field(..., description="STAC API root, e.g. https://earth-search.aws.element84.com/v1.")
    provider: Literal["earth-search", "planetary-computer", "cdse"] = Field(
        "earth-search", description="Asset naming of the provider (data/stac_providers.csv)."
    )
    collection: str = Field("sentinel-2-l2a", description="Collection to search.")
    cache: str = Field("resources/stac", description="Folder the stage jobs download assets into.")
    retries: int = Field(4, ge=0, description="Retries of a failed request (HTTP 429/5xx, time-outs).")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry.")
    timeout: float = Field(30.0, gt=0, description="Seconds before a request times out.")
    max_items: int = Field(1000, ge=1, le=100000, description="Largest number of items a search returns.")


class ImageryConfig(Section):
    """Sentinel-2 scenes to stage."""

    source: str = Field("local", description="Where scenes come from: local (imagery.paths) or stac (imagery.stac).")
    stac: StacConfig | None = Field(None, description="STAC API settings (source: stac).")
    paths: list[str] = Field(default_factory=list, description="Glob patterns of GeoTIFF stacks or *_Bxx.jp2 files.")
    dates: tuple[dt.date, dt.date] | None = Field(None, description="Date window [start, end] (YYYY-MM-DD), inclusive.")
    seasons: list[tuple[dt.date, dt.date]] | None = Field(
        None, description="Composite windows [[start, end], ...] stacked as bands (B02_s1, ..., B02_s2, ...)."
    )
    max_cloud: float = Field(100.0, ge=0, le=100, description="Largest scene cloud cover (%) to use.")
    bands: list[str] = Field(default_factory=lambda: list(DEFAULT_BANDS), description="Bands, in model order.")
    stack_bands: list[str] | None = Field(None, description="Band names of stacks without band descriptions.")
    aoi: LonLatBox | None = Field(None, description="Area of interest [west, south, east, north] in degrees.")
    cloud_mask: Literal["auto", "scl", "s2cloudless", "none"] = Field(
        "auto", description="auto: SCL where the scene has one, else s2cloudless at 160 m (L1C), else none."
    )
    scl_invalid: list[int] = Field(
        default_factory=lambda: [0, 1, 3, 8, 9, 10],
        description="Sen2Cor SCL classes masked in L2A scenes (no data, defective, cloud shadow, clouds, cirrus).",
    )

    _box = field_validator("aoi")(classmethod(lambda cls, value: check_box(value)))
    _window = field_validator("dates")(classmethod(lambda cls, value: check_window(value)))

    _source = field_validator("source")(classmethod(lambda cls, value: known(value, SOURCE_NAMES, "source")))

    @field_validator("seasons")
    @classmethod
    def ordered_seasons(cls, value: list[tuple[dt.date, dt.date]] | None) -> list[tuple[dt.date, dt.date]] | None:
        """Every season starts before it ends."""
        for window in value or []:
            check_window(window)
        return value

    @model_validator(mode="after")
    def source_settings(self) -> ImageryConfig:
        """Local archives need paths; STAC needs its settings and an AOI."""
        if self.source == "local" and not self.paths:
            raise ValueError("imagery.paths is empty (or set imagery.source: stac)")
        if self.source == "stac" and (self.stac is None or self.aoi is None):
            raise ValueError("imagery.source stac needs imagery.stac (url, ...) and imagery.aoi")
        return self

    @property
    def stac_settings(self) -> StacConfig:
        """``imagery.stac`` of a STAC source (the validator has made sure it is there)."""
        if self.stac is None:
            raise InputError("imagery.stac", "imagery.source stac needs imagery.stac (url, ...)")
        return self.stac

    @field_validator("bands", "stack_bands")
    @classmethod
    def known_bands(cls, value: list[str] | None) -> list[str] | None:
        """Only Sentinel-2 band names."""
        unknown = sorted(set(value or []) - set(ALL_BANDS))
        if unknown:
            raise ValueError(f"unknown Sentinel-2 band(s) {unknown}; known: {ALL_BANDS}")
        return value


class LabelsConfig(Section):
    """Reference land-cover map and its legend."""

    path: str | None = Field(None, description="Reference map: categorical raster or vector file; null: none.")
    legend: str = Field("clc", description="Shipped legend name (clc, clc_grid_code, osm_landuse, ...) or CSV path.")
    field: str | None = Field(None, description="Attribute holding the class code, for vector files.")


class ShardsConfig(Section):
    """Training patches and the spatial-block split."""

    patch: int = Field(128, ge=16, description="Patch edge in pixels.")
    stride: int = Field(64, ge=1, description="Step between patches in pixels (< patch: overlapping).")
    val_fraction: float = Field(
        0.2, ge=0, lt=1, description="Chance that a split block is held out for validation (per block, seeded)."
    )
    block_size: float = Field(2560.0, gt=0, description="Edge of the spatial split blocks in CRS units (m).")
    min_labelled: float = Field(0.05, ge=0, le=1, description="Smallest labelled share of a kept patch.")
    seed: int = Field(0, description="Seed of the block split.")


class ModelConfig(Section):
    """Network architecture, encoder weights, or an existing bundle."""

    arch: Literal["unet"] = Field("unet", description="Segmentation architecture.")
    encoder: str = Field("resnet50", description="Encoder of the U-Net: resnet18, resnet34 or resnet50.")
    weights: str | None = Field(
        None,
        description="Pretrained weights, never downloaded: torchvision ImageNet ResNet state dict, BigEarthNet v2 "
        "ResNet checkpoint (.safetensors/.ckpt), or a bundle folder.",
    )
    bundle: str | None = Field(None, description="Existing model bundle folder: predict-only run, no training.")

    _encoder = field_validator("encoder")(classmethod(lambda cls, value: known(value, ENCODER_SHAPES, "encoder")))


class TrainConfig(Section):
    """Training loop settings."""

    backend: Literal["single", "ddp", "horovod"] = Field(
        "single", description="single process, or data-parallel over the job's GPUs: ddp (torchrun/srun) or horovod."
    )
    processes: int = Field(
        1, ge=1, le=64, description="Processes per node when the train job has no GPU (CPU DDP/Horovod)."
    )
    epochs: int = Field(30, ge=1, description="Passes over the training patches.")
    batch_size: int = Field(
        8, ge=1, le=1024, description="Patches per step and process (global batch = this × processes)."
    )
    lr: float = Field(
        1e-3, gt=0, description="AdamW learning rate of the decoder (and encoder once unfrozen × factor)."
    )
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    steps_per_epoch: int | None = Field(None, ge=1, description="Cap on steps per epoch (quick runs); null: all.")
    schedule: Literal["constant", "cosine"] = Field("cosine", description="Learning-rate schedule over epochs.")
    freeze_encoder_epochs: int = Field(0, ge=0, description="Epochs with the pretrained encoder frozen (Ulmas & Liiv).")
    encoder_lr_factor: float = Field(
        1.0, gt=0, le=1, description="Encoder learning rate / lr once unfrozen (0.1 with pretrained weights)."
    )
    loss: Literal["ce", "dice_ce"] = Field("ce", description="Cross-entropy, or cross-entropy + soft Dice.")
    class_weights: Literal["none", "inverse_sqrt"] = Field(
        "none", description="Cross-entropy class weights: none, or 1/sqrt(pixel share) for rare classes."
    )
    seed: int = Field(0, description="Seed of weights init, patch order and augmentation.")
    sampling: Literal["uniform", "balanced"] = Field(
        "uniform",
        description="uniform: every training patch once per epoch; balanced: as many patches drawn with replacement, "
        "weighted by the mean inverse frequency of their labelled classes (rare covers seen more often).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Autocast dtype on CUDA (auto: bf16); CPU always trains in fp32."
    )
    channels_last: bool = Field(True, description="NHWC memory layout on CUDA (faster convolutions).")
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes per training process.")
    prefetch: int = Field(4, ge=1, le=64, description="Batches each DataLoader worker prepares ahead.")
    checkpoint_minutes: float = Field(
        30.0, gt=0, description="Write train/checkpoints/last.pt at least this often (and after every epoch)."
    )


class PredictConfig(Section):
    """Sliding-window prediction settings."""

    window: int = Field(256, ge=16, le=2048, description="Sliding-window edge in pixels.")
    overlap: int = Field(64, ge=0, description="Overlap of neighbouring windows in pixels.")
    batch_size: int = Field(4, ge=1, le=1024, description="Windows per forward pass.")
    halo: int | None = Field(
        None, ge=0, description="Pixels read from neighbouring tiles around a tile; null: one window (seamless)."
    )
    top2: bool = Field(
        False, description="Also write predict/{tile}.top2.tif: quantised top-2 classes and probabilities."
    )
    probabilities: int = Field(0, ge=0, le=4, description="K: also write predict/{tile}.probs.tif, top-K classes.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    compile: bool = Field(
        False, description="torch.compile the network (a C++ compiler; minutes at start, pays off on large tiles)."
    )

    @model_validator(mode="after")
    def overlap_fits(self) -> PredictConfig:
        """Windows must advance."""
        if self.overlap >= self.window:
            raise ValueError("overlap must be smaller than window")
        return self


class Config(Section):
    """The whole ``config.yaml``."""

    run: RunConfig = Field(default_factory=RunConfig)
    domain: DomainConfig = Field(default_factory=DomainConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    imagery: ImageryConfig = Field(default_factory=ImageryConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    cover: CoverConfig = Field(default_factory=CoverConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    nightly: NightlyConfig = Field(default_factory=NightlyConfig)

    @model_validator(mode="after")
    def consistent(self) -> Config:
        """Cross-section rules."""
        if self.model.bundle is None and self.labels.path is None:
            raise ValueError("labels.path is needed to train; or set model.bundle for a predict-only run")
        if self.shards.stride > self.shards.patch:
            raise ValueError("shards.stride must not exceed shards.patch")
        if self.shards.patch > self.grid.tile_size / self.grid.resolution:
            raise ValueError("shards.patch must fit in a grid tile (grid.tile_size / grid.resolution pixels)")
        stride, encoder = ENCODER_SHAPES[self.model.encoder].stride, f"the output stride of {self.model.encoder}"
        if self.shards.patch % stride:
            raise ValueError(f"shards.patch {self.shards.patch} must be a multiple of {stride}, {encoder}")
        ranked = self.predict.top2 or self.predict.probabilities >= 2
        if (self.cover.members or self.cover.fractions == "soft") and not ranked:
            raise ValueError(
                "cover.members and cover.fractions: soft use the probabilities: set predict.top2 or predict.probabilities"
            )
        bounds_of(self)
        if self.predict.window % stride or self.predict.window < 2 * stride:
            raise ValueError(
                f"predict.window {self.predict.window} must be a multiple of {stride} ({encoder}), ≥ {2 * stride}"
            )
        return self


# A grid tile holds at most this many pixels along an edge: a stage job keeps a scene's parts of every tile of its
# block (bands × pixels² × 2 bytes each) and predict keeps each tile's outputs.
MAX_TILE_PIXELS = 4000
METRES_PER_DEGREE = 111320.0  # along a meridian, and along the equator


def bounds_of(config: Config) -> None:
    """Refuse values that pass each key's own range but size an array beyond what their meaning allows."""
    grid, cover, predict = config.grid, config.cover, config.predict
    pixels = grid.tile_size / grid.resolution
    if pixels > MAX_TILE_PIXELS:
        raise ValueError(
            f"grid.tile_size {grid.tile_size:g} m at grid.resolution {grid.resolution:g} m is {pixels:.0f} px a side; "
            f"at most {MAX_TILE_PIXELS} (every tile's arrays are held by its block job)"
        )
    if predict.halo is not None and predict.halo > pixels:
        raise ValueError(
            f"predict.halo {predict.halo} px exceeds a grid tile ({pixels:.0f} px): the halo is read from the "
            "neighbouring tiles only (it is in pixels, not metres)"
        )
    if 0 < cover.member_length_m < grid.resolution:
        raise ValueError(
            f"cover.member_length_m {cover.member_length_m:g} m is below the pixel size (grid.resolution "
            f"{grid.resolution:g} m): use 0 for independent pixels, or a length of at least one pixel"
        )
    smallest = grid.resolution / METRES_PER_DEGREE
    if degrees(cover.resolution_deg) < smallest:
        raise ValueError(
            f"cover.resolution_deg {cover.resolution_deg} is below one pixel of grid.resolution {grid.resolution:g} m "
            f"({smallest:.3g}°): a cell must hold pixels"
        )
