"""The quick-look PNG: a decimated copy of the majority cover with the ECOSG colours and legend."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from s2ecosg.cover.writers.table import ecosg_table
from s2ecosg.io import atomic_path
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import Block, LonLatGrid

QUICKLOOK_PIXELS = 1200  # longest side of the picture in cells


class QuickLook:
    """Keep every ``step``-th cell of each block; render the PNG when the cover is complete."""

    def __init__(
        self, stack: contextlib.ExitStack, basename: str, grid: LonLatGrid, provenance: dict[str, str]
    ) -> None:
        self.step = max(1, int(np.ceil(max(grid.rows, grid.cols) / QUICKLOOK_PIXELS)))
        self.grid, self.title = grid, f"{Path(basename).name}: ECOCLIMAP-SG majority cover"
        self.picture = np.zeros((int(np.ceil(grid.rows / self.step)), int(np.ceil(grid.cols / self.step))), np.uint8)
        self.temporary = stack.enter_context(atomic_path(f"{basename}.png"))

    def write(self, block: Block, values: dict[str, np.ndarray]) -> None:
        """Keep every ``step``-th cell of a block's covers."""
        row, column, _, _ = block
        first_row, first_column = (-row) % self.step, (-column) % self.step
        sample = values["cover"][first_row :: self.step, first_column :: self.step]
        top, left = (row + first_row) // self.step, (column + first_column) // self.step
        self.picture[top : top + sample.shape[0], left : left + sample.shape[1]] = sample

    def finish(self) -> None:
        """Render the PNG (to the temporary, renamed with the other files)."""
        import matplotlib  # 0.4 s: imported when a picture is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # 0.6 s to import: loaded where used
        from matplotlib.colors import ListedColormap  # 0.6 s to import: loaded where used

        table = ecosg_table()
        cmap = ListedColormap(["#ffffff"] + [row["colour"] for row in table])
        west, south, east, north = self.grid.bounds
        # Degrees of longitude are shorter than degrees of latitude by cos(latitude): show true shapes.
        aspect = 1 / max(np.cos(np.radians((north + south) / 2)), 0.1)
        height = min(12.0, max(3.0, 10.0 * aspect * (north - south) / max(east - west, 1e-9)))
        figure, axis = plt.subplots(figsize=(10, height + 1.5), constrained_layout=True)
        axis.imshow(
            self.picture,
            cmap=cmap,
            vmin=-0.5,
            vmax=N_COVERS + 0.5,
            interpolation="nearest",
            extent=(west, east, south, north),
            aspect=aspect,
        )
        axis.set_title(self.title)
        axis.set_xlabel("longitude (°E)")
        axis.set_ylabel("latitude (°N)")
        present = [int(value) for value in np.unique(self.picture) if value]
        handles = [plt.Rectangle((0, 0), 1, 1, color=table[value - 1]["colour"]) for value in present]
        figure.legend(
            handles,
            [f"{value} {table[value - 1]['name']}" for value in present],
            loc="outside lower center",
            ncol=4,
            fontsize=8,
        )
        figure.savefig(self.temporary, format="png", dpi=100)
        plt.close(figure)
