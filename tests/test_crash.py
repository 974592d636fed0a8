"""A native crash is never silent: the Python stacks of every thread land in the rule's log (faulthandler)."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, SNAKEMAKE, run

from s2ecosg.errors import WorkerDied
from s2ecosg.log import CRASH_HOOK


def test_a_crashing_command_leaves_every_threads_stack_in_its_log(tmp_path: Path) -> None:
    log = tmp_path / "inventory.log"
    command = [str(BIN / "s2ecosg"), "inventory", "--settings", "{}", "--out", "x.json", "--tile-lists", "t"]
    result = subprocess.run(
        [*command, "--log", str(log)], cwd=tmp_path, env={"PATH": str(BIN), CRASH_HOOK: "inventory"}, timeout=120
    )
    assert result.returncode == -11  # SIGSEGV, re-raised after the stacks were written
    text = log.read_text()
    assert "Fatal Python error: Segmentation fault" in text
    # Both threads: the one that crashed (in ctypes, called from the command wrapper) and the one waiting beside it.
    crashed = text[text.index("Current thread") :]
    assert "in string_at" in crashed and "in crash_if_asked" in crashed and "in wrapper" in crashed
    assert re.search(r"Thread 0x[0-9a-f]+ \(most recent call first\):\n(  File .*\n)*.* in companion_of_crash", text)


def test_the_workflow_names_the_signal_and_the_log_with_the_stacks(workdir: Path) -> None:
    result = run(
        [*SNAKEMAKE, "--configfile", "tests/workflow/config.yaml"],
        cwd=workdir,
        check=False,
        env={CRASH_HOOK: "inventory"},
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "SIGSEGV" in output and "logs/slovenia/stage/inventory.log" in output
    assert "Fatal Python error: Segmentation fault" in output  # Snakemake prints the failed job's log
    assert "in companion_of_crash" in (workdir / "logs" / "slovenia" / "stage" / "inventory.log").read_text()


@pytest.fixture
def log_file(tmp_path: Path):
    """The root logger writes to a file, as in a command (the cover's workers append their stacks to it)."""
    handler = logging.FileHandler(tmp_path / "cover.log")
    logging.getLogger().handlers.insert(0, handler)  # before pytest's own (a /dev/null file handler)
    yield tmp_path / "cover.log"
    logging.getLogger().removeHandler(handler)
    handler.close()


def test_a_crashing_cover_worker_is_one_line_naming_the_log(
    log_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cover.test_parallel import lanjaron_tiles, write

    monkeypatch.setenv(CRASH_HOOK, "cover-worker")  # the spawned workers inherit it
    with pytest.raises(WorkerDied, match=rf"a worker process died .*; see {re.escape(str(log_file))}"):
        write(lanjaron_tiles(tmp_path), tmp_path / "crashed", workers=2)
    assert "in output_in_worker" in log_file.read_text()
    assert not list((tmp_path / "crashed").glob("TILES*"))  # nothing under a final name
