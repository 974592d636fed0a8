"""Logging set-up shared by every command: file + stderr, uncaught exceptions logged."""

from __future__ import annotations

import faulthandler
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import FrameType, TracebackType

from s2ecosg.errors import InputError
from s2ecosg.ranks import world_from_environment

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_GRACE = 10.0  # seconds a SIGTERM'd command has to exit before it ends itself (a busy writer thread)


def is_main_process() -> bool:
    """Return True on rank 0 (or without a distributed launcher): only it writes logs."""
    return world_from_environment()[0] == 0


def setup_logging(log_path: str | Path | None, level: int = logging.INFO, append: bool = False) -> None:
    """Send log records to ``log_path`` (if given; appended to with ``append``) and to stderr.

    Uncaught exceptions go to the log with their traceback as well, so a SLURM job that dies
    leaves the reason in its rule log and not only in the scheduler's output file.

    Args:
        log_path: Log file; its folder is created. ``None`` logs to stderr only.
        level: Logging level of the root logger.
        append: Keep what the log file holds (a history, e.g. the nightly's) instead of starting it anew.
    """
    rank, _, size = world_from_environment()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None and rank == 0:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a" if append else "w"))
    elif rank > 0:
        level = max(level, logging.WARNING)  # other ranks only say what goes wrong, on stderr
    form = FORMAT.replace("%(levelname)s", f"%(levelname)s [rank {rank}/{size}]") if size > 1 else FORMAT
    logging.basicConfig(level=level, format=form, handlers=handlers, force=True)
    last = handlers[-1]  # the log file where there is one
    report_native_crashes(last.stream if isinstance(last, logging.StreamHandler) else sys.stderr)
    logging.captureWarnings(True)
    # rasterio logs every GDAL error it raises at INFO; the command's own one-line error says what went wrong.
    for name in ("rasterio._err", "rasterio._env"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def log_uncaught(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
        logging.getLogger("s2ecosg").error("uncaught exception", exc_info=(kind, value, trace))

    sys.excepthook = log_uncaught


def report_native_crashes(stream: object) -> None:
    """On SIGSEGV, SIGBUS, SIGABRT, SIGFPE or SIGILL, write the Python stack of every thread to ``stream``.

    ``stream`` is the rule's log file (else stderr): a job that dies in native code (GDAL, PROJ, torch) leaves
    where each thread was, and Snakemake, which prints the log of a failed job, shows it beside the signal.
    """
    try:
        faulthandler.enable(file=stream, all_threads=True)  # type: ignore[arg-type]
    except (AttributeError, ValueError, io.UnsupportedOperation):  # a stream without a file descriptor (a test's)
        faulthandler.enable(file=sys.__stderr__ or sys.stderr, all_threads=True)


# A test hook: a command named in this variable crashes natively (SIGSEGV) right after it has set up its log,
# with a second thread waiting in :func:`companion_of_crash`, so that a test can find both stacks in the log.
CRASH_HOOK = "S2ECOSG_CRASH_FOR_TEST"


def crash_if_asked(command: str) -> None:
    """Dereference a null pointer when :data:`CRASH_HOOK` names ``command`` (tests only)."""
    if os.environ.get(CRASH_HOOK) != command:
        return
    import ctypes

    started, never = threading.Event(), threading.Event()
    threading.Thread(target=companion_of_crash, args=(started, never), name="crash-companion", daemon=True).start()
    started.wait()
    logging.getLogger("s2ecosg").warning("%s=%s: crashing on purpose", CRASH_HOOK, command)
    ctypes.string_at(0)


def companion_of_crash(started: threading.Event, never: threading.Event) -> None:
    """A thread that waits while the main thread crashes (its frame must appear in the crash's stacks)."""
    started.set()
    never.wait()


def log_file() -> str | None:
    """The file the root logger writes to, if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def save_traceback(error: BaseException) -> str:
    """Write ``error``'s traceback to the log file only (not stderr), else to a new file; return where it went."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            if handler.stream is None:  # a delayed handler that has not opened its file yet
                continue
            handler.acquire()
            try:
                handler.stream.write(text)
                handler.flush()
            finally:
                handler.release()
            return handler.baseFilename
    descriptor, path = tempfile.mkstemp(prefix="s2ecosg-", suffix=".traceback.txt")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path


def exit_on_sigterm() -> None:
    """Turn SIGTERM (SLURM's time limit or preemption, ``scancel``) into an exit that runs every ``finally``.

    Python's default for SIGTERM ends the process at once, leaving temporary files behind; as an exception the
    atomic writes (:func:`s2ecosg.io.atomic_path`) remove their temporaries on the way out.
    """

    def stop(number: int, frame: FrameType | None) -> None:
        logging.getLogger("s2ecosg").error(
            "error: stopped by signal %d (SIGTERM); nothing half-written is kept", number
        )
        written = sys.modules.get("s2ecosg.io")
        for temporary in list(written.TEMPORARIES if written else ()):
            # A writer thread's too: the main thread does not wait for it. A folder: a tree being assembled.
            shutil.rmtree(temporary, ignore_errors=True) if temporary.is_dir() else temporary.unlink(missing_ok=True)
        # The exit below runs every ``finally`` of the main thread; a worker thread still busy (a tile write) would
        # hold the interpreter at exit, so the process ends by itself after a grace period.
        deadline = threading.Timer(EXIT_GRACE, os._exit, args=(128 + number,))
        deadline.daemon = True
        deadline.start()
        raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, stop)


def one_line(error: Exception) -> str:
    """The message of a failed command: ``<file or key>: <problem>``, or the error and where its traceback is."""
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    first = (str(error).strip().splitlines() or [""])[0]
    return f"unexpected {type(error).__name__}: {first} (traceback in {save_traceback(error)})"
