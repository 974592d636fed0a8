"""The house rules, checked: type checker and linter clean, budgets, typed stage entry points, no import circle."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys

import pytest
from conftest import BIN, ROOT

SOURCE = ROOT / "src" / "s2ecosg"
ENTRY_POINTS = {  # the function each stage's command calls
    "stage.run": "run_stage_block",
    "labels.run": "run_labels_block",
    "shards.cut": "run_shards_block",
    "shards.index": "run_shards_index",
    "train.run": "run_train",
    "predict.block": "run_predict_block",
    "cover.run": "run_cover",
    "evaluate.run": "run_evaluate",
    "evaluate.baseline": "run_baseline_train",
}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name (``s2ecosg.cover.run``)."""
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text())
    return found


def test_type_checker_is_clean() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]


def test_strict_typing_everywhere_but_the_listed_modules() -> None:
    """``Any`` is refused by mypy except in the modules pyproject.toml lists, and each listed module exists."""
    import tomllib

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert settings["disallow_any_explicit"] and settings["disallow_any_generics"]
    listed = [name for override in settings["overrides"] for name in override["module"]]
    assert all(override["disallow_any_explicit"] is False for override in settings["overrides"])
    assert sorted(set(listed) - set(modules())) == [], "a listed module no longer exists: drop it from the list"
    assert len(listed) == len(set(listed)), "a module is listed twice"
    untyped = re.compile(r"\bAny\b|np\.ndarray\b(?!\[)")
    sources = modules()
    needless = [name for name in listed if name in sources and not untyped.search(ast.unparse(sources[name]))]
    assert needless == [], f"listed but without Any or a bare np.ndarray: drop them from the list: {needless}"


def test_linter_and_formatter_are_clean() -> None:
    folders = ["src", "tests", "bench"]
    check = subprocess.run([str(BIN / "ruff"), "check", *folders], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-4000:]
    formatted = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", *folders], cwd=ROOT, capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout[-4000:]


def test_budgets_no_module_over_400_lines_no_function_over_50() -> None:
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 400, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno - node.lineno < 50, f"{path}: {node.name}"


@pytest.mark.parametrize(("module", "function"), ENTRY_POINTS.items())
def test_stage_entry_points_are_typed_without_any(module: str, function: str) -> None:
    import importlib

    entry = getattr(importlib.import_module(f"s2ecosg.{module}"), function)
    for name, parameter in inspect.signature(entry).parameters.items():
        assert parameter.annotation is not inspect.Parameter.empty, f"{function}: {name} has no annotation"
        assert "Any" not in str(parameter.annotation), f"{function}: {name} is {parameter.annotation}"


def test_no_import_circle() -> None:
    """No module reaches itself through the modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = {}
    known = modules()
    for name, tree in known.items():
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("s2ecosg"):
                imported |= {
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                    for alias in node.names
                }
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("s2ecosg")}
        graph[name] = {module for module in imported if module in known and module != name}

    def circle_from(start: str) -> list[str] | None:
        path, seen = [start], set()

        def visit(node: str) -> list[str] | None:
            for child in sorted(graph[node]):
                if child == start:
                    return [*path, child]
                if child not in seen and not child.startswith(f"{start}."):
                    seen.add(child)
                    path.append(child)
                    if found := visit(child):
                        return found
                    path.pop()
            return None

        return visit(start)

    for name in graph:
        if name in ("s2ecosg",) or SOURCE.joinpath(*name.split(".")[1:], "__init__.py").exists():
            continue  # a package's face imports its modules by design
        assert circle_from(name) is None, " → ".join(circle_from(name) or [])


def test_tests_mirror_the_package() -> None:
    """Every package has a test folder of the same name, and a test module there imports that package."""
    packages = {path.parent.name for path in SOURCE.glob("*/__init__.py")} - {"data"}
    for package in sorted(packages):
        folder = ROOT / "tests" / package
        tests = sorted(folder.glob("test_*.py")) if folder.is_dir() else []
        assert tests, f"tests/{package}/ has no test module"
        imported = any(f"s2ecosg.{package}" in path.read_text() for path in tests)
        assert imported, f"no module of tests/{package}/ imports s2ecosg.{package}"


def test_the_core_imports_no_stage_package() -> None:
    """Modules at the top of the package (config, log, io, …) import none of the stage packages, not even lazily."""
    packages = {path.parent.name for path in SOURCE.glob("*/__init__.py")} - {"data"}
    for path in sorted(SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("s2ecosg."):
                assert node.module.split(".")[1] not in packages, f"{path.name} imports {node.module}"


def test_the_registries_name_what_the_config_accepts() -> None:
    from s2ecosg.config_base import SOURCE_NAMES
    from s2ecosg.encoder_shapes import ENCODER_SHAPES
    from s2ecosg.model.encoders import ENCODERS
    from s2ecosg.stage.sources import SOURCES

    assert set(SOURCES) == set(SOURCE_NAMES) and set(ENCODERS) == set(ENCODER_SHAPES)


def test_command_start_is_light() -> None:
    """``s2ecosg --help`` imports neither torch nor rasterio (they cost seconds per job)."""
    code = "import sys, s2ecosg.cli; print(sorted({'torch', 'rasterio'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# The one module that reads each file of the workflow's JSON files (each also writes it).
JSON_OWNERS = {
    "io.py": "read_json itself",
    "blocks.py": "block manifests (<stage>/blocks/<block>.json)",
    "config_files.py": "the run's config file",
    "model/card.py": "bundle.json",
    "shards/index.py": "shards/index.json and stats.json",
    "shards/cut.py": "tile shard headers and split.geojson",
    "stage/inventory.py": "inventory.json, scene lists, found.json",
    "evaluate/baseline.py": "the baseline's own card.json",
    "cover/change_report.py": "changes.json",
    "cli/common.py": "--settings (JSON text, not a file)",
}


def test_json_files_are_read_by_their_owner_only() -> None:
    """No raw read_json / json.load of a workflow file outside the module that owns it (and writes it)."""
    for path in sorted(SOURCE.rglob("*.py")):
        name = str(path.relative_to(SOURCE))
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("read_json", "json.load", "json.loads", "io.read_json")
        ]
        assert not calls or name in JSON_OWNERS, f"{name} reads JSON itself: {ast.unparse(calls[0])}"
