"""Nightly entry point: rerun the workflow (only what changed is redone), publish the cover, keep the last N.

``s2ecosg nightly --config my.yaml --profile profiles/slurm --publish /data/physiography --keep 14``
1. takes a lock (one nightly run at a time), then runs ``snakemake --unlock`` so that a crashed or killed
   run's stale Snakemake lock cannot block tonight's run;
2. runs Snakemake with ``--forcerun inventory`` (new scenes in the archive or the STAC API are found; only
   the tiles whose scenes changed are restaged and re-predicted) and ``--rerun-incomplete``;
3. copies ``results/<run>/cover/`` into ``<publish>/<UTC time stamp>/``, points ``<publish>/latest`` at it
   and deletes all but the ``keep`` newest dated folders;
4. writes one line ``s2ecosg-nightly OK|FAILED run=<name> ...`` to its log for monitoring, and exits non-zero
   on failure.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from s2ecosg.errors import InputError

LOG = logging.getLogger(__name__)
STAMP = re.compile(r"^\d{8}T\d{6}Z$")


def snakemake(arguments: list[str], timeout: float) -> int:
    """Run Snakemake (the one next to this Python, else the one on PATH); return its exit status."""
    import sys

    executable = Path(sys.executable).with_name("snakemake")
    command = [str(executable) if executable.exists() else "snakemake", *arguments]
    LOG.info("running %s", " ".join(command))
    try:
        return subprocess.run(command, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        LOG.error("snakemake did not finish within %.0f s", timeout)
        return 124


def publish(cover: Path, folder: Path, keep: int, now: dt.datetime) -> Path:
    """Copy the cover folder to ``folder/<stamp>``, repoint ``latest``, keep the ``keep`` newest copies."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = folder / stamp
    partial = folder / f".{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(cover, partial)
    os.replace(partial, target)
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
    """One nightly run; returns the exit status (0 = published)."""
    from s2ecosg.config import read_config_file

    settings = read_config_file(config)
    cover = Path("results") / settings.run.name / "cover"
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
            LOG.error(
                "s2ecosg-nightly FAILED run=%s exit=%d (see logs/%s/)", settings.run.name, status, settings.run.name
            )
            return status
        target = publish(cover, Path(publish_to), keep, dt.datetime.now(dt.UTC))
        LOG.info("s2ecosg-nightly OK run=%s published=%s", settings.run.name, target)
    return 0
