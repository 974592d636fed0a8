"""Block manifests: one writer and one reader (``s2ecosg.blocks``), entries of strings only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2ecosg.blocks import read_manifests, write_manifest
from s2ecosg.errors import InputError


def test_manifests_round_trip_and_merge(tmp_path: Path) -> None:
    write_manifest(tmp_path / "A.json", "A", {"T2": {"signature": "b", "image": "t2.tif"}, "T1": {"signature": "a"}})
    write_manifest(tmp_path / "B.json", "B", {"T3": {"signature": "c", "labels": "t3.tif"}})
    assert list(json.loads((tmp_path / "A.json").read_text())["tiles"]) == ["T1", "T2"]  # sorted on disk
    merged = read_manifests([str(tmp_path / "A.json"), str(tmp_path / "B.json")])
    assert merged == {
        "T1": {"signature": "a"},
        "T2": {"signature": "b", "image": "t2.tif"},
        "T3": {"signature": "c", "labels": "t3.tif"},
    }


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"block": "A"}, "not a block manifest"),
        ({"block": "A", "tiles": {"T1": ["x"]}}, "tile T1: not a manifest entry"),
        ({"block": "A", "tiles": {"T1": {"signature": "a", "image": None}}}, "tile T1: not a manifest entry"),
    ],
)
def test_a_manifest_that_is_not_one_is_one_line_naming_the_file(tmp_path: Path, document: dict, problem: str) -> None:
    path = tmp_path / "A.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match=problem) as raised:
        read_manifests([str(path)])
    assert str(path) in str(raised.value)
