"""Nightly entry point: rerun the workflow (only what changed is redone), publish the cover, keep the last N.

``s2ecosg nightly --config my.yaml --profile profiles/slurm --publish /data/physiography --keep 14``
1. takes a lock (one nightly run at a time), then runs ``snakemake --unlock`` so that a crashed or killed
   run's stale Snakemake lock cannot block tonight's run;
2. runs Snakemake with ``--forcerun inventory`` (new scenes in the archive or the STAC API are found; only
   the tiles whose scenes changed are restaged and re-predicted) and ``--rerun-incomplete``;
3. copies ``results/<run>/cover/`` into ``<publish>/<UTC time stamp>/``, points ``<publish>/latest`` at it
   and deletes all but the ``keep`` newest dated folders;
4. writes exactly one line ``s2ecosg-nightly OK|FAILED run=<name> ...`` per run to its log (appended, so the
   log is the history) for monitoring, and exits non-zero on failure: a config error, a failed workflow, the
   time limit (Snakemake and its jobs are stopped as a group) or a publish error (nothing half-copied stays).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from s2ecosg.config_files import check_input_paths, read_config_file
from s2ecosg.errors import InputError
from s2ecosg.layout import RunLayout
from s2ecosg.log import one_line
from s2ecosg.validate import validate_cover

LOG = logging.getLogger(__name__)
STAMP = re.compile(r"^\d{8}T\d{6}Z$")


def snakemake(arguments: list[str], timeout: float) -> int:
    """Run Snakemake (the one next to this Python, else the one on PATH); return its exit status.

    It runs in a process group of its own: at the time limit, or when this process is stopped, the whole group
    (Snakemake and every job it started) gets SIGTERM, then SIGKILL after :data:`GRACE` seconds.
    """
    executable = Path(sys.executable).with_name("snakemake")
    command = [str(executable) if executable.exists() else "snakemake", *arguments]
    LOG.info("running %s", " ".join(command))
    process = subprocess.Popen(command, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        LOG.error("snakemake did not finish within %.0f s: stopping it and its jobs", timeout)
        return 124
    finally:
        stop_group(process)


GRACE = 60.0  # seconds Snakemake gets after SIGTERM to stop its jobs and release its lock


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of a still running ``process``, SIGKILL after :data:`GRACE` seconds."""
    if process.poll() is not None:
        return
    for number, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def publish(cover: Path, folder: Path, keep: int, now: dt.datetime) -> Path:
    """Copy the cover folder to ``folder/<stamp>``, repoint ``latest``, keep the ``keep`` newest copies.

    Only the cover's own files are copied (no dot-files: temporaries of a killed job), the copy must pass the
    format check before it is renamed into place, and a failed copy leaves no ``.<stamp>.partial`` behind.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = folder / stamp
    partial = folder / f".{stamp}.partial"
    covers = sorted(path for path in cover.glob("*.dir") if not path.name.startswith("."))
    if not covers:
        raise InputError(cover, "no cover file (.dir) to publish")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(cover, partial, ignore=shutil.ignore_patterns(".*"))
        problems = [problem for path in covers for problem in validate_cover(partial / path.stem)]
        if problems:
            raise InputError(cover, f"the copy fails the format check: {problems[0]}")
        os.replace(partial, target)
    except shutil.Error as error:  # copytree gathers the files it could not copy (an OSError too: caught first)
        raise InputError(folder, f"cannot publish (copy failed: {str(error)[:300]})") from None
    except OSError as error:
        raise InputError(error.filename or folder, f"cannot publish ({error.strerror or error})") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    link = folder / ".latest.new"
    link.unlink(missing_ok=True)
    link.symlink_to(stamp)
    os.replace(link, folder / "latest")
    dated = sorted(path for path in folder.iterdir() if STAMP.match(path.name) and path.is_dir())
    for old in dated[:-keep]:
        shutil.rmtree(old)
        LOG.info("removed old product %s", old)
    return target


def run_nightly(config: str, profile: str, publish_to: str, keep: int, timeout: float) -> int:
    """One nightly run; returns the exit status (0 = published). Every exit path logs one OK or FAILED line."""
    name = "unknown"
    try:
        name, status, target = nightly_steps(config, profile, publish_to, keep, timeout)
    except BaseException as error:  # SIGTERM (SystemExit) and Ctrl-C too: the monitoring line is never missing
        reason = one_line(error) if isinstance(error, Exception) else f"stopped ({type(error).__name__})"
        LOG.error("s2ecosg-nightly FAILED run=%s error=%s", name, reason)
        if isinstance(error, Exception):
            return 1
        raise
    if status != 0:
        LOG.error("s2ecosg-nightly FAILED run=%s exit=%d (see logs/%s/)", name, status, name)
        return status
    LOG.info("s2ecosg-nightly OK run=%s published=%s", name, target)
    return 0


def nightly_steps(
    config: str, profile: str, publish_to: str, keep: int, timeout: float
) -> tuple[str, int, Path | None]:
    """Check, lock, unlock, rerun, publish: (run name, Snakemake's exit status, published folder or None)."""
    if keep < 1:
        raise InputError("--keep", f"{keep}: at least 1 product must be kept (the one just published)")
    settings = read_config_file(config)
    check_input_paths(settings, config)
    cover = Path(RunLayout(settings.run.name).results("cover"))
    lock_path = Path("logs") / settings.run.name / "nightly.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(lock_path, "another nightly run holds the lock") from None
        common = ["--profile", profile, "--configfile", config]
        snakemake([*common, "--unlock"], timeout=300)
        status = snakemake([*common, "--forcerun", "inventory", "--rerun-incomplete"], timeout)
        if status != 0:
            return settings.run.name, status, None
        return settings.run.name, 0, publish(cover, Path(publish_to), keep, dt.datetime.now(dt.UTC))
