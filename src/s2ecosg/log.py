"""Logging set-up shared by every command: file + stderr, uncaught exceptions logged."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_main_process() -> bool:
    """Return True on rank 0 (or without a distributed launcher): only it writes logs."""
    from s2ecosg.launch import world_from_environment

    return world_from_environment()[0] == 0


def setup_logging(log_path: str | Path | None, level: int = logging.INFO) -> None:
    """Send log records to ``log_path`` (if given) and to stderr.

    Uncaught exceptions go to the log with their traceback as well, so a SLURM job that dies
    leaves the reason in its rule log and not only in the scheduler's output file.

    Args:
        log_path: Log file; its folder is created. ``None`` logs to stderr only.
        level: Logging level of the root logger.
    """
    from s2ecosg.launch import world_from_environment

    rank, _, size = world_from_environment()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None and rank == 0:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    elif rank > 0:
        level = max(level, logging.WARNING)  # other ranks only say what goes wrong, on stderr
    form = FORMAT.replace("%(levelname)s", f"%(levelname)s [rank {rank}/{size}]") if size > 1 else FORMAT
    logging.basicConfig(level=level, format=form, handlers=handlers, force=True)
    logging.captureWarnings(True)

    def log_uncaught(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
        logging.getLogger("s2ecosg").error("uncaught exception", exc_info=(kind, value, trace))

    sys.excepthook = log_uncaught
