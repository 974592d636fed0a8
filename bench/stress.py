"""Stress harness of the block jobs under load (not in CI; its ``--smoke`` size is): no crash, no differing byte.

The shipped test workflow (``tests/workflow/config.yaml``, the real Slovenia scenes) is run once with
``profiles/local``; its stage, labels, predict and cover block jobs are then taken from Snakemake's own dry run
(``Shell command:`` lines) and each is run alone once, on a quiet machine, as the reference. Then every job is run
``--rounds`` times more, ``--concurrent`` at a time, with a busy process per core beside them (``--hogs``), each
run in a sandbox of its own (the inputs linked from the finished run, the outputs fresh): every run must exit 0
and write files byte-identical to the reference (GeoTIFFs, manifests, the DIRECT pair, netCDF, namelists,
quick-look, README). A run killed by a signal is a crash; its log holds the Python stacks of its threads
(faulthandler). The counts are printed as

    RESULT stress_runs N
    RESULT stress_crashes 0
    RESULT stress_differences 0

with the runs per second under load against the quiet serial runs (``RESULT stress_slowdown``) and the peak
memory of one job.

Usage: python bench/stress.py [--rounds 20] [--concurrent 4] [--hogs CORES] [--workdir FINISHED_RUN] [--smoke]
(``--workdir`` reuses a finished run of the test workflow instead of making one: the tests pass theirs.)
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = "tests/workflow/config.yaml"
RULES = ("stage_block", "labels_block", "predict_block", "cover")
# What each job reads from the finished run (linked into its sandbox) and the folder it writes (fresh).
READS = {
    "stage_block": ("stage/scenes",),
    "labels_block": ("stage/scenes",),
    "predict_block": ("stage", "model"),
    "cover": ("stage", "predict", "model"),
}
WRITES = {"stage_block": "stage", "labels_block": "labels", "predict_block": "predict", "cover": "cover"}


@dataclass(frozen=True)
class Job:
    """One block job of the finished run: its rule, its shell command and the run's name."""

    rule: str
    command: str
    run: str

    @property
    def name(self) -> str:
        """The rule and its block (or the rule alone for the cover)."""
        block = re.search(r"blocks/(\w+)\.json", self.command.split(" --log ")[0].split("--manifest")[-1])
        return f"{self.rule}:{block.group(1)}" if block and self.rule != "cover" else self.rule


def environment() -> dict[str, str]:
    """The venv's commands first on PATH; a fixed creation time (``SOURCE_DATE_EPOCH``), so equal runs are equal bytes."""
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, PATH=path, SOURCE_DATE_EPOCH="1800000000")


def finished_run(folder: Path) -> None:
    """The test workflow run once in ``folder`` (a copy of the workflow and the test data)."""
    for name in ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, folder / name)
    shutil.copytree(ROOT / "tests" / "data", folder / "tests" / "data")
    shutil.copytree(ROOT / "tests" / "workflow", folder / "tests" / "workflow")
    command = ["snakemake", "--profile", "profiles/local", "--cores", "2", "--configfile", CONFIG]
    subprocess.run(command, cwd=folder, env=environment(), check=True, capture_output=True, timeout=1800)


def block_jobs(folder: Path) -> list[Job]:
    """The block jobs of the finished run in ``folder``, as Snakemake would run them (its dry run's commands)."""
    command = ["snakemake", "--profile", "profiles/local", "--cores", "2", "--configfile", CONFIG, "-n"]
    command += ["--forcerun", *RULES]
    output = subprocess.run(
        command, cwd=folder, env=environment(), check=True, capture_output=True, text=True, timeout=600
    ).stdout
    jobs, rule = [], None
    for line in output.splitlines():
        found = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if found:
            rule = found.group(1)
        elif line.startswith("Shell command: ") and rule in RULES:
            shell = line[len("Shell command: ") :]
            run = re.search(r"results/([^/]+)/", shell)
            jobs.append(Job(rule, shell, run.group(1) if run else ""))
    if {job.rule for job in jobs} != set(RULES):
        raise SystemExit(f"the dry run in {folder} lacks jobs of {set(RULES) - {job.rule for job in jobs}}")
    return jobs


def sandbox(job: Job, finished: Path, folder: Path) -> Path:
    """A working directory for one run of ``job``: the finished run's inputs linked, its own outputs absent."""
    folder.mkdir(parents=True)
    (folder / "tests").symlink_to(finished / "tests")
    results = folder / "results" / job.run
    results.mkdir(parents=True)
    (results / "config").symlink_to(finished / "results" / job.run / "config")
    for part in READS[job.rule]:
        (results / part).parent.mkdir(parents=True, exist_ok=True)
        (results / part).symlink_to(finished / "results" / job.run / part)
    return folder


def written(job: Job, folder: Path) -> dict[str, Path]:
    """The files a run of ``job`` wrote (relative name → path): its stage folder, not the linked inputs."""
    top = folder / "results" / job.run / WRITES[job.rule]
    files = {}
    for path in sorted(top.rglob("*")) if top.is_dir() and not top.is_symlink() else []:
        if path.is_file() and not path.is_symlink() and not any(part.is_symlink() for part in path.parents):
            files[str(path.relative_to(top))] = path
    return files


@dataclass
class Outcome:
    """One run: exit status (negative: the signal that killed it), seconds, peak memory (MB), differing files."""

    job: Job
    status: int
    seconds: float
    peak_mb: float
    differing: list[str]
    log: str


def run_once(job: Job, finished: Path, folder: Path, reference: dict[str, Path] | None) -> Outcome:
    """Run ``job`` in a fresh sandbox ``folder``; compare what it wrote with ``reference`` (if given)."""
    sandbox(job, finished, folder)
    start = time.perf_counter()
    # /usr/bin/time is not everywhere: the peak memory of the child comes from wait4's rusage.
    process = subprocess.Popen(
        shlex.split(job.command),
        cwd=folder,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = process.communicate(timeout=1200)
    seconds = time.perf_counter() - start
    status = process.returncode
    peak = peak_of_children()
    log = re.search(r"--log (\S+)", job.command)
    log_text = (folder / log.group(1)).read_text(errors="replace") if log and (folder / log.group(1)).exists() else ""
    differing = []
    if status == 0 and reference is not None:
        made = written(job, folder)
        differing = sorted(set(made) ^ set(reference))
        differing += [
            name for name in set(made) & set(reference) if not filecmp.cmp(made[name], reference[name], False)
        ]
    return Outcome(job, status, seconds, peak, differing, log_text or stderr)


def peak_of_children() -> float:
    """Largest peak resident memory of any child waited for so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def busy(stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    """A process that keeps one core busy until ``stop`` is set."""
    value = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(100_000):
            value = (value * 1_103_515_245 + 12_345) % 2**31


def main() -> None:
    """Make (or reuse) the finished run, the serial references, then the loaded rounds; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="runs of every block job under load")
    parser.add_argument("--concurrent", type=int, default=4, help="jobs running at once")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes beside the jobs")
    parser.add_argument("--workdir", type=Path, help="a finished run of the test workflow (default: make one)")
    parser.add_argument("--keep", type=Path, help="folder for the sandboxes (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="one round, one job of each rule, two at once")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.concurrent, args.hogs = 1, 2, 1
    with tempfile.TemporaryDirectory(prefix="s2ecosg-stress-") as scratch:
        root = Path(args.keep or scratch).resolve()
        finished = args.workdir.resolve() if args.workdir else root / "workflow"
        if not args.workdir:
            finished.mkdir(parents=True, exist_ok=True)
            finished_run(finished)
        jobs = block_jobs(finished)
        if args.smoke:
            jobs = [next(job for job in jobs if job.rule == rule) for rule in RULES]
        report(stress(jobs, finished, root / "runs", args), len(jobs))


def stress(jobs: list[Job], finished: Path, runs: Path, args: argparse.Namespace) -> dict[str, object]:
    """Serial reference runs, then ``args.rounds`` loaded rounds of every job; the outcomes of both."""
    counter = itertools.count()
    serial = [run_once(job, finished, runs / f"serial{next(counter)}", None) for job in jobs]
    failed = [outcome for outcome in serial if outcome.status != 0]
    if failed:
        raise SystemExit(f"serial run of {failed[0].job.name} failed ({failed[0].status}):\n{failed[0].log[-3000:]}")
    references = {job.name: written(job, runs / f"serial{index}") for index, job in enumerate(jobs)}
    if any(not files for files in references.values()):
        raise SystemExit("a serial run wrote nothing: the harness would compare nothing")
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    start = time.perf_counter()
    try:
        order = [job for _ in range(args.rounds) for job in jobs]
        with ThreadPoolExecutor(args.concurrent) as pool:
            loaded = list(
                pool.map(lambda job: run_once(job, finished, runs / f"run{next(counter)}", references[job.name]), order)
            )
    finally:
        stop.set()
        for hog in hogs:
            hog.join()
    return {"serial": serial, "loaded": loaded, "seconds": time.perf_counter() - start}


def report(outcomes: dict[str, object], n_jobs: int) -> None:
    """Print each failure with its log's end, the rates and the RESULT lines."""
    serial, loaded = outcomes["serial"], outcomes["loaded"]
    assert isinstance(serial, list) and isinstance(loaded, list)
    crashes = [outcome for outcome in loaded if outcome.status < 0]
    failures = [outcome for outcome in loaded if outcome.status > 0]
    differing = [outcome for outcome in loaded if outcome.differing]
    for outcome in crashes + failures:
        print(f"{outcome.job.name}: exit {outcome.status}\n{outcome.log[-2500:]}\n")
    for outcome in differing:
        print(f"{outcome.job.name}: differs from the serial run in {', '.join(outcome.differing[:6])}")
    quiet = sum(outcome.seconds for outcome in serial)
    loaded_seconds = float(outcomes["seconds"])  # type: ignore[arg-type]
    files = sum(len(outcome.differing) == 0 for outcome in loaded)
    print(f"{n_jobs} block jobs ({', '.join(sorted({o.job.rule for o in serial}))}); serial: {quiet:.1f} s")
    print(f"{len(loaded)} runs under load in {loaded_seconds:.1f} s: {len(loaded) / loaded_seconds:.2f} runs/s")
    print(f"runs whose every file equals the serial run's: {files} of {len(loaded)}")
    print(f"peak memory of one job: {max(outcome.peak_mb for outcome in serial + loaded):.0f} MB")
    print(f"RESULT stress_runs {len(loaded)}")
    print(f"RESULT stress_crashes {len(crashes)}")
    print(f"RESULT stress_failures {len(failures)}")
    print(f"RESULT stress_differences {len(differing)}")
    print(f"RESULT stress_slowdown {(loaded_seconds * len(serial)) / (quiet * len(loaded)):.3f}")


if __name__ == "__main__":
    main()
