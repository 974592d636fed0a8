"""GDAL in threads: each thread holds one GDAL environment for its whole life, and the process sets GDAL up once.

rasterio starts a GDAL environment around every call made in a thread that holds none: it pushes an error handler,
resets PROJ's search path (which makes every thread's PROJ context reopen its database at its next use), and in
the main thread sets and then clears process-wide config options that other threads are reading (GDAL hands out
pointers into that list). The first starts in a process also register the drivers under a lock that locks
nothing (a new ``threading.Lock()`` per call), and concurrent first opens race in GDAL's one-time driver set-up
(helgrind: unsynchronised writes to libgdal's BSS under ``GDALDriver::Open`` from two stage threads). A stage job
is exactly that: its threads open band files at once, thousands of times, while the main thread writes tiles.

So here: :func:`gdal_ready` sets GDAL up once, in the thread that starts the work (the main thread, before any
worker exists): it registers the drivers, opens one small dataset of each driver the stages use, and enters one
environment that stays for the thread's life. :func:`gdal_threads` is a thread pool whose threads each enter their
own environment when they start and keep it; every dataset is opened, read and closed by the thread that uses it
(nothing GDAL is handed between threads). Decoding runs on our threads only: GDAL's own decoder threads are off
(``GDAL_NUM_THREADS=1`` in every held environment), and so is OpenJPEG's: given one thread, GDAL asks OpenJPEG
for a pool of one worker per opened file, which then decodes while our thread waits (measured: the calling thread
held 3 % of the decode's CPU, and a job started a native thread per band file); ``OPJ_NUM_THREADS=0`` in the
process environment, set before any worker exists, makes OpenJPEG decode inline. So a decode error is raised in
the thread that asked for it, and nothing in GDAL or OpenJPEG calls back into Python from a thread Python does not
know.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# GDAL settings of every thread that reads scene files. VSI_CACHE buffers each open file, so the JPEG 2000
# decoder's many small reads of a codestream (tens of thousands per band) do not each become a system call, which
# costs most on a parallel file system; EMPTY_DIR stops GDAL listing an archive folder of thousands of files for
# sidecar files at every open. A user's own value (in the environment) wins for these two.
READ_SETTINGS = {"VSI_CACHE": "TRUE", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
# Settings no user value overrides: our threads decode, one file each; GDAL's own decoder threads stay off (an
# error there goes to a process-wide handler while the read returns zeros and succeeds: a broken file would
# stage as "no data"). Compression threads of the GeoTIFF writer are asked for by the writer (NUM_THREADS).
THREAD_SETTINGS = {"GDAL_NUM_THREADS": "1"}
# OpenJPEG reads this from the process environment (getenv) when a file is opened; with it set GDAL leaves
# OpenJPEG's thread count alone, and 0 means no worker: the decode runs in the thread that reads.
OPENJPEG_SETTINGS = {"OPJ_NUM_THREADS": "0"}

HELD = threading.local()  # the environment a thread entered (kept referenced for the thread's life)
READY = threading.Lock()
STARTED: list[bool] = []


def hold_environment(settings: dict[str, str]) -> None:
    """Enter a rasterio environment in this thread for the rest of its life (once per thread)."""
    if getattr(HELD, "environment", None) is not None:
        return

    import rasterio  # 0.2 s to import: loaded where used

    options = {name: os.environ.get(name, value) for name, value in READ_SETTINGS.items()} | settings
    environment = rasterio.Env(**options)
    environment.__enter__()  # never left: the thread keeps it until it ends
    HELD.environment = environment


def gdal_ready() -> None:
    """Set GDAL up in this process, once, from the calling thread, and give that thread its environment.

    Call it in the thread that starts the work before any worker thread exists (:func:`gdal_threads` does);
    :func:`s2ecosg.io.open_raster` and :func:`s2ecosg.io.write_raster` call it too (at once after the first time).
    """
    if STARTED and getattr(HELD, "environment", None) is not None:
        return
    with READY:
        hold_environment(THREAD_SETTINGS)
        if STARTED:
            return
        # rasterio wraps its in-memory datasets in warnings.catch_warnings(), which is not thread-safe: its
        # "no geotransform" warning, meant to be silenced, then leaks from another thread into the log.
        from rasterio.errors import NotGeoreferencedWarning

        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        os.environ.update(OPENJPEG_SETTINGS)  # before any worker thread exists: setenv races with getenv
        warm_up_drivers()
        STARTED.append(True)


def warm_up_drivers() -> None:
    """Use each driver the stages read and write once (GeoTIFF, JPEG 2000, in-memory, the warper with PROJ)."""
    import numpy as np
    from affine import Affine
    from rasterio.io import MemoryFile
    from rasterio.warp import Resampling, reproject

    pixels = np.ones((1, 8, 8), dtype=np.uint16)
    transform = Affine(10, 0, 300000, 0, -10, 5900000)
    profile = {"count": 1, "width": 8, "height": 8, "dtype": "uint16", "crs": "EPSG:32633", "transform": transform}
    for driver in ("GTiff", "JP2OpenJPEG"):
        with MemoryFile() as memory:
            with memory.open(driver=driver, **profile) as dataset:
                dataset.write(pixels)
            with memory.open() as dataset:
                dataset.read(1)
    target = np.zeros((8, 8), dtype=np.float32)
    reproject(
        pixels[0],
        target,
        src_transform=transform,
        src_crs="EPSG:32633",
        dst_crs="EPSG:3035",
        dst_transform=Affine(10, 0, 4500000, 0, -10, 3300000),
        resampling=Resampling.nearest,
    )


def enter_thread() -> None:
    """A pool thread's start: its own environment, held for its life (:func:`gdal_threads`)."""
    hold_environment(THREAD_SETTINGS)


@contextlib.contextmanager
def gdal_threads(threads: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``threads`` threads, each holding its own GDAL environment; GDAL set up first in this thread."""
    gdal_ready()
    with ThreadPoolExecutor(max_workers=max(1, threads), initializer=enter_thread) as pool:
        yield pool


def held_options() -> dict[str, Any]:
    """The GDAL options of this thread's held environment (empty if it holds none): for tests and logs."""
    environment = getattr(HELD, "environment", None)
    return dict(environment.options) if environment is not None else {}
