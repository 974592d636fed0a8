"""SURFEX DIRECT writer, reader and validator, against hand-computed bytes and headers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from s2ecosg.errors import InputError
from s2ecosg.surfex import decimal, read_cover, write_cover
from s2ecosg.validate import validate_cover


def quadrants() -> np.ndarray:
    """4 rows × 6 cols: north-west 1 (sea), north-east 8, south-west 17, south-east 25."""
    cover = np.zeros((4, 6), dtype=np.uint8)
    cover[:2, :3], cover[:2, 3:], cover[2:, :3], cover[2:, 3:] = 1, 8, 17, 25
    return cover


def test_quadrants_land_at_hand_computed_offsets(tmp_path: Path) -> None:
    base = tmp_path / "QUAD"
    write_cover(base, quadrants(), (-8.0, 52.0, -6.5, 53.0), "quadrant test")
    raw = (tmp_path / "QUAD.dir").read_bytes()
    assert len(raw) == 24
    # Row 1 (north) first, west column first: byte = row * cols + col.
    assert raw[0] == 1 and raw[2] == 1  # north-west
    assert raw[3] == 8 and raw[5] == 8  # north-east, end of row 1
    assert raw[2 * 6 + 0] == 17  # first byte of row 3 (south half), west
    assert raw[3 * 6 + 5] == 25  # last byte: south-east corner
    assert raw == bytes([1, 1, 1, 8, 8, 8] * 2 + [17, 17, 17, 25, 25, 25] * 2)


def test_header_values_by_hand(tmp_path: Path) -> None:
    write_cover(tmp_path / "QUAD", quadrants(), (-8.0, 52.0, -6.5, 53.0), "quadrant test")
    assert (tmp_path / "QUAD.hdr").read_text() == (
        "quadrant test\nnodata: 0\nnorth: 53.0\nsouth: 52.0\nwest: -8.0\neast: -6.5\nrows: 4\ncols: 6\n"
        "recordtype: integer 8 bits\n"
    )


def test_reader_round_trip(tmp_path: Path) -> None:
    write_cover(tmp_path / "QUAD", quadrants(), (-8.0, 52.0, -6.5, 53.0), "x")
    cover, header = read_cover(tmp_path / "QUAD")
    np.testing.assert_array_equal(cover, quadrants())
    assert (header["north"], header["south"], header["west"], header["east"]) == (53.0, 52.0, -8.0, -6.5)
    # SURFEX's pixel centres: first row at north - dlat/2, first column at west + dlon/2.
    dlat = (header["north"] - header["south"]) / header["rows"]
    assert header["north"] - 0.5 * dlat == pytest.approx(52.875)
    assert validate_cover(tmp_path / "QUAD") == []


def test_decimal_is_plain() -> None:
    assert decimal(53) == "53.0"
    assert decimal(-7.25) == "-7.25"
    assert decimal(1 / 1800) == "0.0005555555555555556" and float(decimal(1 / 1800)) == 1 / 1800  # never rounded
    assert "e" not in decimal(1e-7).lower()


def test_long_basename_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="25 characters"):
        write_cover(tmp_path / ("A" * 25), quadrants(), (0.0, 0.0, 6.0, 4.0), "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h, d: (h.replace("nodata: 0", "NODATA: 0"), d), "NODATA"),
        (lambda h, d: (h.replace("north: 53.0", "north : 53.0"), d), "line 3"),
        (lambda h, d: (h.replace("west: -8.0", "west:\t-8.0"), d), "blank after the colon"),
        (lambda h, d: (h.replace("north: 53.0", "north: 5.3E1"), d), "plain decimal"),
        (lambda h, d: (h.replace("integer 8 bits", "uint8 (1 byte)"), d), "recordtype"),
        (lambda h, d: (h.replace("cols: 6\n", ""), d), "key cols: missing"),
        (lambda h, d: (h, d[:-1]), "23 bytes"),
        (lambda h, d: (h, d[:-1] + bytes([34])), "outside 0..33"),
        (lambda h, d: (h, bytes([255]) + d[1:]), "values [255] outside 0..33"),
        (lambda h, d: (h.replace("rows: 4", "rows: 3"), d), "expected rows × cols = 18"),
        (lambda h, d: (h.replace("west: -8.0", "west: -6.0").replace("east: -6.5", "east: -8.0"), d), "west < east"),
        (lambda h, d: (h.replace("recordtype: integer 8 bits\n", ""), d), "key recordtype: missing"),
        (lambda h, d: (h.replace("east: -6.5", "east: 353.5").replace("west: -8.0", "west: 352.0"), d), "-180..180"),
    ],
)
def test_validator_finds_broken_files(tmp_path: Path, edit, message: str) -> None:
    write_cover(tmp_path / "QUAD", quadrants(), (-8.0, 52.0, -6.5, 53.0), "x")
    header, data = edit((tmp_path / "QUAD.hdr").read_text(), (tmp_path / "QUAD.dir").read_bytes())
    (tmp_path / "QUAD.hdr").write_text(header)
    (tmp_path / "QUAD.dir").write_bytes(data)
    problems = validate_cover(tmp_path / "QUAD")
    assert any(message in problem for problem in problems), problems


def test_validator_refuses_a_25_character_name(tmp_path: Path) -> None:
    write_cover(tmp_path / "QUAD", quadrants(), (-8.0, 52.0, -6.5, 53.0), "x")
    long_name = tmp_path / ("B" * 25)
    for suffix in (".hdr", ".dir"):
        (tmp_path / f"QUAD{suffix}").rename(f"{long_name}{suffix}")
    assert any("longer than 24 characters" in problem for problem in validate_cover(long_name))


@settings(max_examples=60, deadline=None)
@given(
    west=st.floats(-180, 179, allow_nan=False).map(lambda value: round(value * 360) / 360),
    south=st.floats(-89, 88, allow_nan=False).map(lambda value: round(value * 360) / 360),
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    step=st.sampled_from([1 / 360, 1 / 1800, 0.25, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_header_round_trip(west: float, south: float, rows: int, cols: int, step: float, seed: int) -> None:
    """Any grid inside the globe survives write → read exactly, and passes the validator."""
    east, north = west + cols * step, south + rows * step
    assume(east <= 180 and north <= 90)
    cover = np.random.default_rng(seed).integers(0, 34, size=(rows, cols), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "PROP"
        write_cover(base, cover, (west, south, east, north), "property")
        read_back, header = read_cover(base)
        np.testing.assert_array_equal(read_back, cover)
        for key, value in (("west", west), ("south", south), ("east", east), ("north", north)):
            assert header[key] == pytest.approx(value, abs=1e-11)
        assert (header["north"] - header["south"]) / header["rows"] == pytest.approx(step, rel=1e-9)
        assert validate_cover(base) == []
