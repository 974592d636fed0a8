"""The formats the cover is written in: a writer per format, fed every block of the output grid, row-major.

A writer is built with ``(stack, basename, grid, provenance)`` and answers :class:`CoverWriter`. It writes under
temporary names entered on ``stack`` (:func:`s2ecosg.io.atomic_path`), so nothing is renamed into place unless the
whole cover was written and passed its checks. A new format (a Cloud-Optimised GeoTIFF, say) is one module with
such a class, listed in :data:`WRITERS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from s2ecosg.arrays import Integers
from s2ecosg.cover.writers.direct import DirectWriter
from s2ecosg.cover.writers.netcdf import NetcdfWriter
from s2ecosg.cover.writers.quicklook import QuickLook
from s2ecosg.lonlat import Block, LonLatGrid


class CoverWriter(Protocol):
    """One format of the cover."""

    def write(self, block: Block, values: dict[str, Integers]) -> None:
        """Take one block's uint8 arrays: ``cover``, ``source`` and share codes (share × 250, 255 = missing).

        The codes (:func:`~s2ecosg.cover.writers.table.share_codes`) are ``fraction`` and, with ensemble members,
        ``fraction_spread`` (33, rows, cols), ``majority_share``, ``model_confidence`` and ``cover_entropy``.
        """

    def finish(self) -> None:
        """Complete the (still temporary) files once every block was written."""


WriterFactory = Callable[[contextlib.ExitStack, str, LonLatGrid, dict[str, str]], CoverWriter]
WRITERS: dict[str, WriterFactory] = {"direct": DirectWriter, "netcdf": NetcdfWriter, "png": QuickLook}
