"""The one tile reader (footprints.tiles), the glob helper and the reason vocabulary.

Every command reads tile headers through :func:`footprints.tiles.read_header`,
so a bad tile must get the same reason code from ``prepare``, ``segment`` and
``train segmenter``; the tests below build the kinds of tile that arrive from
real orthophoto deliveries (16-bit single-band with nodata, state-plane feet,
a rotated geotransform, a cut-off download) and check exactly that.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import rasterio
from affine import Affine
from raster_fixtures import RES, UTM, X0, Y0, write_footprints, write_geotiff
from rasterio.transform import from_origin

from footprints.contracts import SegmenterAssets
from footprints.errors import REASONS, Reason
from footprints.files import match_files
from footprints.tiles import (
    TileInfo,
    TileRejected,
    check_for_model,
    crs_text,
    first_crs,
    read_header,
    readable_headers,
)

#: Texas Central, NAD83, US survey feet: a common county-orthophoto CRS.
STATE_PLANE_FEET = "EPSG:2277"
GRAY16 = SegmenterAssets(
    window_size=64, bands=(1,), raw_dtype="uint16", offset=(0.0,), scale=(0.0625,)
)


def _gray16(path, nodata=0, size=96, seed=1) -> str:
    """A 16-bit single-band tile (12-bit sensor values) with a nodata corner."""
    data = np.random.default_rng(seed).integers(1, 4096, (1, size, size)).astype(np.uint16)
    data[:, : size // 4, : size // 4] = nodata
    return write_geotiff(path, data, transform=from_origin(X0, Y0, RES, RES), nodata=nodata)


def _cut(path, folder) -> str:
    """The first half of a complete tile, as a broken download leaves it."""
    raw = open(_gray16(os.path.join(folder, "whole.tmp")), "rb").read()
    os.remove(os.path.join(folder, "whole.tmp"))
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    return str(path)


def _no_crs(path, folder) -> str:
    return write_geotiff(
        path, np.ones((1, 40, 40), np.uint16), crs=None, transform=Affine.identity()
    )


def _rotated(path, folder) -> str:
    # A 5-degree rotation, as a scanned and georeferenced aerial photo has.
    transform = Affine.translation(X0, Y0) * Affine.rotation(5) * Affine.scale(RES, -RES)
    return write_geotiff(path, np.ones((1, 40, 40), np.uint16), transform=transform)


def _south_up(path, folder) -> str:
    return write_geotiff(
        path, np.ones((1, 40, 40), np.uint16), transform=Affine(RES, 0, X0, 0, RES, Y0)
    )


def _not_a_raster(path, folder) -> str:
    with open(path, "w") as f:
        f.write("<html>403 Forbidden</html>")  # what a failed signed-URL download saves
    return str(path)


#: Bad tile -> the reason every command gives it.
BAD_TILES = {
    "cut.tif": (_cut, Reason.TRUNCATED),
    "nocrs.tif": (_no_crs, Reason.NO_CRS),
    "rotated.tif": (_rotated, Reason.NOT_NORTH_UP),
    "southup.tif": (_south_up, Reason.NOT_NORTH_UP),
    "junk.tif": (_not_a_raster, Reason.UNREADABLE),
}


@pytest.fixture
def bad_area(tmp_path):
    """A folder of one good 16-bit tile and one tile of each bad kind."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    _gray16(folder / "good.tif")
    for name, (make, _) in BAD_TILES.items():
        make(str(folder / name), str(folder))
    return folder


# --------------------------------------------------------------------------
# The header check
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD_TILES))
def test_header_check_gives_one_reason_with_a_fix(tmp_path, name):
    make, reason = BAD_TILES[name]
    path = make(str(tmp_path / name), str(tmp_path))
    with pytest.raises(TileRejected) as caught:
        read_header(path)
    assert caught.value.reason == reason
    assert repr(path) in str(caught.value)
    assert any(w in str(caught.value) for w in ("`", "pass ", "copy ", "convert"))
    error = caught.value.to_error(path, "read_raster", record="x")
    assert (error.source, error.stage, error.error) == (path, "read_raster", reason)


def test_sixteen_bit_single_band_with_nodata(tmp_path):
    tile = read_header(_gray16(tmp_path / "gray.tif", nodata=0))
    assert (tile.count, tile.dtype, tile.nodata, tile.masked) == (1, "uint16", 0.0, True)
    assert (tile.width, tile.height, tile.block_shape, tile.scene) == (96, 96, (64, 64), "gray")
    assert tile.crs == UTM and tile.bounds == (X0, Y0 - 96 * RES, X0 + 96 * RES, Y0)
    check_for_model(tile, GRAY16)  # the 16-bit model takes it
    with pytest.raises(TileRejected) as caught:
        check_for_model(tile, SegmenterAssets.identity(64, 3))
    assert caught.value.reason == Reason.BAND_COUNT
    with pytest.raises(TileRejected) as caught:
        check_for_model(tile, SegmenterAssets.identity(64, 1))
    assert caught.value.reason == Reason.DTYPE


def test_state_plane_feet_tile_and_footprints_get_the_same_crs_text(tmp_path):
    import shapely

    from pipeline.sources.vectors import inspect_vector

    # 0.5 ft pixels near Austin, written as the county delivers it.
    x0, y0 = 3_110_000.0, 10_070_000.0
    data = np.random.default_rng(2).integers(0, 255, (3, 80, 80)).astype(np.uint8)
    path = write_geotiff(
        tmp_path / "austin.tif", data, crs=STATE_PLANE_FEET, transform=from_origin(x0, y0, 0.5, 0.5)
    )
    tile = read_header(path)
    assert tile.crs == STATE_PLANE_FEET and tile.resolution == (0.5, 0.5) and not tile.masked
    # The same CRS given as bare WKT (no authority code) reads back as the same text.
    with rasterio.open(path, "r+") as dst:
        dst.crs = rasterio.crs.CRS.from_wkt(
            re.sub(r',?\s*ID\["EPSG",\d+\]', "", dst.crs.to_wkt("WKT2_2019"))
        )
    assert read_header(path).crs == STATE_PLANE_FEET
    vector = write_footprints(
        tmp_path / "fp.gpkg",
        [shapely.box(x0 + 5, y0 - 20, x0 + 15, y0 - 10)],
        ["a"],
        crs=STATE_PLANE_FEET,
    )
    assert inspect_vector(vector, "id", None, None).crs == tile.crs == crs_text(STATE_PLANE_FEET)
    assert crs_text(rasterio.crs.CRS.from_epsg(2277)) == crs_text("EPSG:2277") == STATE_PLANE_FEET


def test_mixed_band_types_are_one_dtype_rejection(tmp_path):
    path = str(tmp_path / "mixed.vrt")
    a = _gray16(tmp_path / "a.tif")
    b = write_geotiff(
        tmp_path / "b.tif", np.ones((1, 96, 96), np.uint8), transform=from_origin(X0, Y0, RES, RES)
    )
    bands = "".join(
        f'<VRTRasterBand dataType="{t}" band="{i}"><SimpleSource><SourceFilename>{f}'
        "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (t, f) in enumerate([("UInt16", a), ("Byte", b)], start=1)
    )
    with rasterio.open(a) as src:
        srs, gt = src.crs.to_wkt(), ",".join(map(str, src.transform.to_gdal()))
    with open(path, "w") as f:
        f.write(
            f'<VRTDataset rasterXSize="96" rasterYSize="96"><SRS>{srs}</SRS>'
            f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
        )
    with pytest.raises(TileRejected) as caught:
        read_header(path)
    assert caught.value.reason == Reason.DTYPE


def test_headers_for_decisions_before_the_job_skip_bad_tiles(bad_area):
    paths = match_files(str(bad_area / "*.tif"))
    assert [os.path.basename(t.path) for t in readable_headers(paths)] == ["good.tif"]
    assert first_crs(paths) == UTM
    assert first_crs([str(bad_area / "junk.tif")]) is None


def test_tile_info_fills_its_scene_from_the_path():
    tile = TileInfo("gs://b/area/t_0_1.tif", UTM, (RES, 0, X0, 0, -RES, Y0), 10, 20, 3, "uint8")
    assert tile.scene == "t_0_1" and tile.box.bounds == (X0, Y0 - 20 * RES, X0 + 10 * RES, Y0)


# --------------------------------------------------------------------------
# Same tile, same reason, in every command
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_segment_and_train_give_a_bad_tile_the_same_reason(bad_area):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from model_training.segmentation_data import inspect_images
    from pipeline.sources.rasters import ERRORS, MatchTiles, ReadTiles, ValidateTiles

    pattern = str(bad_area / "*.tif")
    expected = sorted((name, reason) for name, (_, reason) in BAD_TILES.items())

    def named(errors, label):
        return errors | label >> beam.Map(lambda e: (os.path.basename(e.source), e.error))

    with TestPipeline() as p:
        prepared = p | "Prepare" >> ReadTiles(pattern)
        matched = p | "Match" >> MatchTiles(pattern)
        segmented = matched.paths | "Segment" >> ValidateTiles(GRAY16)
        assert_that(
            named(prepared[ERRORS], "PrepareNamed"), equal_to(expected), label="PrepareReasons"
        )
        assert_that(
            named(segmented[ERRORS], "SegmentNamed"), equal_to(expected), label="SegmentReasons"
        )
        good = ("good.tif", "uint16", 1)
        for label, tiles in (("Prepare", prepared.tiles), ("Segment", segmented.tiles)):
            assert_that(
                tiles
                | f"{label}Good"
                >> beam.Map(lambda t: (os.path.basename(t.path), t.dtype, t.count)),
                equal_to([good]),
                label=f"{label}Tiles",
            )
    for name, (_, reason) in BAD_TILES.items():
        with pytest.raises(TileRejected) as caught:
            inspect_images((str(bad_area / "good.tif"), str(bad_area / name)), None)
        assert caught.value.reason == reason, name


# --------------------------------------------------------------------------
# Globs
# --------------------------------------------------------------------------


def test_match_files_lists_sorted_files_and_nothing_for_a_missing_folder(tmp_path):
    for rel in ("b.tif", "a.tif", "notes.txt", "sub/c.tif"):
        os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert match_files(str(tmp_path / "*.tif")) == [
        str(tmp_path / "a.tif"),
        str(tmp_path / "b.tif"),
    ]
    assert match_files(str(tmp_path / "**.tif"))[-1] == str(tmp_path / "sub" / "c.tif")
    assert match_files(str(tmp_path / "a.tif")) == [str(tmp_path / "a.tif")]
    assert match_files(str(tmp_path / "missing" / "*.tif")) == []
    assert match_files(str(tmp_path / "*.jp2")) == []


# --------------------------------------------------------------------------
# The reason vocabulary is the documented one
# --------------------------------------------------------------------------


def test_every_reason_is_a_constant_with_a_meaning_and_documented():
    constants = set(Reason)
    assert constants == set(REASONS)
    assert all(REASONS[r] for r in constants)
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "contracts.md")).read()
    section = docs.split("### Reasons in `errors/`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(REASONS)
