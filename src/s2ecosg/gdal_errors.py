"""GDAL errors that rasterio does not raise: decode failures in GDAL's own worker threads.

GDAL decodes JPEG 2000 blocks (and some other formats) on a pool of its own threads. An error there (a truncated
or corrupt codestream: ``opj_get_decoded_tile() failed``) goes to GDAL's process-wide error handler, which prints
it on stderr, while the read itself returns zeros and succeeds: a broken band file would stage as "no data". So a
process-wide handler counts the failures; a read during which the count grew is read again on the calling thread
with GDAL's threads off, where rasterio raises GDAL's error, and the error becomes one line naming the file.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from s2ecosg.errors import InputError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
CE_WARNING, CE_FAILURE = 2, 3
GENERIC = ("Read failed. See previous exception for details.", "Read or write failed.")
HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)


class FailureCounter:
    """Failures GDAL reported to its process-wide handler (that is, outside rasterio's reach)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = ""
        self.lock = threading.Lock()
        self.handler: Any = None

    def record(self, error_class: int, number: int, message: bytes | None) -> None:
        """GDAL's callback: count failures, log warnings (called on GDAL's threads)."""
        text = (message or b"").decode(errors="replace").strip()
        if error_class >= CE_FAILURE:
            with self.lock:
                self.count += 1
                self.last = text
            LOG.debug("GDAL error %d in a GDAL thread: %s", number, text)
        elif error_class == CE_WARNING:
            LOG.warning("GDAL: %s", text)


COUNTER = FailureCounter()
INSTALL_LOCK = threading.Lock()


def gdal_library() -> ctypes.CDLL | None:
    """The GDAL library rasterio runs on (the one bundled in its wheel, else the system's), or None."""
    import rasterio  # 0.2 s to import: loaded where used

    folder = os.path.dirname(rasterio.__file__)
    found = sorted(glob.glob(os.path.join(folder, os.pardir, "rasterio.libs", "libgdal*")))
    try:
        import rasterio._base  # noqa: F401  (loads GDAL into the process)

        return ctypes.CDLL(found[0] if found else "libgdal.so")
    except OSError:
        return None


def watch_failures() -> None:
    """Install the counting handler as GDAL's process-wide error handler (once per process)."""
    with INSTALL_LOCK:
        if COUNTER.handler is not None:
            return
        library = gdal_library()
        COUNTER.handler = HANDLER_TYPE(COUNTER.record)  # kept referenced: GDAL calls it for the process's life
        if library is None:
            LOG.warning("GDAL library not found: decode errors in GDAL's threads cannot be detected")
            return
        library.CPLSetErrorHandler.restype = ctypes.c_void_p
        library.CPLSetErrorHandler.argtypes = [HANDLER_TYPE]
        library.CPLSetErrorHandler(COUNTER.handler)


def failures() -> int:
    """Failures counted so far in this process."""
    return COUNTER.count


def gdal_message(error: BaseException) -> str:
    """The most specific message in a rasterio error's chain, in one line, without ``<file>, band N:`` in front."""
    messages: list[str] = []
    current: BaseException | None = error
    while current is not None and len(messages) < 10:
        messages.append(str(current).strip())
        current = current.__cause__ or current.__context__
    specific = [text for text in messages if text and text not in GENERIC] or [type(error).__name__]
    text = specific[0].splitlines()[0]
    located = re.match(r"^.*?, band \d+: ", text)
    return text[located.end() :] if located else text


def checked_read(read: Callable[[], T], reread: Callable[[], T], path: str, what: str) -> T:
    """Run ``read``; a GDAL error during it becomes an :class:`InputError` naming ``path`` and ``what``.

    Args:
        read: The read (e.g. ``lambda: dataset.read(1, window=window)``).
        reread: The same read on a freshly opened dataset (the first one may cache the blocks that failed).
        path: The file read.
        what: What was read, e.g. ``band 3``.
    """
    import rasterio  # 0.2 s to import: loaded where used
    from rasterio.errors import RasterioError  # 0.2 s to import: loaded where used

    watch_failures()
    before = failures()
    try:
        result = read()
    except RasterioError as error:
        raise InputError(path, f"{what}: cannot read ({gdal_message(error)}; truncated or corrupt file?)") from None
    if failures() == before:
        return result
    # A failure in one of GDAL's threads, maybe of another file read at the same time: read again, here, alone.
    try:
        with rasterio.Env(GDAL_NUM_THREADS=1):
            return reread()
    except RasterioError as error:
        raise InputError(path, f"{what}: cannot decode ({gdal_message(error)}; truncated or corrupt file?)") from None
