"""The config sections of the products: the cover (and its tree), the evaluation and the nightly's gate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from s2ecosg.config_base import CLIMATES, Section
from s2ecosg.values import degrees


class CoverConfig(Section):
    """ECOSG cover file settings."""

    basename: str = Field("S2ECOSG", max_length=24, pattern=r"^[A-Za-z0-9_.-]+$", description="Cover base name.")
    resolution_deg: float | str = Field("1/1800", description="Output cell size in degrees (number or 'a/b').")
    fill: str | None = Field(
        None, description="Original ECOSG cover (DIRECT base name or GeoTIFF) for cells without data."
    )
    sea_mask: str | None = Field(None, description="Land-sea mask: raster (sea where = sea_value) or sea polygons.")
    sea_value: float = Field(1, description="Value of sea pixels in a raster sea_mask.")
    climate: str = Field(
        "latitude", description="latitude (bands below), temperate, boreal, mediterranean, or a zone raster path."
    )
    boreal_latitude: float = Field(60.0, ge=0, le=90, description="|latitude| from which pixels use boreal covers.")
    mediterranean_latitude: float = Field(
        42.0, ge=0, le=90, description="|latitude| up to which pixels use Mediterranean covers."
    )
    max_empty_fraction: float = Field(
        0.0, ge=0, le=1, description="Largest share of HARMONIE domain cells left without a cover; above it, fail."
    )
    fractions: Literal["hard", "soft"] = Field("hard", description="Count most likely classes, or sum probabilities.")
    members: int = Field(0, ge=0, le=99, description="Ensemble members <basename>_Mnn drawn from the probabilities.")
    member_length_m: float = Field(
        500.0, ge=0, le=1e7, description="Members' correlation length (m); 0 = independent, else ≥ the pixel size."
    )
    member_seed: int = Field(0, ge=0, description="Seed of the members' random fields (member n uses it and n).")
    min_clear_observations: int = Field(
        3,
        ge=1,
        le=254,
        description="Clear observations a cell should rest on: the README and the nightly count cells below it.",
    )
    tree: Literal["domain", "patch"] | None = Field(
        None,
        description="Also write an ECOSG data tree (tree/ECOCLIMAP-SG): the cover as COVER/ecosg_final_map (domain) "
        "or the service's map patched with the predictions (patch); null: none.",
    )
    ecosg_tree: str | None = Field(
        None, description="The service's ECOCLIMAP-SG folder: its other entries are linked into the tree."
    )

    @model_validator(mode="after")
    def member_names_fit(self) -> CoverConfig:
        """SURFEX reads base names of at most 24 characters: <basename>_Mnn must fit."""
        if self.members and len(self.basename) + 4 > 24:
            raise ValueError(
                f"cover.basename {self.basename!r} is too long for members: {self.basename}_M01 has "
                f"{len(self.basename) + 4} characters, SURFEX reads at most 24"
            )
        return self

    @model_validator(mode="after")
    def tree_has_its_source(self) -> CoverConfig:
        """A tree links the service's ECOSG tree, and a patch needs the service's own cover map in it."""
        if self.tree is not None and self.ecosg_tree is None:
            raise ValueError(f"cover.tree {self.tree} needs cover.ecosg_tree (the service's ECOCLIMAP-SG folder)")
        return self

    @field_validator("climate")
    @classmethod
    def known_climate(cls, value: str) -> str:
        """A variant keyword or an existing zone raster."""
        if value not in CLIMATES and not Path(value).is_file():
            raise ValueError(f"{value!r} is neither one of {', '.join(CLIMATES)} nor an existing zone raster")
        return value

    @field_validator("resolution_deg")
    @classmethod
    def positive_degrees(cls, value: float | str) -> float | str:
        """A positive cell size of at most 1°."""
        try:
            size = degrees(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{value!r} is not a number of degrees such as 0.0025 or '1/1800'") from None
        if not 0 < size <= 1:
            raise ValueError(f"resolution_deg {value!r} must be positive and at most 1 degree")
        return value


class EvaluateConfig(Section):
    """Evaluation references."""

    reference: Literal["labels"] = Field("labels", description="Reference to compare with: the run's labels.")
    ecosg: str | None = Field(
        None, description="Original ECOSG cover (DIRECT base name or GeoTIFF) scored side by side at CLC L1/L2."
    )
    points: str | None = Field(
        None,
        description="Point samples (LUCAS-style): CSV with lon, lat and a code column, or a vector file of points.",
    )
    points_field: str = Field("code", description="Column of the point samples holding the legend's class codes.")
    baseline: bool = Field(False, description="Also train and score a per-pixel LightGBM baseline on the same split.")
    baseline_pixels: int = Field(200000, ge=100, le=5_000_000, description="Training pixels drawn for the baseline.")
    baseline_rounds: int = Field(100, ge=1, le=10000, description="Boosting rounds of the baseline.")
    baseline_threads: int = Field(2, ge=1, le=256, description="LightGBM threads.")
    ecosg_table: str | None = Field(
        None, description="ECOSG cover → CLC L1/L2 table (CSV: cover, clc_l1, clc_l2); null: the shipped one."
    )


class NightlyConfig(Section):
    """The nightly's publish gate (``s2ecosg nightly``, ``s2ecosg changes``).

    A change counts when the new cover leads the old one among the cell's pixels by ``change_margin``: one 10 m
    pixel is 1/23 (0.043) of a 1/1800° cell at 50° N and 1/37 at 30°, so 0.1 asks for two to four pixels more than
    the old cover has; near-ties and the float noise of a rerun move one or two (they are counted as uncertain).
    """

    change_margin: float = Field(
        0.1, ge=0, le=1, description="Least lead of the new cover over the old one in a cell (share of its pixels)."
    )
    change_confidence: float = Field(
        0.0, ge=0, le=1, description="Least mean model confidence of a changed cell (0: not asked for)."
    )
    max_change_percent: float = Field(
        5.0, ge=0, le=100, description="Confident change (% of land cells) above which a product is held for review."
    )
    max_thin_percent: float = Field(
        50.0,
        ge=0,
        le=100,
        description="Share (%) of land cells on fewer than cover.min_clear_observations above which it is held.",
    )
