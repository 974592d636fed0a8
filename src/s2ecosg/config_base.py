"""What every config section shares: unknown keys are errors; the names of registries checked in one place."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

CLIMATES = ("latitude", "temperate", "boreal", "mediterranean")
# The imagery sources ``imagery.source`` may name; each is implemented in :data:`s2ecosg.stage.sources.SOURCES`
# (a house test keeps the two equal): the config is read without importing the stage.
SOURCE_NAMES = ("local", "stac")


def known(value: str, registry: Any, what: str) -> str:
    """``value`` if it names an entry of ``registry`` (a source, an encoder), else one line listing the known ones."""
    if value not in registry:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(registry)}")
    return value


class Section(BaseModel):
    """Common settings: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)  # .inf, .nan refused
