"""The CF-1.8 netCDF of the cover: majority cover, 33 fractions, shares, confidence, entropy and origin per cell.

The file is laid out and initialised by xarray (dimensions, coordinates, CF attributes, the uint8 packing with
``scale_factor`` and ``_FillValue``, chunking and compression; the variables are lazy dask arrays, so nothing is
written), as users read it with ``xarray.open_dataset``; the blocks are then written into it in place with
netCDF4, one at a time, so memory does not grow with the grid, and each chunk once, so the bytes are reproducible.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from s2ecosg.arrays import Integers
from s2ecosg.cover.writers.table import FRACTION_SCALE, MISSING_SHARE, ecosg_table
from s2ecosg.errors import InputError
from s2ecosg.io import atomic_path
from s2ecosg.legend import N_COVERS
from s2ecosg.lonlat import Block, LonLatGrid

CHUNK_CELLS = 256  # file chunks of 256 × 256 cells (one cover class per chunk of fractions), as the blocks
PACKED = {
    "dtype": "u1",
    "_FillValue": MISSING_SHARE,
    "scale_factor": FRACTION_SCALE,
    "add_offset": 0.0,
}  # 0..1, 255 missing


def layout(grid: LonLatGrid, provenance: dict[str, str]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The empty dataset (lazy zeros: nothing is computed) and the encoding of each variable."""
    import xarray  # 0.6 s to import: loaded where used

    meanings = " ".join(row["name"].replace(" ", "_") for row in ecosg_table())
    variables = data_variables(grid, meanings)
    attributes = {"Conventions": "CF-1.8", "title": "ECOCLIMAP-SG covers from Sentinel-2 (s2ecosg)", **provenance}
    dataset = xarray.Dataset(variables, coords=coordinates(grid, meanings), attrs=attributes)
    compressed: dict[str, Any] = {"zlib": True, "complevel": 4}
    chunks = (min(CHUNK_CELLS, grid.rows), min(CHUNK_CELLS, grid.cols))
    encoding = {name: compressed | {"chunksizes": (1,) * (dataset[name].ndim - 2) + chunks} for name in variables}
    for name in (
        "fraction",
        "majority_share",
        "model_confidence",
        "cover_entropy",
        "fraction_spread",
        "predicted_share",
    ):
        encoding[name] |= PACKED
    encoding["clear_observations"] |= {"dtype": "u1", "_FillValue": 255}
    encoding["newest_observation"] |= {"dtype": "u2", "_FillValue": 0}  # CF time, 0 = no dated observation
    encoding["cover"] |= {"dtype": "u1", "_FillValue": 0}
    encoding["source"] |= {"dtype": "u1", "_FillValue": None}
    return dataset, encoding


def data_variables(grid: LonLatGrid, meanings: str) -> dict[str, tuple[Any, ...]]:
    """The per-cell variables as lazy zeros (never computed: the layout only)."""
    import dask.array  # 1.1 s to import: loaded where used

    def empty(dims: tuple[str, ...], dtype: str, attrs: dict[str, Any]) -> tuple[Any, ...]:
        shape = tuple({"lat": grid.rows, "lon": grid.cols, "cover_class": N_COVERS}[dim] for dim in dims)
        # One dask chunk (never computed): a graph of the file's own chunks would take seconds per country to build.
        return dims, dask.array.zeros(shape, dtype=dtype, chunks=-1), attrs

    flags = {"flag_values": np.arange(1, N_COVERS + 1, dtype="u1"), "flag_meanings": meanings}
    origins = {"flag_values": np.arange(4, dtype="u1"), "flag_meanings": "none prediction ecosg_fill sea_mask"}
    return {
        "cover": empty(("lat", "lon"), "u1", {"long_name": "majority ECOCLIMAP-SG cover"} | flags),
        "fraction": empty(("cover_class", "lat", "lon"), "f4", share("fraction of the cell's pixels in each cover")),
        "majority_share": empty(("lat", "lon"), "f4", share("fraction of the cell's pixels in the majority cover")),
        "model_confidence": empty(("lat", "lon"), "f4", share("mean maximum softmax probability of the cell's pixels")),
        "cover_entropy": empty(("lat", "lon"), "f4", share("Shannon entropy of the cell's cover fractions / ln 33")),
        "fraction_spread": empty(
            ("cover_class", "lat", "lon"), "f4", share("standard deviation of each fraction over the ensemble members")
        ),
        "source": empty(("lat", "lon"), "u1", {"long_name": "origin of the cell's cover"} | origins),
        "clear_observations": empty(
            ("lat", "lon"),
            "u1",
            {"units": "1", "long_name": "mean number of clear observations of the cell's predicted pixels"},
        ),
        "newest_observation": empty(
            ("lat", "lon"),
            "u2",
            {
                "long_name": "date of the newest clear observation of the cell's predicted pixels",
                "standard_name": "time",
            },
        ),
        "predicted_share": empty(("lat", "lon"), "f4", share("share of the cell's area covered by predicted pixels")),
    }


def share(long_name: str) -> dict[str, str]:
    """Attributes of a 0..1 variable."""
    return {"units": "1", "long_name": long_name}


def coordinates(grid: LonLatGrid, meanings: str) -> dict[str, tuple[Any, ...]]:
    """Cell centre latitudes (north first) and longitudes, and the cover numbers."""
    latitudes = grid.north - (np.arange(grid.rows) + 0.5) * grid.step
    longitudes = grid.west + (np.arange(grid.cols) + 0.5) * grid.step
    return {
        "lat": (
            "lat",
            latitudes,
            {"standard_name": "latitude", "units": "degrees_north", "long_name": "cell centre latitude"},
        ),
        "lon": (
            "lon",
            longitudes,
            {"standard_name": "longitude", "units": "degrees_east", "long_name": "cell centre longitude"},
        ),
        "cover_class": (
            "cover_class",
            np.arange(1, N_COVERS + 1, dtype="u1"),
            {"long_name": "ECOCLIMAP-SG cover number", "flag_meanings": meanings},
        ),
    }


def write_layout(dataset: Any, encoding: dict[str, dict[str, Any]], path: Any) -> None:
    """Create the file with xarray's encoding of ``dataset``, coordinates written, data variables not.

    The lazy data variables are only registered with xarray's writer, which is never run: each chunk is then
    written once, by the block that covers it, so HDF5 never frees and reuses space and the file's bytes depend only
    on its values. The store is closed here (``to_netcdf(compute=False)`` would keep it open until exit).
    """
    from xarray.backends import NetCDF4DataStore  # 0.6 s to import: loaded where used

    store = NetCDF4DataStore.open(path, mode="w", format="NETCDF4")
    try:
        dataset.dump_to_store(store, encoding=encoding)
    finally:
        store.close()


class NetcdfWriter:
    """The cover's netCDF, laid out by xarray, filled block by block."""

    def __init__(
        self, stack: contextlib.ExitStack, basename: str, grid: LonLatGrid, provenance: dict[str, str]
    ) -> None:
        import netCDF4  # 0.2 s to import: loaded where used

        self.path = f"{basename}.nc"
        temporary = stack.enter_context(atomic_path(self.path))
        dataset, encoding = layout(grid, provenance)
        try:
            write_layout(dataset, encoding, temporary)
            self.dataset = netCDF4.Dataset(temporary, "a")
        except RuntimeError as error:  # the netCDF library's way of saying the disk is full
            raise InputError(self.path, f"cannot write ({error})") from None
        stack.callback(self.close)
        # CF time (xarray reads it as dates): set here, as xarray's writer takes these two for its own encoding.
        self.dataset["newest_observation"].setncatts({"units": "days since 1970-01-01", "calendar": "standard"})
        # Blocks are written once, in order: a small chunk cache per variable keeps memory flat as the grid grows.
        for variable in self.dataset.variables.values():
            if variable.chunking() != "contiguous":
                variable.set_var_chunk_cache(size=4 * 2**20, nelems=521, preemption=1.0)
            if "scale_factor" in variable.ncattrs():
                variable.set_auto_maskandscale(False)  # the shares come as their codes (table.share_codes)

    def write(self, block: Block, values: dict[str, Integers]) -> None:
        """Store a block: ``cover``, ``source``, ``fraction`` (33, rows, cols) and the shares, all uint8 codes."""
        row, column, rows, columns = block
        window = (slice(row, row + rows), slice(column, column + columns))
        try:
            for name, array in values.items():
                target = self.dataset[name]
                target[(slice(None), *window) if array.ndim == 3 else window] = array
        except RuntimeError as error:  # the netCDF library's way of saying the disk is full
            raise InputError(self.path, f"cannot write ({error})") from None

    def finish(self) -> None:
        """Flush the data (the file is closed and renamed with the stack)."""
        try:
            self.dataset.sync()
        except RuntimeError as error:  # the netCDF library's way of saying the disk is full
            raise InputError(self.path, f"cannot write ({error})") from None

    def close(self) -> None:
        """Close the file (what HDF5 still holds is written now: a full disk shows here too)."""
        try:
            self.dataset.close()
        except RuntimeError as error:
            raise InputError(self.path, f"cannot write ({error})") from None
