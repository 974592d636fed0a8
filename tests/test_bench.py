"""Every benchmark runs at its ``--smoke`` size and prints each RESULT line it documents with a finite number.

A benchmark that breaks (a card format it no longer writes, a job that skips its work) fails here, not months later
when someone needs its figures. Full sizes stay out of CI.
"""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BENCHES = sorted(path.name for path in (ROOT / "bench").glob("*.py"))


def documented(script: str) -> set[str]:
    """RESULT names a benchmark documents: in its docstring and its row of bench/README.md."""
    source = (ROOT / "bench" / script).read_text()
    text = (ast.get_docstring(ast.parse(source)) or "") + "\n"
    readme = (ROOT / "bench" / "README.md").read_text().splitlines()
    text += "\n".join(line for line in readme if f"`bench/{script}`" in line)
    return set(re.findall(r"RESULT (\w+)", text))


def results(output: str) -> dict[str, str]:
    """The RESULT lines of a benchmark's output: name → the value as printed."""
    return dict(re.findall(r"^RESULT (\w+) (\S+)\s*$", output, flags=re.MULTILINE))


def smoke(script: str, *arguments: str, timeout: int = 900) -> dict[str, str]:
    """Run ``bench/<script> --smoke``; its RESULT lines."""
    command = [sys.executable, str(ROOT / "bench" / script), "--smoke", *arguments]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{script} --smoke failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return results(result.stdout)


def check(script: str, printed: dict[str, str]) -> None:
    """Every documented RESULT printed, each a finite number, and nothing printed that is not documented."""
    names = documented(script)
    assert names, f"{script} documents no RESULT line"
    assert names <= set(printed), f"{script} did not print {sorted(names - set(printed))}"
    assert set(printed) <= names, f"{script} prints undocumented {sorted(set(printed) - names)}"
    for name, value in printed.items():
        assert math.isfinite(float(value)), f"{script}: RESULT {name} {value}"


@pytest.mark.parametrize("script", [name for name in BENCHES if name != "stress.py"])
def test_benchmark_smoke_prints_its_results(script: str) -> None:
    check(script, smoke(script))


def test_stress_smoke_finds_no_crash_and_no_difference(slovenia_run: Path) -> None:
    printed = smoke("stress.py", "--workdir", str(slovenia_run))
    check("stress.py", printed)
    assert printed["stress_runs"] == "4"  # one job of each rule: stage, labels, predict, cover
    assert printed["stress_crashes"] == printed["stress_failures"] == printed["stress_differences"] == "0"


def test_every_benchmark_has_a_smoke_size() -> None:
    for script in BENCHES:
        assert "--smoke" in (ROOT / "bench" / script).read_text(), script
    assert Path(ROOT / "bench" / "README.md").read_text().count("--smoke") >= 1
