"""Writers of the cover outputs, fed block by block: DIRECT pair, CF netCDF, quick-look PNG, README, namelist."""

from __future__ import annotations

import contextlib
import csv
from importlib import resources

import numpy as np

from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import Block, LonLatGrid

FRACTION_SCALE = 1 / 250  # fractions and shares stored as uint8 × 1/250 (255 = missing)
QUICKLOOK_PIXELS = 1200


def ecosg_table() -> list[dict[str, str]]:
    """The 33 ECOSG covers: number, name, SURFEX tile, colour (``data/ecosg_covers.csv``)."""
    with (resources.files("s2ecosg") / "data" / "ecosg_covers.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class DirectWriter:
    """Write ``<base>.dir`` band of rows by band of rows (blocks arrive row-major); ``close`` writes the header.

    Only one band of block rows is held in memory (rows × cols bytes), and the file is written sequentially,
    north row first, so memory does not grow with the grid.
    """

    def __init__(self, stack: contextlib.ExitStack, basename: str, grid: LonLatGrid, comment: str) -> None:
        from s2ecosg.io import atomic_path
        from s2ecosg.surfex import check_basename

        check_basename(basename)
        self.grid, self.comment = grid, comment
        self.binary = stack.enter_context(atomic_path(f"{basename}.dir"))
        self.header = stack.enter_context(atomic_path(f"{basename}.hdr"))
        self.handle = stack.enter_context(self.binary.open("wb"))
        self.band: np.ndarray | None = None
        self.next_row = 0

    def write(self, block: Block, cover: np.ndarray) -> None:
        """Store a block of covers (row 0 = north); a completed band of rows goes to the file."""
        row, column, rows, columns = block
        if row != self.next_row:
            raise ValueError(f"blocks must arrive row-major: expected row {self.next_row}, got {row}")
        if self.band is None:
            self.band = np.zeros((rows, self.grid.cols), dtype=np.uint8)
        self.band[:, column : column + columns] = cover
        if column + columns == self.grid.cols:
            self.handle.write(np.ascontiguousarray(self.band).tobytes())
            self.band, self.next_row = None, row + rows

    def close(self) -> None:
        """Check every row was written, then write the header (the renames happen when the stack closes)."""
        from s2ecosg.surfex import header_text

        if self.next_row != self.grid.rows:
            raise ValueError(f"only {self.next_row} of {self.grid.rows} rows were written")
        self.handle.flush()
        self.header.write_text(header_text(self.comment, self.grid.bounds, (self.grid.rows, self.grid.cols)))


class NetcdfWriter:
    """CF-1.8 netCDF4 with majority cover, 33 fractions, confidences and the fill source, per cell."""

    def __init__(self, stack: contextlib.ExitStack, path: str, grid: LonLatGrid, provenance: dict[str, str]) -> None:
        import netCDF4

        from s2ecosg.io import atomic_path

        temporary = stack.enter_context(atomic_path(path))
        self.path = path
        self.dataset = netCDF4.Dataset(temporary, "w", format="NETCDF4")
        stack.callback(self.dataset.close)
        self.define(grid, provenance)

    def define(self, grid: LonLatGrid, provenance: dict[str, str]) -> None:
        """Dimensions, coordinates, variables and attributes."""
        data = self.dataset
        meanings = self.define_coordinates(grid)
        chunks = (min(256, grid.rows), min(256, grid.cols))
        cover = data.createVariable(
            "cover", "u1", ("lat", "lon"), zlib=True, complevel=4, chunksizes=chunks, fill_value=0
        )
        cover.setncatts(
            {
                "long_name": "majority ECOCLIMAP-SG cover",
                "flag_values": np.arange(1, N_COVERS + 1, dtype="u1"),
                "flag_meanings": meanings,
            }
        )
        self.packed(
            "fraction", ("cover_class", "lat", "lon"), (1, *chunks), "fraction of the cell's pixels in each cover"
        )
        self.packed("majority_share", ("lat", "lon"), chunks, "fraction of the cell's pixels in the majority cover")
        self.packed("model_confidence", ("lat", "lon"), chunks, "mean maximum softmax probability of the cell's pixels")
        source = data.createVariable("source", "u1", ("lat", "lon"), zlib=True, complevel=4, chunksizes=chunks)
        source.setncatts(
            {
                "long_name": "origin of the cell's cover",
                "flag_values": np.arange(4, dtype="u1"),
                "flag_meanings": "none prediction ecosg_fill sea_mask",
            }
        )
        data.setncatts(
            {"Conventions": "CF-1.8", "title": "ECOCLIMAP-SG covers from Sentinel-2 (s2ecosg)", **provenance}
        )
        # Blocks are written once, in order: a small chunk cache per variable keeps memory flat as the grid grows.
        for variable in data.variables.values():
            if variable.chunking() != "contiguous":
                variable.set_var_chunk_cache(size=4 * 2**20, nelems=521, preemption=1.0)

    def define_coordinates(self, grid: LonLatGrid) -> str:
        """Dimensions and the lat, lon and cover_class coordinates; returns the covers' flag meanings."""
        data = self.dataset
        data.createDimension("lat", grid.rows)
        data.createDimension("lon", grid.cols)
        data.createDimension("cover_class", N_COVERS)
        lat = data.createVariable("lat", "f8", ("lat",))
        lat.setncatts({"standard_name": "latitude", "units": "degrees_north", "long_name": "cell centre latitude"})
        lat[:] = grid.north - (np.arange(grid.rows) + 0.5) * grid.step
        lon = data.createVariable("lon", "f8", ("lon",))
        lon.setncatts({"standard_name": "longitude", "units": "degrees_east", "long_name": "cell centre longitude"})
        lon[:] = grid.west + (np.arange(grid.cols) + 0.5) * grid.step
        classes = data.createVariable("cover_class", "u1", ("cover_class",))
        classes[:] = np.arange(1, N_COVERS + 1)
        meanings = " ".join(row["name"].replace(" ", "_") for row in ecosg_table())
        classes.setncatts({"long_name": "ECOCLIMAP-SG cover number", "flag_meanings": meanings})
        return meanings

    def packed(self, name: str, dimensions: tuple[str, ...], chunks: tuple[int, ...], long_name: str) -> None:
        """A 0..1 variable packed as uint8 with scale 1/250 and fill value 255."""
        variable = self.dataset.createVariable(
            name, "u1", dimensions, zlib=True, complevel=4, chunksizes=chunks, fill_value=255
        )
        variable.setncatts({"long_name": long_name, "units": "1", "scale_factor": FRACTION_SCALE, "add_offset": 0.0})

    def write(self, block: Block, values: dict[str, np.ndarray]) -> None:
        """Store a block: ``cover``, ``source`` (uint8), ``fraction`` (33, rows, cols), shares (NaN = missing)."""
        from s2ecosg.errors import InputError

        row, column, rows, columns = block
        window = (slice(row, row + rows), slice(column, column + columns))
        try:
            for name, array in values.items():
                target = self.dataset[name]
                if array.dtype.kind == "f":  # NaN = missing: masked, so netCDF stores the fill value
                    array = np.ma.array(np.nan_to_num(array), mask=np.isnan(array))
                target[(slice(None), *window) if name == "fraction" else window] = array
        except RuntimeError as error:  # the netCDF library's way of saying the disk is full
            raise InputError(self.path, f"cannot write ({error})") from None


class QuickLook:
    """A decimated copy of the majority cover, rendered as a PNG with the ECOSG colours and legend."""

    def __init__(self, grid: LonLatGrid) -> None:
        self.step = max(1, int(np.ceil(max(grid.rows, grid.cols) / QUICKLOOK_PIXELS)))
        self.grid = grid
        self.picture = np.zeros((int(np.ceil(grid.rows / self.step)), int(np.ceil(grid.cols / self.step))), np.uint8)

    def write(self, block: Block, cover: np.ndarray) -> None:
        """Keep every ``step``-th cell of a block."""
        row, column, _, _ = block
        first_row, first_column = (-row) % self.step, (-column) % self.step
        sample = cover[first_row :: self.step, first_column :: self.step]
        top, left = (row + first_row) // self.step, (column + first_column) // self.step
        self.picture[top : top + sample.shape[0], left : left + sample.shape[1]] = sample

    def save(self, path: str, title: str) -> None:
        """Render the PNG (atomically)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap

        from s2ecosg.io import atomic_path

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
        axis.set_title(title)
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
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        plt.close(figure)


def readme_text(
    basename: str, grid: LonLatGrid, provenance: dict[str, str], namelist: str, counts: dict[str, int]
) -> str:
    """The cover folder's README: what each file is, how to use it, provenance and fill statistics."""
    west, south, east, north = grid.bounds
    lines = [
        f"# ECOCLIMAP-SG cover file {basename}",
        "",
        f"- `{basename}.dir` + `{basename}.hdr`: SURFEX DIRECT, uint8, nodata 0, covers 1..33, row 1 = north;",
        f"  {grid.rows} rows × {grid.cols} columns of {grid.step:.10g}°, edges W {west:.6f} S {south:.6f} E {east:.6f} N {north:.6f}.",
        f"- `{basename}.nc`: CF-1.8 netCDF with majority cover, 33 fractions, majority share, model confidence, source.",
        f"- `{basename}.nam`: PGD namelist lines; `{basename}.png`: quick-look.",
        "",
        "Use: link the `.dir` and `.hdr` into the PGD working directory and add to the PGD namelist:",
        "",
        "```fortran",
        namelist.rstrip(),
        "```",
        "",
        "## Cells by origin",
        "",
    ]
    lines += [f"- {name}: {count}" for name, count in counts.items()]
    lines += ["", "## Provenance", ""] + [f"- {key}: {value}" for key, value in provenance.items()]
    return "\n".join(lines) + "\n"
