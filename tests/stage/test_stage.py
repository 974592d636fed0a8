"""Stage on real Sentinel-2 bands: values against direct rasterio reads, median, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DATA, DEMO

from s2ecosg.config import ImageryConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.stage.composite import median_composite
from s2ecosg.stage.inventory import build_inventory, write_tile_lists
from s2ecosg.stage.run import run_stage

BANDS = ["B02", "B03", "B04", "B08", "B11"]
SETTINGS = ImageryConfig(paths=["unused"])


def stage_tile(inventory: dict, tile: str, folder: Path) -> tuple[Path, Path]:
    """Write the tile lists of an inventory and stage one tile; return the composite and count paths."""
    write_tile_lists(inventory, folder / "scenes")
    image, count = folder / f"{tile}.tif", folder / f"{tile}.count.tif"
    run_stage(str(folder / "scenes" / f"{tile}.json"), SETTINGS, str(image), str(count))
    return image, count


def test_median_of_valid_observations() -> None:
    stack = np.zeros((3, 1, 2, 3), dtype=np.uint16)
    stack[:, 0, 0, 0] = [100, 300, 200]
    stack[:2, 0, 0, 1] = [100, 401]  # 250.5 rounds to the even 250, as np.rint does
    stack[:2, 0, 0, 2] = [65535, 65533]  # the top of the scale is not confused with the invalid marker
    stack[2, 0, 1, 2] = 7
    composite, count = median_composite(stack)
    assert composite.dtype == np.uint16
    assert composite[0].tolist() == [[200, 250, 65534], [0, 0, 7]]
    assert count.tolist() == [[3, 2, 2], [0, 0, 1]]


@pytest.mark.parametrize("scenes", [1, 2, 5, 8, 17, 24, 25, 40])
def test_median_equals_numpy_for_any_number_of_scenes(scenes: int) -> None:
    """The sorting network (≤ 24 scenes) and np.sort (more) give NumPy's median of the valid observations."""
    generator = np.random.default_rng(scenes)
    stack = generator.integers(1, 4000, (scenes, 2, 6, 7)).astype(np.uint16)
    invalid = generator.random((scenes, 1, 6, 7)) < 0.3  # a scene is invalid in all bands of a pixel at once
    stack[np.broadcast_to(invalid, stack.shape)] = 0
    valid = stack[:, 0] != 0
    expected = np.where(valid[:, np.newaxis], stack.astype(float), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.rint(np.nanmedian(expected, axis=0))
    composite, count = median_composite(stack.copy())
    np.testing.assert_array_equal(count, valid.sum(axis=0))
    np.testing.assert_array_equal(composite, np.nan_to_num(reference).astype(np.uint16))


def test_scene_grid_bands_equal_direct_reads(tmp_path: Path) -> None:
    """On the scene's own UTM grid, 10 m bands come out unchanged; 20 m bands keep their block mean."""
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    inventory = build_inventory([str(DEMO / "IMG_DATA" / "*.jp2")], BANDS, grid)
    assert inventory["tiles"]["E332N5816"] == ["T33UUU_20170216T102101"]
    image, count_path = stage_tile(inventory, "E332N5816", tmp_path)
    with rasterio.open(image) as staged:
        assert list(staged.descriptions) == BANDS and staged.dtypes[0] == "uint16" and staged.nodata == 0
        assert staged.profile["tiled"] and staged.bounds == (332000, 5816000, 334000, 5818000)
        image = staged.read()
    # Tile starts 200 columns east and 404 rows south of the scene's upper-left corner (5822040 - 5818000 = 4040 m).
    with rasterio.open(DEMO / "IMG_DATA" / "T33UUU_20170216T102101_B02.jp2") as source:
        direct = source.read(1, window=((404, 604), (200, 400)))
    np.testing.assert_array_equal(image[0], direct)
    with rasterio.open(DEMO / "IMG_DATA" / "T33UUU_20170216T102101_B11.jp2") as source:
        coarse = source.read(1, window=((202, 302), (100, 200))).astype(float)
    assert abs(image[4].mean() - coarse.mean()) < 0.01 * coarse.mean()
    with rasterio.open(count_path) as count:
        assert count.read(1).min() == 1


def test_float_stacks_scaled_to_dn(tmp_path: Path) -> None:
    grid = TargetGrid("EPSG:3035", 10.0, 1000.0)
    inventory = build_inventory([str(DATA / "slovenia" / "S2L1C_2015-07-11_13bands.tif")], BANDS, grid)
    assert inventory["scenes"][0]["gain"] == 10000.0 and inventory["scenes"][0]["date"] == "2015-07-11"
    tile = max(inventory["tiles"])
    image, _ = stage_tile(inventory, tile, tmp_path)
    with rasterio.open(image) as staged:
        values = staged.read(1)
    with rasterio.open(DATA / "slovenia" / "S2L1C_2015-07-11_13bands.tif") as source:
        reflectance = source.read(2)  # B02
    inside = values[values > 0]
    assert inside.size > 0
    assert reflectance.min() * 10000 - 1 <= inside.min() and inside.max() <= reflectance.max() * 10000 + 1


def test_missing_band_is_a_one_line_error(tmp_path: Path) -> None:
    for path in (DEMO / "IMG_DATA").glob("*.jp2"):
        if "_B11" not in path.name:
            shutil.copy(path, tmp_path)
    with pytest.raises(InputError, match="missing band B11") as error:
        build_inventory([str(tmp_path / "*.jp2")], BANDS, TargetGrid())
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_corrupt_band_file_is_a_one_line_error(tmp_path: Path) -> None:
    for path in (DEMO / "IMG_DATA").glob("*.jp2"):
        shutil.copy(path, tmp_path)
    broken = tmp_path / "T33UUU_20170216T102101_B04.jp2"
    broken.write_bytes(b"not a jpeg2000 file")
    with pytest.raises(InputError, match="not a readable raster") as error:
        build_inventory([str(tmp_path / "*.jp2")], BANDS, TargetGrid())
    assert str(error.value).startswith(str(broken))


def test_scene_outside_aoi(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"span W 12\.\d+ .* does not overlap imagery.aoi W -8.0000 S 52.0000"):
        build_inventory([str(DEMO / "IMG_DATA" / "*.jp2")], BANDS, TargetGrid(), aoi=(-8.0, 52.0, -7.0, 53.0))


def test_seasonal_windows_stack_as_bands(tmp_path: Path) -> None:
    """Two seasons give 2 × bands: each half equals the composite of that season's scenes alone."""
    import datetime as dt

    grid = TargetGrid("EPSG:3035", 10.0, 1000.0)
    inventory = build_inventory([str(DATA / "slovenia" / "S2L1C_*_13bands.tif")], BANDS, grid)
    tile = "E4674N2539"
    july, late = (dt.date(2015, 7, 1), dt.date(2015, 7, 31)), (dt.date(2015, 8, 1), dt.date(2015, 9, 30))
    write_tile_lists(inventory, tmp_path / "scenes")
    seasons = ImageryConfig(paths=["x"], seasons=[july, late], cloud_mask="none")
    run_stage(
        str(tmp_path / "scenes" / f"{tile}.json"), seasons, str(tmp_path / "s.tif"), str(tmp_path / "s.count.tif")
    )
    with rasterio.open(tmp_path / "s.tif") as staged, rasterio.open(tmp_path / "s.count.tif") as counts:
        assert list(staged.descriptions) == [f"{band}_s{index}" for index in (1, 2) for band in BANDS]
        both, count, names = staged.read(), counts.read(), counts.descriptions
    assert count.shape[0] == 3 and count[0].max() == 2 and count[1].max() == 3  # 2 July scenes, 3 later ones
    # And the day of the newest clear observation: 2015-09-09, the last scene (days since 1970-01-01).
    assert names[-1] == "newest_clear_day" and count[2].max() == (dt.date(2015, 9, 9) - dt.date(1970, 1, 1)).days
    only_july = build_inventory([str(DATA / "slovenia" / "S2L1C_*_13bands.tif")], BANDS, grid, dates=july)
    write_tile_lists(only_july, tmp_path / "july")
    plain = ImageryConfig(paths=["x"], cloud_mask="none")
    run_stage(str(tmp_path / "july" / f"{tile}.json"), plain, str(tmp_path / "j.tif"), str(tmp_path / "j.count.tif"))
    with rasterio.open(tmp_path / "j.tif") as staged:
        np.testing.assert_array_equal(both[: len(BANDS)], staged.read())


def test_scene_without_valid_pixel_is_skipped_with_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = DATA / "slovenia" / "S2L1C_2015-07-11_13bands.tif"
    with rasterio.open(source) as stack:
        profile, names = stack.profile, stack.descriptions
    empty = tmp_path / "S2L1C_2015-07-12_13bands.tif"
    with rasterio.open(empty, "w", **profile) as destination:
        destination.write(np.zeros((13, profile["height"], profile["width"]), dtype=np.float32))
        for index, name in enumerate(names, start=1):
            destination.set_band_description(index, name)
    shutil.copy(source, tmp_path)
    inventory = build_inventory([str(tmp_path / "*.tif")], BANDS, TargetGrid("EPSG:3035", 10.0, 1000.0))
    with caplog.at_level("WARNING"):
        image, _ = stage_tile(inventory, "E4674N2539", tmp_path / "out")
    assert "scene S2L1C_2015-07-12_13bands has no valid pixel in tile E4674N2539: skipped" in caplog.text
    with rasterio.open(image) as staged:
        assert (staged.read(1) > 0).mean() > 0.3  # the tile is partly covered by the scene


def test_lookahead_keeps_order_and_bounds_work_in_flight() -> None:
    """Scenes are started at most one ahead of the one being spooled, so memory holds two scenes, not all."""
    from s2ecosg.blocks import lookahead

    drawn: list[int] = []

    def items():
        for index in range(5):
            drawn.append(index)
            yield index

    handed = []
    for item in lookahead(items(), 1):
        handed.append(item)
        assert len(drawn) <= item + 2
    assert handed == [0, 1, 2, 3, 4]


def test_read_settings_leave_a_users_choice_and_each_thread_holds_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stage threads read with VSI_CACHE unless the user set it (then the user's value stays), one decoder thread."""
    from s2ecosg.gdal_env import gdal_threads, held_options

    monkeypatch.delenv("VSI_CACHE", raising=False)
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE")
    monkeypatch.setenv("GDAL_NUM_THREADS", "ALL_CPUS")  # GDAL's own decoder threads stay off all the same
    with gdal_threads(2) as pool:
        seen = list(pool.map(lambda _: held_options(), range(8)))
    assert all(options == seen[0] for options in seen)
    assert seen[0]["VSI_CACHE"] == "TRUE" and seen[0]["GDAL_DISABLE_READDIR_ON_OPEN"] == "FALSE"
    assert seen[0]["GDAL_NUM_THREADS"] == "1"


def test_jpeg2000_is_decoded_in_the_thread_that_reads_it() -> None:
    """OpenJPEG runs no worker of its own (given one thread, GDAL would make it one per file, decoding while we wait)."""
    script = f"""
import os, time
from s2ecosg.gdal_env import gdal_ready
import rasterio
gdal_ready()
process, thread = time.process_time(), time.thread_time()
for _ in range(5):
    with rasterio.open({str(DEMO / "IMG_DATA" / "T33UUU_20170216T102101_B02.jp2")!r}) as source:
        source.read(1)
print(os.environ["OPJ_NUM_THREADS"], (time.thread_time() - thread) / (time.process_time() - process))
"""
    environment = {name: value for name, value in os.environ.items() if name != "OPJ_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    setting, share = result.stdout.split()
    assert setting == "0" and float(share) > 0.9  # before: 0.49, the rest in OpenJPEG's worker thread


def test_a_block_stages_like_its_tiles_one_by_one_and_decodes_each_band_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six 2 km tiles of the demo scene staged as one block equal the same tiles staged alone, to the bit.

    The block job decodes each band file once for all six tiles; the tile jobs decode it per tile.
    In strips (a spool budget of one tile row) the result is the same again.
    """
    import s2ecosg.stage.parts
    import s2ecosg.stage.run
    from s2ecosg.stage.run import run_stage_block

    settings = ImageryConfig(paths=["unused"], cloud_mask="scl")
    inventory = build_inventory([str(DEMO / "IMG_DATA" / "*.jp2")], BANDS, TargetGrid(tile_size=2000))
    tiles = sorted(inventory["tiles"])[:6]
    write_tile_lists(inventory, tmp_path / "scenes")
    lists = [str(tmp_path / "scenes" / f"{tile}.json") for tile in tiles]
    decodes: list[str] = []
    real_decode = s2ecosg.stage.parts.decode_band

    def counted(path: str, *arguments: object) -> object:
        decodes.append(Path(path).name)
        return real_decode(path, *arguments)

    monkeypatch.setattr(s2ecosg.stage.parts, "decode_band", counted)
    for tile, path in zip(tiles, lists, strict=True):
        run_stage(path, settings, str(tmp_path / "alone" / f"{tile}.tif"), str(tmp_path / "alone" / f"{tile}.c.tif"))
    per_tile = len(decodes)
    decodes.clear()
    run_stage_block(lists, settings, str(tmp_path / "block"), str(tmp_path / "block" / "blocks" / "B.json"))
    assert sorted(decodes) == sorted(set(decodes)) and len(decodes) == len(BANDS)  # each file once (L1C: no SCL)
    assert per_tile == len(tiles) * len(decodes)
    monkeypatch.setattr(s2ecosg.stage.run, "SPOOL_BYTES", 1)  # every tile row its own strip
    run_stage_block(lists, settings, str(tmp_path / "strips"), str(tmp_path / "strips" / "blocks" / "B.json"))
    valid = 0
    for tile in tiles:
        with rasterio.open(tmp_path / "alone" / f"{tile}.tif") as source:
            alone = source.read()
        valid += int((alone > 0).sum())
        for folder in ("block", "strips"):
            with rasterio.open(tmp_path / folder / f"{tile}.tif") as source:
                np.testing.assert_array_equal(source.read(), alone, err_msg=f"{folder} {tile}")
    assert valid > 0
