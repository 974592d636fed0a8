"""The bundle card: format versions read, the calibration fields checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2ecosg.errors import InputError
from s2ecosg.model.card import BUNDLE_VERSION, BundleCard, read_card


def write_card(folder: Path, **fields: object) -> None:
    card = BundleCard(encoder="resnet18", bands=["B04", "B03"], n_classes=3, mean=[0.0, 0.0], std=[1.0, 1.0])
    (folder / "bundle.json").write_text(json.dumps(card.model_dump(mode="json") | fields))


def test_a_card_of_format_2_reads_as_uncalibrated(tmp_path: Path) -> None:
    write_card(tmp_path, version=2)
    raw = json.loads((tmp_path / "bundle.json").read_text())
    del raw["temperature"], raw["calibration"]
    (tmp_path / "bundle.json").write_text(json.dumps(raw))
    card = read_card(tmp_path)
    assert card.temperature == 1.0 and card.calibration is None


def test_the_temperature_is_written_and_read_back(tmp_path: Path) -> None:
    scores = {
        "ece": 0.1,
        "brier": 0.2,
        "nll": 0.3,
        "accuracy": 0.8,
        "bins": [{"pixels": 10, "confidence": 0.9, "accuracy": 0.8}],
    }
    fit = {"temperature": 1.73, "pixels": 10, "before": scores, "after": scores | {"ece": 0.05}}
    write_card(tmp_path, temperature=1.73, calibration=fit)
    card = read_card(tmp_path)
    assert card.version == BUNDLE_VERSION == 3
    assert card.temperature == 1.73 and card.calibration is not None and card.calibration.model_dump() == fit
    assert card.calibration.after.ece == 0.05 and card.calibration.before.bins[0].confidence == 0.9


def test_a_calibration_record_without_its_scores_is_one_line(tmp_path: Path) -> None:
    write_card(tmp_path, temperature=1.73, calibration={"temperature": 1.73, "pixels": 10})
    with pytest.raises(InputError, match=r"bundle.json: calibration.before: Field required"):
        read_card(tmp_path)


@pytest.mark.parametrize("temperature", [0, -1.5])
def test_a_temperature_that_is_not_positive_is_refused(tmp_path: Path, temperature: float) -> None:
    write_card(tmp_path, temperature=temperature)
    with pytest.raises(InputError, match=r"bundle.json: temperature: Input should be greater than 0"):
        read_card(tmp_path)
