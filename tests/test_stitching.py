"""Window planning, stitching, COG and VRT writing, polygonizing: plain functions, no Beam."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from raster_fixtures import write_geotiff
from rasterio.transform import from_origin
from shapely.geometry import box

from footprints.tiles import TileInfo, scene_of
from pipeline.evaluation import mask_iou
from pipeline.keys import TileKey, TileKeyCoder, WindowKey, WindowKeyCoder
from pipeline.polygonize import area_m2, finish, merge_parts, polygonize_tile
from pipeline.stitching.cog import write_mask_cog
from pipeline.stitching.stitch import StitchError, stitch_tile
from pipeline.stitching.vrt import MaskEntry, group_by_crs, write_mosaics
from pipeline.values import CorePrediction, TileMask, binary_mask, quantize
from pipeline.windows import (
    Box,
    count_windows,
    cut_and_pad,
    plan_axis,
    plan_windows,
    read_box,
)

UTM = "EPSG:32615"


def tile_info(
    height,
    width,
    *,
    crs=UTM,
    transform=(0.5, 0, 500000.0, 0, -0.5, 4200000.0),
    scene="t",
    masked=False,
):
    return TileInfo(
        path=f"/in/{scene}.tif",
        scene=scene,
        height=height,
        width=width,
        count=3,
        crs=crs,
        transform=transform,
        block_shape=(64, 64),
        masked=masked,
        dtype="uint8",
    )


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


@given(
    st.text(min_size=1).filter(lambda s: "/" not in s),
    st.integers(-(2**40), 2**40),
    st.integers(-(2**40), 2**40),
    st.integers(1, 2**20),
)
def test_window_key_coder_round_trips_deterministically(scene, row, col, size):
    key = WindowKey(scene, row, col, size)
    coder = WindowKeyCoder()
    encoded = coder.encode(key)
    assert coder.decode(encoded) == key
    assert coder.encode(WindowKey(scene, row, col, size)) == encoded
    assert TileKeyCoder().decode(TileKeyCoder().encode(key.tile)) == TileKey(scene)


def test_keys_use_their_registered_deterministic_coders():
    assert isinstance(beam.coders.registry.get_coder(TileKey), TileKeyCoder)
    assert isinstance(beam.coders.registry.get_coder(WindowKey), WindowKeyCoder)
    assert beam.coders.registry.get_coder(TileKey).is_deterministic()
    assert str(WindowKey("a", -3, 4, 64)) == "a@r-3c4s64"
    assert scene_of("gs://bucket/area/tile_r0_c1.tif") == "tile_r0_c1"
    with pytest.raises(ValueError):
        TileKey("a/b")


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 700), st.integers(8, 128), st.data())
def test_plan_axis_cores_partition_the_axis_with_enough_context(extent, size, data):
    halo = data.draw(st.integers(0, (size - 1) // 2))
    plan = plan_axis(extent, size, halo)
    # Cores are contiguous, in order, and cover [0, extent) exactly once.
    assert plan[0].core_start == 0 and plan[-1].core_stop == extent
    for before, after in zip(plan, plan[1:], strict=False):
        assert before.core_stop == after.core_start
        assert before.start < after.start  # distinct windows: unique keys
    for w in plan:
        assert w.start <= w.core_start < w.core_stop <= w.start + size
        # Real context before and after the core, or the tile edge.
        assert w.core_start - w.start >= halo or w.start <= 0
        assert w.start + size - w.core_stop >= halo or w.start + size >= extent
        # Windows hang over the tile only when the tile is smaller than one.
        if extent >= size:
            assert 0 <= w.start and w.start + size <= extent


def test_plan_windows_examples():
    assert [(w.start, w.core_start, w.core_stop) for w in plan_axis(100, 64, 16)] == [
        (0, 0, 32),
        (16, 32, 64),
        (36, 64, 100),
    ]
    plans = plan_windows("t", 100, 40, 64, 16)
    assert len(plans) == 3 == count_windows(100, 40, 64, 16)
    assert {p.key.col for p in plans} == {-24}
    # A tile smaller than a window is one window: its core is the whole tile.
    (only,) = plan_windows("s", 30, 20, 64, 8)
    assert only.core == Box(0, 0, 30, 20) and only.window.contains(only.core)
    with pytest.raises(ValueError):
        plan_axis(100, 16, 8)  # no core left


def test_read_box_is_block_aligned_inside_the_tile():
    window = Box(-16, 40, 64, 64)
    got = read_box(window, 200, 150, (32, 32))
    assert got == Box(0, 32, 64, 96)  # rows 0..48 -> 0..64, cols 40..104 -> 32..128
    assert got.contains(window.intersect(Box(0, 0, 200, 150)))
    # Striped: rows align to strips, but a whole-width strip is not read whole.
    striped = read_box(Box(10, 10, 64, 64), 200, 150, (4, 150))
    assert striped == Box(8, 10, 68, 64)


def test_cut_and_pad_pads_only_outside_the_tile():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (50, 40, 3)).astype(np.uint8)
    window = Box(-5, 30, 20, 20)
    at = read_box(window, 50, 40, (16, 16))
    read = tile[at.row : at.bottom, at.col : at.right]
    out = cut_and_pad(read, at, window, 50, 40)
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out[5:, :10], tile[0:15, 30:40])
    # The part inside the tile, mirrored over the edges it hangs across.
    reference = np.pad(tile[0:15, 30:40], ((5, 0), (0, 10), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(out, reference)
    mask = cut_and_pad(
        np.ones((at.height, at.width), bool),
        at,
        window,
        50,
        40,
        mode="constant",
        constant_values=False,
    )
    assert mask[5:, :10].all() and not mask[:5].any() and not mask[:, 10:].any()


# --------------------------------------------------------------------------
# Stitching
# --------------------------------------------------------------------------


def _fake_predictions(tile, size, halo, truth):
    """Predictions whose core pixels equal ``truth`` at the tile pixel they stand for."""
    out = []
    for plan in plan_windows(tile.scene, tile.height, tile.width, size, halo):
        window = plan.window
        full = np.zeros((size, size), np.float32)
        inside = window.intersect(Box(0, 0, tile.height, tile.width))
        full[inside.slices_in(window)] = truth[
            inside.row : inside.bottom, inside.col : inside.right
        ]
        out.append(CorePrediction.inferred(plan, full, None))
    return out


def test_stitch_places_every_core_in_any_order():
    tile = tile_info(90, 70)
    truth = np.random.default_rng(1).random((90, 70)).astype(np.float32)
    parts = _fake_predictions(tile, 32, 6, truth)[::-1]
    mask = stitch_tile(tile, parts, 32, 6)
    np.testing.assert_array_equal(mask.probability, quantize(truth))
    assert mask.valid is None and mask.windows == {
        "inferred": len(parts),
        "nodata": 0,
        "failed": 0,
        "empty": 0,
    }
    with pytest.raises(StitchError, match="planned"):
        stitch_tile(tile, parts[1:], 32, 6)
    with pytest.raises(StitchError, match="twice"):
        stitch_tile(tile, parts + parts[:1], 32, 6)


def test_stitch_marks_windows_not_inferred_invalid():
    tile = tile_info(40, 40)
    plans = plan_windows("t", 40, 40, 32, 4)
    parts = [CorePrediction.missing(plans[0], "nodata")]
    parts += [CorePrediction.inferred(p, np.ones((32, 32), np.float32), None) for p in plans[1:]]
    mask = stitch_tile(tile, parts, 32, 4)
    core = plans[0].core
    assert not mask.valid[core.row : core.bottom, core.col : core.right].any()
    assert mask.probability[core.row : core.bottom, core.col : core.right].max() == 0
    assert mask.valid.sum() == 40 * 40 - core.height * core.width
    assert not mask.skipped
    assert stitch_tile(tile, [CorePrediction.missing(p, "nodata") for p in plans], 32, 4).skipped


def test_quantize_and_threshold_agree():
    p = np.array([0.0, 0.25, 0.4999, 0.5, 0.5001, 1.0, 1.7, -1.0], np.float32)
    q = quantize(p)
    assert q.tolist() == [0, 64, 127, 128, 128, 255, 255, 0]
    assert binary_mask(q, 0.5).tolist() == [0, 0, 0, 1, 1, 1, 1, 0]


# --------------------------------------------------------------------------
# COG and VRT
# --------------------------------------------------------------------------


def _mask(tile, seed=0, valid=None):
    prob = np.random.default_rng(seed).integers(0, 256, (tile.height, tile.width)).astype(np.uint8)
    if valid is not None:
        prob[~valid] = 0
    return TileMask(tile, prob, valid, {"inferred": 1})


def test_mask_is_a_valid_cog_on_the_tile_grid_and_rewrites_atomically(tmp_path):
    tile = tile_info(1100, 1030)
    valid = np.ones((1100, 1030), bool)
    valid[:, :100] = False
    mask = _mask(tile, valid=valid)
    path = str(tmp_path / "masks" / "t.tif")
    write_mask_cog(path, mask, threshold=0.5)
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        assert src.overviews(1), "a COG larger than a block has overviews"
        assert src.crs.to_string() == UTM and tuple(src.transform)[:6] == tile.transform
        assert src.shape == (1100, 1030) and src.count == 2
        assert src.descriptions == ("building_probability", "building")
        np.testing.assert_array_equal(src.read(1), mask.probability)
        np.testing.assert_array_equal(src.read(2), binary_mask(mask.probability, 0.5))
        np.testing.assert_array_equal(src.read_masks(1) > 0, valid)
    # A rerun replaces the file and leaves no temporary behind.
    write_mask_cog(path, _mask(tile, seed=5), threshold=None)
    assert os.listdir(tmp_path / "masks") == ["t.tif"]
    with rasterio.open(path) as src:
        assert src.count == 1 and (src.read_masks(1) == 255).all()


def test_mosaic_vrt_reads_back_every_mask_in_place(tmp_path):
    a = tile_info(60, 80, scene="a")
    b = tile_info(60, 50, scene="b", transform=(0.5, 0, 500040.0, 0, -0.5, 4200000.0))
    geo = tile_info(30, 30, scene="g", crs="EPSG:4326", transform=(1e-5, 0, -93.0, 0, -1e-5, 45.0))
    valid = np.ones((60, 80), bool)
    valid[:10] = False
    masks = {"a": _mask(a, 1, valid), "b": _mask(b, 2), "g": _mask(geo, 3)}
    entries = []
    for scene, m in masks.items():
        path = write_mask_cog(str(tmp_path / f"{scene}.tif"), m)
        entries.append(
            MaskEntry(
                path,
                m.tile.crs,
                m.tile.transform,
                m.tile.width,
                m.tile.height,
                1,
                m.valid is not None,
            )
        )
    assert list(group_by_crs(entries)) == ["mosaic.vrt", "mosaic-EPSG_4326.vrt"]
    mosaic, geo_vrt = write_mosaics(entries, str(tmp_path), ["building_probability"])
    with rasterio.open(mosaic) as src:
        assert src.crs.to_string() == UTM and src.shape == (60, 130)
        assert src.bounds.left == 500000.0 and src.bounds.right == 500065.0
        data, valid_read = src.read(1), src.read_masks(1) > 0
    np.testing.assert_array_equal(data[:, :80], masks["a"].probability)
    np.testing.assert_array_equal(data[:, 80:], masks["b"].probability)
    np.testing.assert_array_equal(valid_read[:, :80], valid)
    assert valid_read[:, 80:].all()
    with rasterio.open(geo_vrt) as src:
        assert src.crs.to_string() == "EPSG:4326"
        assert src.bounds.left == pytest.approx(-93.0) and src.bounds.top == pytest.approx(45.0)
        np.testing.assert_array_equal(src.read(1), masks["g"].probability)


def test_mosaic_vrt_is_one_gray_probability_band_read_as_the_cogs_read(tmp_path):
    # Issue 23: the mosaic's band had scale 1 (readers got 0..255), no colour
    # interpretation, and a --binary-mask run's second band; QGIS then drew
    # it with a multiband renderer. Each COG here has both bands.
    a = tile_info(40, 50, scene="a")
    valid = np.ones((40, 50), bool)
    valid[:5] = False
    mask = _mask(a, 4, valid)
    path = write_mask_cog(str(tmp_path / "a.tif"), mask, threshold=0.5)
    entry = MaskEntry(path, a.crs, a.transform, a.width, a.height, 2, True)
    (mosaic,) = write_mosaics([entry], str(tmp_path), ["building_probability", "building"])
    with rasterio.open(path) as cog, rasterio.open(mosaic) as src:
        assert cog.count == 2 and src.count == 1
        assert src.scales == cog.scales[:1] == (1 / 255,) and src.offsets == (0.0,)
        assert src.colorinterp == (rasterio.enums.ColorInterp.gray,)
        assert src.descriptions == ("building_probability",)
        assert src.mask_flag_enums == ([rasterio.enums.MaskFlags.per_dataset],)
        probability = src.read(1, masked=True) * src.scales[0] + src.offsets[0]
    expected = np.ma.masked_array(mask.probability / 255.0, ~valid)
    np.testing.assert_allclose(probability.filled(-1), expected.filled(-1))


# --------------------------------------------------------------------------
# Polygons
# --------------------------------------------------------------------------


def test_polygonize_keeps_holes_and_mean_probability():
    tile = tile_info(40, 40)
    prob = np.zeros((40, 40), np.uint8)
    prob[5:25, 5:25] = 200
    prob[12:18, 12:18] = 0  # a courtyard
    prob[30:35, 30:35] = 255
    parts = polygonize_tile(prob, None, tile.affine, 0.5, "t", UTM)
    assert len(parts) == 2 and not any(p.on_edge for p in parts)
    ring = next(p for p in parts if p.pixels == 400 - 36)
    assert len(ring.geometry.interiors) == 1
    assert ring.geometry.area == pytest.approx((400 - 36) * 0.25)
    assert ring.mean_probability == pytest.approx(200 / 255)
    row = finish(ring, simplify_pixels=1.0, min_area_m2=0, output_crs=UTM)
    assert shapely.from_wkb(row["geometry"]).interiors
    assert row["area_m2"] == pytest.approx(91.0)
    # Invalid (nodata) pixels are never buildings; the threshold is inclusive.
    valid = np.ones((40, 40), bool)
    valid[:, :30] = False
    assert [p.pixels for p in polygonize_tile(prob, valid, tile.affine, 1.0, "t", UTM)] == [25]


def test_buildings_cut_by_tile_edges_merge_into_one():
    left = tile_info(20, 20, scene="l")
    right = tile_info(20, 20, scene="r", transform=(0.5, 0, 500010.0, 0, -0.5, 4200000.0))
    below = tile_info(20, 20, scene="b", transform=(0.5, 0, 500000.0, 0, -0.5, 4199990.0))
    pl = np.zeros((20, 20), np.uint8)
    pl[5:10, 15:20] = 255  # touches l's right edge
    pl[15:20, 2:5] = 255  # touches l's bottom edge; meets b's part at one corner only
    pr = np.zeros((20, 20), np.uint8)
    pr[5:10, 0:8] = 128
    pb = np.zeros((20, 20), np.uint8)
    pb[0:4, 5:9] = 255  # touches b's top edge but only at a corner of l's part
    parts = (
        polygonize_tile(pl, None, left.affine, 0.5, "l", UTM)
        + polygonize_tile(pr, None, right.affine, 0.5, "r", UTM)
        + polygonize_tile(pb, None, below.affine, 0.5, "b", UTM)
    )
    assert all(p.on_edge for p in parts)
    merged = sorted(merge_parts(parts), key=lambda f: f.footprint_id)
    assert len(merged) == 3
    whole = next(f for f in merged if f.pixels == 25 + 40)
    assert whole.geometry.geom_type == "Polygon"
    assert whole.geometry.area == pytest.approx(65 * 0.25)
    assert whole.tile == "r" and whole.footprint_id == "l-000000"
    assert whole.mean_probability == pytest.approx((25 + 40 * 128 / 255) / 65)


def test_min_area_and_geodesic_area():
    geo = box(-93.0, 45.0, -92.9999, 45.0001)  # about 7.9 m x 11.1 m
    assert area_m2(geo, "EPSG:4326") == pytest.approx(87.5, rel=0.02)
    assert area_m2(box(0, 0, 10, 10), "EPSG:2263") == pytest.approx(100 * 0.3048**2, rel=1e-3)
    tile = tile_info(20, 20)
    prob = np.zeros((20, 20), np.uint8)
    prob[2:4, 2:4] = 255  # 1 m2
    (small,) = polygonize_tile(prob, None, tile.affine, 0.5, "t", UTM)
    assert finish(small, 0, min_area_m2=2.0) is None
    assert finish(small, 0, min_area_m2=1.0)["area_m2"] == pytest.approx(1.0)


def test_simplification_removes_pixel_stairs():
    tile = tile_info(60, 60)
    rows, cols = np.mgrid[0:60, 0:60]
    prob = ((cols > rows // 2 + 5) & (cols < 50) & (rows > 5) & (rows < 55)).astype(np.uint8) * 255
    (part,) = polygonize_tile(prob, None, tile.affine, 0.5, "t", UTM)
    raw = finish(part, 0, 0)
    simple = finish(part, 1.0, 0)
    n_raw = len(shapely.from_wkb(raw["geometry"]).exterior.coords)
    n_simple = len(shapely.from_wkb(simple["geometry"]).exterior.coords)
    assert n_simple < n_raw / 4
    assert shapely.from_wkb(simple["geometry"]).area == pytest.approx(part.geometry.area, rel=0.05)


# --------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------


def test_mask_iou_pairs_by_grid_not_name(tmp_path):
    tile = tile_info(10, 10)
    prob = np.zeros((10, 10), np.uint8)
    prob[:, :6] = 255  # 60 predicted
    write_mask_cog(str(tmp_path / "t.tif"), TileMask(tile, prob, None, {}))
    truth = np.zeros((1, 10, 10), np.uint8)
    truth[0, :, 3:] = 1  # 70 true; 30 in both; union 100
    truth_of_t = write_geotiff(
        tmp_path / "truth_of_t.tif", truth, transform=from_origin(500000.0, 4200000.0, 0.5, 0.5)
    )
    elsewhere = write_geotiff(
        tmp_path / "elsewhere.tif", truth, transform=from_origin(100.0, 100.0, 1.0, 1.0)
    )
    got = mask_iou([str(tmp_path / "t.tif")], [truth_of_t, elsewhere])
    assert got["iou"] == pytest.approx(0.3) and got["tiles"] == {"t": pytest.approx(0.3)}
    assert got["unmatched_truths"] == [elsewhere]
    assert got["unmatched_masks"] == []


# --------------------------------------------------------------------------
# Masks by windows: streamed into a file, polygonized by blocks
# --------------------------------------------------------------------------


def test_streamed_cores_make_a_valid_cog_with_overviews_and_no_temporary(tmp_path):
    from pipeline.stitching.cog import MaskFileStitcher

    # 1100 x 1030: larger than a 512-pixel block, so the COG has overviews.
    tile = tile_info(1100, 1030)
    truth = np.random.default_rng(3).random((1100, 1030)).astype(np.float32)
    parts = _fake_predictions(tile, 256, 16, truth)
    parts[2] = CorePrediction.missing(plan_windows("t", 1100, 1030, 256, 16)[2], "nodata")
    folder = tmp_path / "masks"
    stitcher = MaskFileStitcher(tile, 256, 16, str(folder / "t.tif"), 0.5, {"RUN_ID": "r1"})
    for part in parts[::-1]:  # any order
        stitcher.add(part)
    path = stitcher.commit()
    expected = stitch_tile(tile, parts, 256, 16)  # the in-memory stitcher, the oracle
    assert os.listdir(folder) == ["t.tif"] and stitcher.masked
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2, 4] and src.profile["blockxsize"] == 512
        assert src.descriptions == ("building_probability", "building")
        assert src.scales[0] == pytest.approx(1 / 255) and src.tags()["RUN_ID"] == "r1"
        np.testing.assert_array_equal(src.read(1), expected.probability)
        np.testing.assert_array_equal(src.read(2), binary_mask(expected.probability, 0.5))
        np.testing.assert_array_equal(src.read_masks(1) > 0, expected.valid)
        # The overview is the average of the full resolution, masked pixels left out.
        overview = src.read(1, out_shape=(275, 258), masked=True)
    assert abs(float(overview.mean()) - float(expected.probability[expected.valid].mean())) < 1


def test_a_tile_missing_windows_leaves_no_file(tmp_path):
    from pipeline.stitching.cog import MaskFileStitcher

    tile = tile_info(90, 70)
    parts = _fake_predictions(tile, 32, 6, np.zeros((90, 70), np.float32))
    stitcher = MaskFileStitcher(tile, 32, 6, str(tmp_path / "t.tif"))
    for part in parts[1:]:
        stitcher.add(part)
    with pytest.raises(StitchError, match="planned"):
        stitcher.commit()
    assert os.listdir(tmp_path) == []


def _block_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 300 x 260 mask (uint8 probability, validity) with buildings across 64-pixel blocks."""
    prob = np.zeros((300, 260), np.uint8)
    prob[50:80, 40:100] = 200  # crosses the column edge at 64
    prob[100:160, 100:160] = 230  # crosses a block corner (128, 128): four blocks
    prob[120:140, 120:140] = 0  # with a hole on the corner
    prob[180:250, 10:20] = 250  # an L across the row edge at 192 ...
    prob[240:250, 10:80] = 250  # ... and the column edge at 64
    prob[200:210, 200:260] = 180  # on the tile's right edge and across column 256
    prob[63, 190] = prob[64, 191] = 255  # two pixels touching at a corner only: apart
    prob[5:15, 5:15] = 210  # inside one block
    valid = np.ones(prob.shape, bool)
    valid[270:, :] = False
    prob[265:285, 150:170] = 240  # half on invalid pixels
    return prob, valid


@pytest.mark.parametrize("block", [64, 100, 4096])
def test_polygonize_by_blocks_equals_the_whole_tile(tmp_path, block):
    from pipeline.polygonize import polygonize_raster

    tile = tile_info(300, 260)
    prob, valid = _block_scene()
    path = write_mask_cog(str(tmp_path / "t.tif"), TileMask(tile, prob, valid, {}))
    whole = polygonize_tile(prob, valid, tile.affine, 0.5, "t", UTM)
    blocks = list(polygonize_raster(path, 0.5, "t", UTM, tile.affine, block=block))
    assert len(whole) == 8  # the corner-touching pixels are two
    assert len(blocks) == len(whole)

    def key(f):
        return shapely.normalize(f.geometry).wkt

    by_shape = {key(f): f for f in whole}
    for got in blocks:
        want = by_shape[key(got)]  # the same polygon, exactly
        assert shapely.equals_exact(
            shapely.normalize(got.geometry), shapely.normalize(want.geometry), 0
        )
        assert (got.pixels, got.on_edge, got.crs, got.pixel_size) == (
            want.pixels,
            want.on_edge,
            want.crs,
            want.pixel_size,
        )
        assert got.probability_sum == pytest.approx(want.probability_sum, rel=1e-12)
    assert len({f.footprint_id for f in blocks}) == len(blocks)
    (ring,) = [f for f in blocks if f.pixels == 60 * 60 - 20 * 20]
    assert len(ring.geometry.interiors) == 1, "the hole on the block corner survives"
    if block == 4096:  # one block: the ids and order of polygonize_tile
        assert [f.footprint_id for f in blocks] == [f.footprint_id for f in whole]


def test_specks_dropped_while_tracing_are_only_whole_regions_under_the_size(tmp_path):
    """A noisy mask (a weak model's) with nodata, in 64-pixel blocks: specks go, nothing else.

    Every footprint traced with ``speck_pixels`` is one traced without it
    (same polygon, pixels, edges); those missing are exactly the regions
    under the size that touch no block, tile or data edge, and their number
    is what ``dropped`` reports. Blocks away from the nodata drop them before
    tracing (the sieve), the others as they are traced.
    """
    from pipeline.polygonize import polygonize_raster

    rng = np.random.default_rng(3)
    tile = tile_info(300, 260)
    prob = (rng.random((300, 260)) < 0.45).astype(np.uint8) * 255
    prob[100:160, 100:160] = 230  # one building across a block corner
    valid = np.ones(prob.shape, bool)
    valid[270:, :] = False
    path = write_mask_cog(str(tmp_path / "t.tif"), TileMask(tile, prob, valid, {}))
    every = list(polygonize_raster(path, 0.5, "t", UTM, tile.affine, block=64))
    reported: list[int] = []
    kept = list(
        polygonize_raster(
            path, 0.5, "t", UTM, tile.affine, block=64, speck_pixels=5, dropped=reported.append
        )
    )

    def key(f):
        return shapely.normalize(f.geometry).wkb

    by_shape = {key(f): f for f in every}
    assert len(by_shape) == len(every)
    for got in kept:
        want = by_shape.pop(key(got))
        assert (got.pixels, got.on_edge, got.probability_sum) == (
            want.pixels,
            want.on_edge,
            want.probability_sum,
        )
    gone = list(by_shape.values())
    assert sum(reported) == len(gone) > 1000
    assert all(f.pixels < 5 and not f.on_edge for f in gone)
    # Small regions on a block edge (merged first), the tile's edge or the data's stay.
    assert any(f.pixels < 5 and f.on_edge for f in kept)
    small_inner = [f for f in kept if f.pixels < 5 and not f.on_edge]
    assert small_inner, "regions merged across block edges are never dropped as specks"
    # --min-area inf: every whole region goes, the others stay.
    edges_only = list(
        polygonize_raster(path, 0.5, "t", UTM, tile.affine, block=64, speck_pixels=float("inf"))
    )
    inverse, traced = ~tile.affine, {key(g) for g in every}
    for f in edges_only:
        assert key(f) in traced
        x0, y0, x1, y1 = f.geometry.bounds
        cols = sorted([(inverse * (x0, y0))[0], (inverse * (x1, y1))[0]])
        rows = sorted([(inverse * (x0, y0))[1], (inverse * (x1, y1))[1]])
        # On the tile's edge or the data's, or on a block edge (merged across it).
        on_block_edge = any(round(v) % 64 == 0 for v in cols + rows) or (
            int(cols[0]) // 64 != int(cols[1]) // 64 or int(rows[0]) // 64 != int(rows[1]) // 64
        )
        assert f.on_edge or on_block_edge
    assert 0 < len(edges_only) < len(kept)


def test_whole_specks_and_their_count_agree_with_gdal_tracing():
    """The sieve's specks are whole small regions; their count is the number GDAL traces."""
    from rasterio import features

    from pipeline.polygonize import count_regions, whole_specks

    rng = np.random.default_rng(5)
    found = 0
    for trial in range(20):
        building = rng.random((70, 90)) < rng.uniform(0.2, 0.6)
        keep = np.zeros(building.shape, bool)
        if trial % 2:
            keep[30:34, 40:50] = True  # a kept area (pixels next to nodata) inside
        size = int(rng.integers(2, 12))
        specks = whole_specks(building, size, keep)
        traced = [
            shapely.geometry.shape(g)
            for g, _ in features.shapes(specks.view(np.uint8), mask=specks, connectivity=4)
        ]
        assert count_regions(specks) == len(traced)
        found += len(traced)
        # Each is a region of the building under the size, away from the edges and keep.
        regions = {
            shapely.normalize(shapely.geometry.shape(g)).wkb
            for g, _ in features.shapes(building.view(np.uint8), mask=building, connectivity=4)
        }
        for region in traced:
            assert shapely.normalize(region).wkb in regions
            assert region.area < size
            x0, y0, x1, y1 = region.bounds
            assert x0 > 0 and y0 > 0 and x1 < 90 and y1 < 70
        grown = keep.copy()
        grown[1:] |= keep[:-1]
        grown[:-1] |= keep[1:]
        grown[:, 1:] |= keep[:, :-1]
        grown[:, :-1] |= keep[:, 1:]
        assert not (specks & grown).any()
    assert found > 1000
    assert count_regions(np.zeros((5, 5), bool)) == 0


def test_the_regions_estimate_is_regions_minus_holes():
    from pipeline.polygonize import count_regions, regions_estimate

    corner = np.zeros((4, 4), bool)
    corner[0, 0] = corner[1, 1] = True  # two regions under 4-connectivity
    ring = np.zeros((5, 5), bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False  # one region with one hole
    assert (regions_estimate(corner), regions_estimate(ring)) == (2, 0)
    noise = np.random.default_rng(2).random((200, 200)) < 0.3  # few holes at this density
    assert abs(regions_estimate(noise) - count_regions(noise)) < 0.02 * count_regions(noise)


def test_cores_travel_compressed_and_come_back_equal():
    from apache_beam.coders import registry

    plan = plan_windows("t", 300, 300, 256, 16)[0]
    rng = np.random.default_rng(0)
    # Background probabilities near zero and one building, as a segmenter gives.
    prediction = (rng.random((256, 256)) * 0.01).astype(np.float32)
    prediction[40:90, 60:140] = 0.97
    valid = np.ones(plan.core.shape, bool)
    valid[:, :30] = False  # a nodata collar
    coder = registry.get_coder(CorePrediction)
    for core in (
        CorePrediction.inferred(plan, prediction, valid),
        CorePrediction.inferred(plan, prediction, None),
        CorePrediction.missing(plan, "failed"),
    ):
        encoded = coder.encode(core)
        back = coder.decode(encoded)
        assert (back.key, back.core, back.status) == (core.key, core.core, core.status)
        for name in ("probability", "valid"):
            got, want = getattr(back, name), getattr(core, name)
            assert (got is None) == (want is None)
            if want is not None:
                np.testing.assert_array_equal(got, want)
                assert got.dtype == want.dtype and got.flags.writeable
        if core.probability is not None:
            assert len(encoded) < core.probability.nbytes / 2


# --------------------------------------------------------------------------
# Sparse tiles: windows planned lazily, absent blocks skipped (issue 22)
# --------------------------------------------------------------------------


def _sparse_tile(tmp_path, size=8192, block=256, stored=((3, 5), (3, 6), (20, 30))):
    from raster_fixtures import write_sparse_geotiff

    from footprints.tiles import read_header

    rng = np.random.default_rng(22)
    blocks = {rc: rng.integers(300, 1500, (1, block, block)) for rc in stored}
    path = write_sparse_geotiff(
        tmp_path / "sparse.tif", size, size, blocks, blocksize=block, dtype="uint16"
    )
    return read_header(path), [Box(r * block, c * block, block, block) for r, c in stored]


def test_plan_windows_skips_windows_on_absent_blocks_of_a_sparse_tile(tmp_path):
    """An 8192^2 uint16 tile storing 3 of its 1,024 blocks: only windows whose core
    touches a stored block are elements; each row's others are one EmptyCores."""
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.stitching.transforms import PlanWindows

    tile, stored = _sparse_tile(tmp_path)
    size, halo = 256, 16
    every = plan_windows(tile.scene, tile.height, tile.width, size, halo)
    # Independent of the file's block offsets: the cores that overlap a stored block.
    expected = sorted(p.key for p in every if any(not p.core.intersect(b).empty for b in stored))
    assert 0 < len(expected) < 20 and len(every) == 37 * 37
    rows_with_empty = len({p.key.row for p in every if p.key not in set(expected)})
    with TestPipeline() as p:
        planned = p | beam.Create([tile]) | PlanWindows(size, halo, (1,))
        keys = planned["windows"] | "Keys" >> beam.Map(lambda item: item[0].key)
        assert_that(keys, equal_to(expected), label="windows over stored blocks")
        empty = planned["empty"] | "Counts" >> beam.Map(lambda run: run.count)
        total = empty | beam.CombineGlobally(sum)
        runs = empty | "Runs" >> beam.combiners.Count.Globally()
        assert_that(total, equal_to([len(every) - len(expected)]), label="empty windows")
        assert_that(runs, equal_to([rows_with_empty]), label="one run per row")


def test_stitcher_counts_empty_runs_and_masks_their_pixels(tmp_path):
    from pipeline.values import EmptyCores

    tile, stored = _sparse_tile(tmp_path, size=1024, stored=((1, 1),))
    size, halo = 256, 16
    plans = plan_windows(tile.scene, tile.height, tile.width, size, halo)
    over = [p for p in plans if not p.core.intersect(stored[0]).empty]
    empty = [p for p in plans if p not in over]
    parts: list = [
        CorePrediction(p.key, p.core, "inferred", np.full(p.core.shape, 200, np.uint8))
        for p in over
    ]
    parts.append(EmptyCores(empty[0].key, len(empty)))
    mask = stitch_tile(tile, parts, size, halo)
    assert mask.windows == {"inferred": len(over), "nodata": 0, "failed": 0, "empty": len(empty)}
    covered = np.zeros((tile.height, tile.width), bool)
    for p in over:
        covered[p.core.row : p.core.bottom, p.core.col : p.core.right] = True
    assert mask.valid is not None and np.array_equal(mask.valid, covered)
    assert (mask.probability[~covered] == 0).all()
    with pytest.raises(StitchError, match="arrived twice"):
        stitch_tile(tile, [*parts, EmptyCores(empty[0].key, 1)], size, halo)
    with pytest.raises(StitchError, match="planned"):
        stitch_tile(tile, [*parts[:-1], EmptyCores(empty[0].key, len(empty) - 1)], size, halo)
