"""The quick-look PNG: a decimated copy of the majority cover with the ECOSG colours and legend."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from s2ecosg.arrays import Integers
from s2ecosg.cover.writers.table import ecosg_table
from s2ecosg.io import atomic_path
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import Block, LonLatGrid

QUICKLOOK_PIXELS = 1200  # longest side of the picture in cells


PANELS = ("cover", "clear_observations", "newest_observation", "predicted_share")  # what the PNG shows


class QuickLook:
    """Keep every ``step``-th cell of each block; render the PNG when the cover is complete.

    Four panels: the majority cover with the ECOSG colours and legend, and its data score: the clear observations
    behind each cell, the date of the newest one, and the share of the cell that was predicted.
    """

    def __init__(
        self, stack: contextlib.ExitStack, basename: str, grid: LonLatGrid, provenance: dict[str, str]
    ) -> None:
        self.step = max(1, int(np.ceil(max(grid.rows, grid.cols) / QUICKLOOK_PIXELS)))
        self.grid, self.title = grid, f"{Path(basename).name}: ECOCLIMAP-SG majority cover"
        shape = (int(np.ceil(grid.rows / self.step)), int(np.ceil(grid.cols / self.step)))
        self.pictures = {
            name: np.zeros(shape, np.uint16 if name == "newest_observation" else np.uint8) for name in PANELS
        }
        self.temporary = stack.enter_context(atomic_path(f"{basename}.png"))

    @property
    def picture(self) -> np.ndarray:
        """The kept covers."""
        return self.pictures["cover"]

    def write(self, block: Block, values: dict[str, Integers]) -> None:
        """Keep every ``step``-th cell of a block's covers and data score."""
        row, column, _, _ = block
        first_row, first_column = (-row) % self.step, (-column) % self.step
        top, left = (row + first_row) // self.step, (column + first_column) // self.step
        for name, picture in self.pictures.items():
            if name in values:
                sample = values[name][first_row :: self.step, first_column :: self.step]
                picture[top : top + sample.shape[0], left : left + sample.shape[1]] = sample

    def finish(self) -> None:
        """Render the PNG (to the temporary, renamed with the other files)."""
        import matplotlib  # 0.4 s: imported when a picture is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used

        west, south, east, north = self.grid.bounds
        # Degrees of longitude are shorter than degrees of latitude by cos(latitude): show true shapes.
        aspect = 1 / max(np.cos(np.radians((north + south) / 2)), 0.1)
        height = min(9.0, max(3.0, 7.0 * aspect * (north - south) / max(east - west, 1e-9)))
        figure, axes = plt.subplots(2, 2, figsize=(14, 2 * height + 2.5), constrained_layout=True)
        frame = {"extent": (west, east, south, north), "aspect": aspect, "interpolation": "nearest"}
        self.cover_panel(figure, axes[0, 0], frame)
        self.score_panels(figure, axes, frame)
        for axis in axes.ravel():
            axis.set_xlabel("longitude (°E)")
            axis.set_ylabel("latitude (°N)")
        figure.savefig(self.temporary, format="png", dpi=90)
        plt.close(figure)

    def cover_panel(self, figure: Any, axis: Any, frame: dict[str, Any]) -> None:
        """The majority cover with the ECOSG colours and a legend of the covers present."""
        import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used
        from matplotlib.colors import ListedColormap  # 0.6 s to import: loaded where used

        table = ecosg_table()
        cmap = ListedColormap(["#ffffff"] + [row["colour"] for row in table])
        axis.imshow(self.picture, cmap=cmap, vmin=-0.5, vmax=N_COVERS + 0.5, **frame)
        axis.set_title(self.title)
        present = [int(value) for value in np.unique(self.picture) if value]
        handles = [plt.Rectangle((0, 0), 1, 1, color=table[value - 1]["colour"]) for value in present]
        names = [f"{value} {table[value - 1]['name']}" for value in present]
        figure.legend(handles, names, loc="outside lower center", ncol=4, fontsize=8)

    def score_panels(self, figure: Any, axes: Any, frame: dict[str, Any]) -> None:
        """Clear observations per cell, days before the newest observation date, predicted share."""
        observations = np.ma.masked_equal(self.pictures["clear_observations"], 255)
        days = np.ma.masked_equal(self.pictures["newest_observation"].astype(np.int64), 0)
        age = days.max() - days if days.count() else days
        share = np.ma.masked_equal(self.pictures["predicted_share"], 255).astype(np.float64) / 250
        panels = (
            (axes[0, 1], observations, "clear observations per cell (mean of its pixels)", "viridis"),
            (axes[1, 0], age, "days before the newest observation", "magma_r"),
            (axes[1, 1], share, "share of the cell predicted", "cividis"),
        )
        for axis, data, title, colours in panels:
            image = axis.imshow(data, cmap=colours, **frame)
            axis.set_title(title)
            figure.colorbar(image, ax=axis, shrink=0.8)
