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
import time
from dataclasses import dataclass
from pathlib import Path

from s2ecosg.config import Config
from s2ecosg.config_files import check_input_paths, read_config_file
from s2ecosg.errors import InputError
from s2ecosg.layout import RunLayout
from s2ecosg.log import one_line
from s2ecosg.nightly.review import Night, failure_reason, review
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


def stop_group(process: subprocess.Popen[bytes]) -> None:
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


def publish(
    cover: Path,
    folder: Path,
    keep: int,
    now: dt.datetime,
    trees: list[Path] | None = None,
    changes: Path | None = None,
) -> Path:
    """Copy the cover folder (and the ECOSG ``trees``) to ``folder/<stamp>``, repoint ``latest``, keep ``keep``.

    Only the cover's own files are copied (no dot-files: temporaries of a killed job), a tree with its links as
    links; every cover pair in the copy must pass the format check before it is renamed into place, and a failed
    copy leaves no ``.<stamp>.partial`` behind. ``<folder>/latest/ECOCLIMAP-SG`` is then the data path to give
    HARMONIE (``ECOSG_DATA_PATH``), DEODE (``ecosg_data_path``) or pysurfex.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = folder / stamp
    partial = folder / f".{stamp}.partial"
    covers = sorted(Path(path.name) for path in cover.glob("*.dir") if not path.name.startswith("."))
    if not covers:
        raise InputError(cover, "no cover file (.dir) to publish")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(cover, partial, ignore=shutil.ignore_patterns(".*"))
        if changes is not None and changes.is_dir():  # tonight's change report goes with the product
            shutil.copytree(changes, partial / "changes", ignore=shutil.ignore_patterns(".*"))
        for tree in trees or []:
            shutil.copytree(tree, partial / tree.name, symlinks=True, ignore=shutil.ignore_patterns(".*"))
            covers.append(Path(tree.name) / "COVER" / "ecosg_final_map.dir")
        problems = [problem for path in covers for problem in validate_cover(partial / path.with_suffix(""))]
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


HELD = 3  # exit status of a night whose product the review held (nothing published)


@dataclass(frozen=True)
class NightlyRequest:
    """One night: the config, the profile, where to publish, how many to keep, the time limit and the review.

    ``accept`` publishes tonight's product whatever the review says (a held one, after a person looked at it);
    ``max_change`` overrides ``nightly.max_change_percent``.
    """

    config: str
    profile: str
    publish_to: str
    keep: int = 14
    timeout: float = 6 * 3600
    accept: bool = False
    max_change: float | None = None


@dataclass
class NightOutcome:
    """How the night ended: the run, Snakemake's status, the review's figures, what was published or why not."""

    name: str = "unknown"
    status: int = 0
    figures: str = ""
    held: str | None = None
    target: Path | None = None
    reason: str = "workflow"


def run_nightly(request: NightlyRequest) -> int:
    """One nightly run; returns the exit status (0 = published). Every exit path logs one OK or FAILED line."""
    outcome = NightOutcome()
    try:
        nightly_steps(request, outcome)
    except BaseException as error:  # SIGTERM (SystemExit) and Ctrl-C too: the monitoring line is never missing
        reason = one_line(error) if isinstance(error, Exception) else f"stopped ({type(error).__name__})"
        LOG.error("s2ecosg-nightly FAILED run=%s error=%s", outcome.name, reason)
        if isinstance(error, Exception):
            return 1
        raise
    name = outcome.name
    if outcome.status != 0:
        LOG.error(
            "s2ecosg-nightly FAILED run=%s exit=%d reason=%s (see logs/%s/)", name, outcome.status, outcome.reason, name
        )
        return outcome.status
    if outcome.held:
        LOG.error(
            "s2ecosg-nightly FAILED run=%s reason=%s %s nothing published; review %s, then --accept",
            name,
            outcome.held,
            outcome.figures,
            Path(RunLayout(name).results("changes")) / "changes.md",
        )
        return HELD
    LOG.info("s2ecosg-nightly OK run=%s %s published=%s", name, outcome.figures, outcome.target)
    return 0


def nightly_steps(request: NightlyRequest, outcome: NightOutcome) -> None:
    """Check, lock, unlock, rerun, review, publish; ``outcome`` tells how far it came."""
    config, profile, publish_to, keep, timeout = (
        request.config,
        request.profile,
        request.publish_to,
        request.keep,
        request.timeout,
    )
    if keep < 1:
        raise InputError("--keep", f"{keep}: at least 1 product must be kept (the one just published)")
    settings = read_config_file(config)
    check_input_paths(settings, config)
    outcome.name = settings.run.name
    cover = Path(RunLayout(settings.run.name).results("cover"))
    lock_path = Path("logs") / settings.run.name / "nightly.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(lock_path, "another nightly run holds the lock") from None
        common = ["--profile", profile, "--configfile", config]
        started = time.time()
        snakemake([*common, "--unlock"], timeout=300)
        outcome.status = snakemake([*common, "--forcerun", "inventory", "--rerun-incomplete"], timeout)
        if outcome.status != 0:
            outcome.reason = failure_reason(settings, started)
            return
        latest = Path(publish_to) / "latest"
        verdict = review(settings, latest if latest.exists() else None, request.max_change)
        outcome.figures = f"{verdict.figures} {Night.read(settings).line()}"
        if verdict.hold and not request.accept:
            outcome.held = verdict.hold
            return
        if verdict.hold:
            outcome.figures += f" accepted={verdict.hold}"
        trees = published_trees(settings)
        now = dt.datetime.now(dt.UTC)
        outcome.target = publish(cover, Path(publish_to), keep, now, trees, verdict.report)


def published_trees(settings: Config) -> list[Path]:
    """The run's ECOSG trees (``cover.tree``): the deterministic one and one per ensemble member."""
    if settings.cover.tree is None:
        return []
    tree = Path(RunLayout(settings.run.name).tree)
    return [tree] + [Path(f"{tree}_M{number:02d}") for number in range(1, settings.cover.members + 1)]
