"""GDAL's errors as one line naming the file: what rasterio raises, reduced to its most specific message.

Every read runs on the thread that opened the dataset, with GDAL's own decoder threads off
(:mod:`s2ecosg.gdal_env`), so a decode failure (a truncated or corrupt codestream: ``opj_get_decoded_tile()
failed``) is raised by rasterio in that thread; nothing here listens to GDAL's process-wide error handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from s2ecosg.errors import InputError

T = TypeVar("T")
GENERIC = ("Read failed. See previous exception for details.", "Read or write failed.")


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


def checked_read(read: Callable[[], T], path: str, what: str) -> T:
    """Run ``read``; a GDAL error during it becomes an :class:`InputError` naming ``path`` and ``what``.

    Args:
        read: The read (e.g. ``lambda: dataset.read(1, window=window)``), on the thread that opened the dataset.
        path: The file read.
        what: What was read, e.g. ``band 3``.
    """
    from rasterio.errors import RasterioError  # 0.2 s to import: loaded where used

    try:
        return read()
    except RasterioError as error:
        raise InputError(path, f"{what}: cannot decode ({gdal_message(error)}; truncated or corrupt file?)") from None
