"""SAFE products, radiometric offsets, SCL masks, two UTM zones on one grid (real bands, metadata written here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DATA, DEMO
from pyproj import Transformer
from safe_fixture import make_safe

from s2ecosg.config import ImageryConfig
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.stage.inventory import build_inventory, write_tile_lists
from s2ecosg.stage.run import run_stage
from s2ecosg.stage.safe import parse_metadata

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
BARBELLINO = DATA / "barbellino"
L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12"]  # sen2r BOA stack order


def stage_all(inventory: dict, folder: Path, settings: ImageryConfig | None = None) -> dict[str, Path]:
    """Stage every tile of an inventory; return tile → composite path."""
    write_tile_lists(inventory, folder / "scenes")
    out = {}
    for tile in inventory["tiles"]:
        out[tile] = folder / f"{tile}.tif"
        run_stage(
            str(folder / "scenes" / f"{tile}.json"),
            settings or ImageryConfig(paths=["unused"]),
            str(out[tile]),
            str(folder / f"{tile}.count.tif"),
        )
    return out


def test_metadata_fields(tmp_path: Path) -> None:
    product = make_safe(tmp_path, baseline="04.00", offset=-1000, bands=["B02"])
    values = parse_metadata(product / "MTD_MSIL1C.xml")
    assert values["date"] == "2017-02-16" and values["baseline"] == "04.00" and values["cloud"] == 12.5
    assert values["offsets"]["B02"] == -1000 and values["offsets"]["B12"] == -1000 and values["quantification"] == 10000


def test_offset_products_give_equal_reflectance(tmp_path: Path) -> None:
    """A pre-04.00 product and a post-04.00 one (DN + 1000, offset −1000) of the same bands stage identically."""
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    staged = {}
    for name, baseline, offset in (("old", "02.04", None), ("new", "04.00", -1000)):
        make_safe(tmp_path / name, baseline=baseline, offset=offset, bands=BANDS)
        inventory = build_inventory([str(tmp_path / name / "*.SAFE")], BANDS, grid)
        assert inventory["scenes"][0]["offsets"]["B02"] == (offset or 0)
        staged[name] = stage_all(inventory, tmp_path / f"out_{name}")["E332N5816"]
    with rasterio.open(staged["old"]) as old, rasterio.open(staged["new"]) as new:
        np.testing.assert_array_equal(old.read(), new.read())
        values = old.read(1)
    with rasterio.open(DEMO / "IMG_DATA" / "T33UUU_20170216T102101_B02.jp2") as source:
        np.testing.assert_array_equal(values, source.read(1, window=((404, 604), (200, 400))))


def test_l2a_scl_masks_clouds(tmp_path: Path) -> None:
    """Pixels whose SCL class is cloud (9) or shadow (3) are dropped; vegetation (4) is kept."""
    scl = np.full((384, 768), 4, dtype=np.uint8)
    scl[202:252, 100:150] = 9  # 20 m pixels → 10 m rows 404..503, columns 200..299 of the scene
    scl[252:262, 100:150] = 3
    make_safe(tmp_path, level="L2A", baseline="02.04", bands=BANDS, scl=scl)
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    inventory = build_inventory([str(tmp_path / "*.SAFE")], BANDS, grid)
    assert inventory["scenes"][0]["scl"].endswith("_SCL_20m.jp2") and inventory["scenes"][0]["level"] == "L2A"
    path = stage_all(inventory, tmp_path / "out")["E332N5816"]
    with rasterio.open(path) as staged:
        image = staged.read(1)
    # The tile starts at scene row 404, column 200: rows 0..119 and columns 0..99 of the tile are masked.
    assert (image[:120, :100] == 0).all()
    assert (image[120:, :] > 0).all() and (image[:, 100:] > 0).all()


def test_max_cloud_drops_cloudy_products(tmp_path: Path) -> None:
    make_safe(tmp_path, cloud=80.0, bands=BANDS)
    with pytest.raises(InputError, match=r"the 1 scene\(s\) found .* more cloud than imagery.max_cloud 50"):
        build_inventory([str(tmp_path / "*.SAFE")], BANDS, TargetGrid(), max_cloud=50)


def test_two_utm_zones_on_one_grid(tmp_path: Path) -> None:
    """Barbellino (UTM 32N, L2A stack + SCL) and Brandenburg (UTM 33N, L1C JP2) stage onto one EPSG:3035 grid."""
    grid = TargetGrid("EPSG:3035", 10.0, 1000.0)
    bands = ["B02", "B03", "B04", "B08", "B11", "B12"]
    inventory = build_inventory(
        [str(BARBELLINO / "S2A2A_20170703_022_Barbellino_BOA_10.tif"), str(DEMO / "IMG_DATA" / "*.jp2")],
        bands,
        grid,
        stack_bands=L2A_BANDS,
    )
    crs = {scene["scene_id"]: scene for scene in inventory["scenes"]}
    assert set(crs) == {"S2A2A_20170703_022_Barbellino_BOA_10", "T33UUU_20170216T102101"}
    assert crs["S2A2A_20170703_022_Barbellino_BOA_10"]["scl"].endswith("_SCL_10.tif")
    alpine = [tile for tile in inventory["tiles"] if "S2A2A_20170703_022_Barbellino_BOA_10" in inventory["tiles"][tile]]
    paths = stage_all({**inventory, "tiles": {tile: inventory["tiles"][tile] for tile in alpine}}, tmp_path)
    with rasterio.open(BARBELLINO / "S2A2A_20170703_022_Barbellino_BOA_10.tif") as source:
        boa, boa_transform = source.read(2).astype(float), source.transform  # B02
    with rasterio.open(BARBELLINO / "S2A2A_20170703_022_Barbellino_SCL_10.tif") as source:
        scl = source.read(1)
    to_utm = Transformer.from_crs("EPSG:3035", "EPSG:32632", always_xy=True)
    checked = 0
    for path in paths.values():
        with rasterio.open(path) as staged:
            assert staged.crs.to_epsg() == 3035 and staged.transform.c % 1000 == 0 and staged.transform.f % 1000 == 0
            image, transform = staged.read(1), staged.transform
        for row, column in zip(*np.nonzero(image), strict=True):
            x, y = to_utm.transform(transform.c + (column + 0.5) * 10, transform.f - (row + 0.5) * 10)
            source_column, source_row = (x - boa_transform.c) / 10 - 0.5, (boa_transform.f - y) / 10 - 0.5
            r0, c0 = int(np.floor(source_row)), int(np.floor(source_column))
            neighbours = boa[max(r0, 0) : r0 + 2, max(c0, 0) : c0 + 2]
            # Bilinear: the staged value lies between its four source neighbours.
            assert neighbours.min() - 1 <= image[row, column] <= neighbours.max() + 1
            # Never a cloudy pixel: SCL (20 m) at that place is not 8/9.
            assert scl[min(int((boa_transform.f - y) // 20), 20), min(int((x - boa_transform.c) // 20), 11)] not in (
                8,
                9,
            )
            checked += 1
    assert checked > 500


def test_s2cloudless_masks_the_bright_clouds_of_the_l1c_scene(tmp_path: Path) -> None:
    """The real Brandenburg L1C scene has clouds: s2cloudless (160 m) removes bright pixels, and only where it says."""
    from s2ecosg.stage.clouds import cloud_mask, rows_at_full_resolution
    from s2ecosg.stage.scenes import Scene

    grid = TargetGrid()
    inventory = build_inventory([str(DEMO / "IMG_DATA" / "*.jp2")], ["B02", "B03", "B04"], grid)
    scene = inventory["scenes"][0]
    assert sorted(scene["cloud_bands"]) == sorted(
        ["B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]
    )
    tiles = {"E4490N3260": inventory["tiles"]["E4490N3260"]}
    masked_run = stage_all({**inventory, "tiles": tiles}, tmp_path / "auto")["E4490N3260"]
    clear_run = stage_all(
        {**inventory, "tiles": tiles}, tmp_path / "none", ImageryConfig(paths=["x"], cloud_mask="none")
    )["E4490N3260"]
    with rasterio.open(masked_run) as masked_file, rasterio.open(clear_run) as clear_file:
        masked, everything = masked_file.read(1).astype(float), clear_file.read(1).astype(float)
    removed = (masked == 0) & (everything > 0)
    assert 0.02 < removed.sum() / (everything > 0).sum() < 0.4
    assert everything[removed].mean() > 1.15 * everything[masked > 0].mean()  # clouds are bright in B02
    assert np.array_equal(masked[masked > 0], everything[masked > 0])
    expected = rows_at_full_resolution(
        cloud_mask(Scene(**scene), grid.tile_transform("E4490N3260"), grid.tile_size, grid.crs), 0, 1000, 1000, 10.0
    )
    np.testing.assert_array_equal(removed, expected & (everything > 0))


def test_scene_outside_the_aoi_is_dropped() -> None:
    """With an AOI around Brandenburg, the Alpine scene is left out of the inventory; the German one stays."""
    inventory = build_inventory(
        [str(BARBELLINO / "S2A2A_20170703_022_Barbellino_BOA_10.tif"), str(DEMO / "IMG_DATA" / "*.jp2")],
        ["B02", "B03"],
        TargetGrid(),
        stack_bands=L2A_BANDS,
        aoi=(12.5, 52.4, 12.8, 52.6),
    )
    assert [scene["scene_id"] for scene in inventory["scenes"]] == ["T33UUU_20170216T102101"]


def zipped(product: Path, target: Path, skip: str | None = None) -> Path:
    """The product folder as CDSE delivers it: ``<name>.SAFE.zip`` holding ``<name>.SAFE/…``, members stored."""
    import zipfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(product.rglob("*")):
            if path.is_file() and not (skip and skip in path.name):
                archive.write(path, str(path.relative_to(product.parent)))
    return target


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_a_zipped_product_stages_bit_identically_to_the_folder(tmp_path: Path, level: str) -> None:
    scl = np.full((384, 768), 4, dtype=np.uint8)
    scl[202:252, 100:150] = 9
    product = make_safe(
        tmp_path / "folder",
        level=level,
        baseline="04.00",
        offset=-1000,
        bands=BANDS,
        scl=scl if level == "L2A" else None,
    )
    archive = zipped(product, tmp_path / "zip" / f"{product.name}.zip")
    product_files = sorted(path.name for path in product.rglob("*.jp2"))
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    staged = {}
    for name, pattern in (("folder", str(tmp_path / "folder" / "*.SAFE")), ("zip", str(tmp_path / "zip" / "*.zip"))):
        inventory = build_inventory([pattern], BANDS, grid)
        scene = inventory["scenes"][0]
        assert scene["date"] == "2017-02-16" and scene["baseline"] == "04.00" and scene["offsets"]["B04"] == -1000
        assert scene["scene_id"] == product.name.removesuffix(".SAFE") and scene["level"] == level
        staged[name] = stage_all(inventory, tmp_path / f"out_{name}")["E332N5816"]
    assert all(path.startswith(f"/vsizip/{archive.resolve()}/") for path, _ in scene["bands"].values())
    assert set(scene["stamps"]) and all(
        stamp == list(map(int, [archive.stat().st_size, archive.stat().st_mtime_ns]))
        for stamp in scene["stamps"].values()
    )
    assert len(product_files) == len(BANDS) + (level == "L2A")
    for suffix in (".tif", ".count.tif"):  # the composite and the observation counts, pixel for pixel
        with (
            rasterio.open(tmp_path / "out_folder" / f"E332N5816{suffix}") as folder,
            rasterio.open(tmp_path / "out_zip" / f"E332N5816{suffix}") as zipped_product,
        ):
            np.testing.assert_array_equal(folder.read(), zipped_product.read())


def test_a_truncated_zip_and_a_zip_without_a_band_are_one_line(tmp_path: Path) -> None:
    product = make_safe(tmp_path / "folder", bands=BANDS)
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    truncated = zipped(product, tmp_path / "bad" / f"{product.name}.zip")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"{truncated.name}: not a readable zip archive .*truncated or not a zip"):
        build_inventory([str(truncated)], BANDS, grid)
    lacking = zipped(product, tmp_path / "lacking" / f"{product.name}.zip", skip="_B04")
    with pytest.raises(InputError, match=rf"{lacking.name}: scene .* is missing band B04 \(no \*_B04\*\.jp2\)"):
        build_inventory([str(lacking)], BANDS, grid)


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_an_eopf_zarr_product_stages_like_the_safe_of_the_same_scene(tmp_path: Path, level: str) -> None:
    from safe_fixture import make_eopf

    scl = np.full((384, 768), 4, dtype=np.uint8)
    scl[202:252, 100:150] = 9
    mask = scl if level == "L2A" else None
    make_safe(tmp_path / "safe", level=level, baseline="04.00", offset=-1000, bands=BANDS, scl=mask)
    product = make_eopf(tmp_path / "eopf", level=level, bands=BANDS, scl=mask)
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    staged = {}
    for name, pattern in (("safe", tmp_path / "safe" / "*.SAFE"), ("eopf", tmp_path / "eopf" / "*.zarr")):
        inventory = build_inventory([str(pattern)], BANDS, grid)
        scene = inventory["scenes"][0]
        assert scene["date"] == "2017-02-16" and scene["baseline"] == "04.00" and scene["level"] == level
        assert scene["offsets"]["B02"] == -1000 and scene["gain"] == pytest.approx(1.0)
        assert (scene["scl"] is not None) == (level == "L2A")
        staged[name] = stage_all(inventory, tmp_path / f"out_{name}")["E332N5816"]
    assert scene["bands"]["B02"][0] == f"eopf:{product.resolve()}#measurements/reflectance/r10m/b02"
    with rasterio.open(staged["safe"]) as safe, rasterio.open(staged["eopf"]) as eopf:
        difference = np.abs(safe.read().astype(np.int64) - eopf.read().astype(np.int64))
        assert difference.max() <= 1 and (safe.read() > 0).mean() > 0.5  # the offsets' rounding at most


def test_an_eopf_product_without_a_band_is_one_line(tmp_path: Path) -> None:
    from safe_fixture import make_eopf

    product = make_eopf(tmp_path, level="L1C", bands=["B02", "B03", "B08"])
    with pytest.raises(InputError, match=rf"{product.name}: scene .* is missing band B04"):
        build_inventory([str(tmp_path / "*.zarr")], ["B02", "B03", "B04"], TargetGrid("EPSG:32633", 10.0, 2000.0))


def test_folders_zips_and_zarr_of_one_tile_composite_together(tmp_path: Path) -> None:
    """Three acquisitions of the same tile, one per archive layout, give one scene list and their median."""
    from safe_fixture import make_eopf

    bands = ["B02", "B04"]
    make_safe(tmp_path / "archive", bands=bands, baseline="04.00", offset=-1000, date="2017-02-16", shift=0)
    middle = make_safe(tmp_path / "zipping", bands=bands, baseline="04.00", offset=-1000, date="2017-03-18", shift=200)
    zipped(middle, tmp_path / "archive" / f"{middle.name}.zip")
    make_eopf(tmp_path / "archive", level="L1C", bands=bands, date="2017-04-17", shift=400)
    grid = TargetGrid("EPSG:32633", 10.0, 2000.0)
    patterns = [str(tmp_path / "archive" / name) for name in ("*.SAFE", "*.zip", "*.zarr")]
    inventory = build_inventory(patterns, bands, grid)
    assert [scene["date"] for scene in inventory["scenes"]] == ["2017-02-16", "2017-03-18", "2017-04-17"]
    together = stage_all(inventory, tmp_path / "together")["E332N5816"]
    alone = stage_all(build_inventory([str(tmp_path / "archive" / "*.zip")], bands, grid), tmp_path / "alone")
    with rasterio.open(together) as staged, rasterio.open(alone["E332N5816"]) as middle_only:
        np.testing.assert_array_equal(staged.read(), middle_only.read())  # the median is the middle acquisition
