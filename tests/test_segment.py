"""The segmentation job: tile validation, window reads, inference, and the whole pipeline.

Real GeoTIFFs, real SavedModels (tests/segment_helpers.py), real Beam on the
DirectRunner; no mocks.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import score_helpers
import segment_helpers as helpers
import shapely
from raster_fixtures import UTM, X0, Y0, write_geotiff
from rasterio.transform import Affine, from_origin

from footprints.contracts import SegmenterAssets
from footprints.tiles import TileRejected
from footprints_app import cli
from pipeline.chipping import ChipSpec
from pipeline.inference.segmenter import (
    InferenceFailure,
    SegmenterModelHandler,
    augmentations,
    predict,
)
from pipeline.segment import SegmentConfig, run_config
from pipeline.sources.rasters import read_window, validate_tile
from pipeline.stitching.stitch import stitch_tile
from pipeline.values import CorePrediction, WindowInput, quantize
from pipeline.windows import Box, cut_and_pad, plan_windows

PX = 0.5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "bright": helpers.save_bright_segmenter(
            str(root / "bright"), window_size=64, poison_value=77
        ),
        "conv": helpers.save_conv_segmenter(
            str(root / "conv"), window_size=32, dilations=(1, 2, 4)
        ),
        "gray16": helpers.save_bright_segmenter(
            str(root / "gray16"), bands=(1,), raw_dtype="uint16", window_size=64
        ),
    }


RGB = SegmenterAssets.identity(64, 3)


# --------------------------------------------------------------------------
# Validation and reads (no Beam)
# --------------------------------------------------------------------------


def _truncated(tmp_path):
    data, _ = helpers.bright_scene(150, 130, [], seed=3)
    full = write_geotiff(str(tmp_path / "full.tif"), data)
    raw = open(full, "rb").read()
    path = tmp_path / "truncated.tif"
    path.write_bytes(raw[: len(raw) // 2])
    return str(path)


BAD_TILES = {
    "no_crs": lambda d: write_geotiff(str(d / "x.tif"), np.zeros((3, 20, 20), np.uint8), crs=None),
    "not_north_up": lambda d: write_geotiff(
        str(d / "x.tif"),
        np.zeros((3, 20, 20), np.uint8),
        transform=Affine(0.5, 0.1, 500000.0, 0.1, -0.5, 4200000.0),
    ),
    "unreadable": lambda d: (d / "x.tif").write_text("not a raster") or str(d / "x.tif"),
    "truncated": _truncated,
    "band_count": lambda d: write_geotiff(str(d / "x.tif"), np.zeros((1, 20, 20), np.uint8)),
    "dtype": lambda d: write_geotiff(str(d / "x.tif"), np.zeros((3, 20, 20), np.uint16)),
}


@pytest.mark.parametrize("reason", sorted(BAD_TILES))
def test_validate_rejects_unusable_tiles_with_reason_and_fix(tmp_path, reason):
    path = BAD_TILES[reason](tmp_path)
    with pytest.raises(TileRejected) as caught:
        validate_tile(path, RGB)
    assert caught.value.reason == reason
    assert repr(path) in str(caught.value)
    # Every message names a command or an action that fixes it.
    assert any(w in str(caught.value) for w in ("`", "use ", "pass ", "copy ", "convert"))


def test_validate_accepts_striped_four_band_tiles_with_nodata(tmp_path):
    data = helpers.random_image(70, 50, bands=4)
    path = write_geotiff(str(tmp_path / "s.tif"), data, tiled=False, nodata=0)
    tile = validate_tile(path, RGB)
    assert (tile.scene, tile.height, tile.width, tile.crs) == ("s", 70, 50, UTM)
    assert tile.block_shape == (4, 50) and tile.masked
    plain = validate_tile(write_geotiff(str(tmp_path / "p.tif"), data[:3]), RGB)
    assert not plain.masked and plain.block_shape == (64, 64)


def test_read_window_pads_at_edges_and_reads_nodata(tmp_path):
    data = helpers.random_image(70, 50, bands=4, seed=4)
    data[:, 30:, :20] = 0  # nodata in every band -> invalid
    data[0, :5, :] = 0  # nodata in one band only -> still valid
    path = write_geotiff(str(tmp_path / "s.tif"), data, tiled=False, nodata=0)
    tile = validate_tile(path, RGB)
    image = np.moveaxis(data[:3], 0, -1)
    expected_valid = (data[:3] != 0).any(axis=0)  # the bands the model reads
    with rasterio.open(path) as src:
        for plan in plan_windows("s", 70, 50, 64, 8):
            pixels, valid = read_window(src, tile, plan, RGB)
            window = plan.window
            inside = window.intersect(Box(0, 0, 70, 50))
            ref = cut_and_pad(
                image[inside.row : inside.bottom, inside.col : inside.right], inside, window, 70, 50
            )
            np.testing.assert_array_equal(pixels, ref)
            ref_valid = cut_and_pad(
                expected_valid[inside.row : inside.bottom, inside.col : inside.right],
                inside,
                window,
                70,
                50,
                mode="constant",
                constant_values=False,
            )
            np.testing.assert_array_equal(valid, ref_valid)


def test_open_rasters_keeps_the_most_recent_tiles_open(tmp_path):
    from pipeline.sources.open_rasters import OpenRasters

    paths = [
        write_geotiff(str(tmp_path / f"{n}.tif"), np.zeros((3, 8, 8), np.uint8)) for n in "abc"
    ]
    rasters = OpenRasters(size=2)
    a, b = rasters(paths[0]), rasters(paths[1])
    assert rasters(paths[0]) is a and len(rasters) == 2
    c = rasters(paths[2])  # b is the least recently used
    assert b.closed and not a.closed and not c.closed and len(rasters) == 2
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasters(str(tmp_path / "missing.tif"))
    assert not a.closed and not c.closed  # a failed open evicts nothing
    rasters.close()
    assert a.closed and c.closed and len(rasters) == 0
    with pytest.raises(ValueError, match="at least 1"):
        OpenRasters(size=0)


def test_limit_gdal_cache_keeps_decoded_blocks_for_the_next_window(tmp_path):
    # The cache is observed, not timed: blocks a first read decoded are served
    # again from the cache after the file changed on disk under the reader.
    from rasterio.windows import Window

    from pipeline.sources.open_rasters import limit_gdal_cache

    path = write_geotiff(str(tmp_path / "t.tif"), np.zeros((3, 256, 256), np.uint8), blocksize=64)
    limit_gdal_cache()
    window = Window(10, 10, 150, 150)  # across 3 x 3 blocks, as a model window is
    with rasterio.open(path) as reader:
        assert not reader.read(window=window).any()
        with rasterio.open(path, "r+") as writer:
            writer.write(np.full((3, 256, 256), 7, np.uint8))
        assert not reader.read(window=window).any()  # from the cache: the old blocks
    with rasterio.open(path) as fresh:
        assert (fresh.read(window=window) == 7).all()  # the file did change


# --------------------------------------------------------------------------
# Inference (no Beam)
# --------------------------------------------------------------------------


def test_tta_averages_the_model_over_flips_and_rotations():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)

    def model(x):  # not flip-invariant: depends on position
        return x[..., 0].astype(np.float32) * np.linspace(0, 1, 16)[None, None, :]

    assert len(augmentations("d4")) == 8 and len(augmentations("flips")) == 4
    np.testing.assert_allclose(predict(model, images, "none"), model(images))
    flipped = [
        model(images),
        model(images[:, :, ::-1])[:, :, ::-1],
        model(images[:, ::-1])[:, ::-1],
        model(images[:, ::-1, ::-1])[:, ::-1, ::-1],
    ]
    np.testing.assert_allclose(predict(model, images, "flips"), np.mean(flipped, axis=0), rtol=1e-6)
    # Every D4 view maps back onto the original pixels: a per-pixel model is unchanged.
    np.testing.assert_allclose(
        predict(lambda x: x[..., 1] / 255.0, images, "d4"), images[..., 1] / 255.0, rtol=1e-6
    )


def test_one_bad_window_does_not_fail_its_batch(models):
    handler = SegmenterModelHandler(models["bright"], min_batch_size=3, max_batch_size=3)
    model = handler.load_model()
    plans = plan_windows("t", 64, 192, 64, 0)
    images = [np.full((64, 64, 3), v, np.uint8) for v in (200, 77, 10)]  # 77 poisons
    batch = [(WindowInput(p, "t.tif", None), im) for p, im in zip(plans, images, strict=True)]
    results = handler.run_inference(batch, model)
    assert [type(r).__name__ for _, r in results] == ["ndarray", "InferenceFailure", "ndarray"]
    assert results[0][1][1:-1, 1:-1].min() > 0.99 and results[2][1].max() < 0.01
    assert "poisoned" in results[1][1].message
    assert isinstance(results[1][1], InferenceFailure)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 3, "max_batch_size": 3}


def _loop_without_beam(model, image, size, halo):
    """Plan, pad, predict and stitch with plain functions: the pipeline's logic, no Beam."""
    h, w, _ = image.shape
    tile = helpers_tile(h, w)
    parts = []
    for plan in plan_windows("t", h, w, size, halo):
        inside = plan.window.intersect(Box(0, 0, h, w))
        pixels = cut_and_pad(
            image[inside.row : inside.bottom, inside.col : inside.right], inside, plan.window, h, w
        )
        parts.append(CorePrediction.inferred(plan, model(pixels[None])[0], None))
    return stitch_tile(tile, parts, size, halo).probability


def helpers_tile(h, w):
    from footprints.tiles import TileInfo

    return TileInfo(
        path="t.tif",
        scene="t",
        height=h,
        width=w,
        count=3,
        crs=UTM,
        transform=(PX, 0, 500000.0, 0, -PX, 4200000.0),
        block_shape=(64, 64),
        masked=False,
        dtype="uint8",
    )


def test_halo_removes_seams_and_its_absence_shows_them(models):
    from pipeline.inference.segmenter import Segmenter

    model = Segmenter(models["conv"])
    image = np.moveaxis(helpers.random_image(100, 90, seed=7), 0, -1)
    whole = quantize(helpers.run_whole(models["conv"], image))
    radius = 7
    inner = (slice(radius, -radius), slice(radius, -radius))
    seamless = _loop_without_beam(model, image, 32, radius)
    seamy = _loop_without_beam(model, image, 32, 0)
    assert np.abs(seamless[inner].astype(int) - whole[inner]).max() <= 1
    assert (np.abs(seamy[inner].astype(int) - whole[inner]) > 8).sum() > 100


# --------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------


def _utm_origin(col_px=0.0, row_px=0.0):
    return (X0 + col_px * PX, Y0 - row_px * PX)


def _write_truth(path, truth, origin):
    write_geotiff(path, truth[None].astype(np.uint8), origin=origin)


@pytest.fixture(scope="module")
def mixed_run(models, tmp_path_factory):
    """One run over every kind of tile the job must handle."""
    d = tmp_path_factory.mktemp("mixed")
    tiles, truths = d / "tiles", d / "truth"
    # a | b: adjacent UTM tiles; a building crosses their shared edge.
    a, truth_a = helpers.bright_scene(150, 130, [(10, 10, 40, 50), (60, 100, 90, 130)], seed=1)
    write_geotiff(str(tiles / "a.tif"), a)
    _write_truth(str(truths / "truth_a.tif"), truth_a, _utm_origin())
    b, truth_b = helpers.bright_scene(150, 100, [(60, 0, 90, 30)], bands=4, seed=2)
    write_geotiff(str(tiles / "b.tif"), b, origin=_utm_origin(130), tiled=False)
    _write_truth(str(truths / "truth_b.tif"), truth_b, _utm_origin(130))
    # c: geographic CRS, smaller than a window.
    c, _ = helpers.bright_scene(30, 40, [(10, 10, 20, 30)], seed=3)
    write_geotiff(
        str(tiles / "c.tif"), c, crs="EPSG:4326", transform=from_origin(-93.0, 45.0, 1e-5, 1e-5)
    )
    # d: the left half is nodata; e: all nodata.
    dd, _ = helpers.bright_scene(100, 100, [(40, 60, 70, 90)], seed=4)
    dd[:, :, :50] = 0
    write_geotiff(str(tiles / "d.tif"), dd, origin=_utm_origin(1000), nodata=0)
    write_geotiff(
        str(tiles / "e.tif"), np.zeros((3, 80, 80), np.uint8), origin=_utm_origin(2000), nodata=0
    )
    # k: every window poisons the model.
    write_geotiff(
        str(tiles / "k.tif"), np.full((3, 70, 70), 77, np.uint8), origin=_utm_origin(3000)
    )
    # Tiles that go to errors/.
    write_geotiff(str(tiles / "f.tif"), np.zeros((3, 20, 20), np.uint8), crs=None)
    shutil.copy(_truncated(d), tiles / "g.tif")
    (tiles / "h.tif").write_text("not a raster")
    write_geotiff(str(tiles / "i.tif"), np.zeros((1, 20, 20), np.uint8))
    write_geotiff(str(tiles / "j.tif"), np.zeros((3, 20, 20), np.uint16))
    write_geotiff(str(d / "tiles2" / "a.tif"), a)  # same scene name as tiles/a.tif
    classifier = score_helpers.save_classifier(str(d / "classifier"), "brightness")
    config = SegmentConfig.create(
        raster=str(d / "tiles*" / "*.tif"),
        model_dir=models["bright"],
        output=str(d / "out"),
        halo=8,
        batch_size=4,
        truth_masks=str(truths / "*.tif"),
        min_area=1.0,
        classifier=classifier,
        residential_fraction="0.5",
        # min_extent is taken in CRS units by pipeline.chipping (degrees for c.tif), so
        # the default 20 would ask for a 2e6-pixel chip there; 0 keeps chips footprint-sized.
        chip_spec=ChipSpec(min_extent=0.0),
    )
    return d, config, run_config(config)


@pytest.mark.slow
def test_pipeline_accounts_for_every_tile_and_window(mixed_run):
    """Counts reconcile: every matched tile and planned window is written or explained."""
    _, _, summary = mixed_run
    assert summary["counts"]["tiles"] == {
        "matched": 12,
        "rejected": 6,
        "valid": 6,
        "written": 4,
        "skipped_nodata": 1,
        "failed": 1,
    }
    windows = summary["counts"]["windows"]
    assert windows["failed"] == 4 and windows["nodata"] == 4 + 2
    assert summary["reconciles"]
    assert summary["errors_by_reason"] == {
        "band_count": 1,
        "dtype": 1,
        "duplicate_scene": 1,
        "inference_failed": 4,
        "no_crs": 1,
        "no_window_inferred": 1,
        "truncated": 1,
        "unreadable": 1,
    }
    assert [s["scene"] for s in summary["skipped_tiles"]] == ["e", "k"]


@pytest.mark.slow
def test_pipeline_writes_cog_masks_on_each_tiles_grid(mixed_run):
    d, _, summary = mixed_run
    masks = d / "out" / "masks"
    assert sorted(os.listdir(masks)) == [
        "a.tif",
        "b.tif",
        "c.tif",
        "d.tif",
        "mosaic-EPSG_4326.vrt",
        "mosaic.vrt",
    ]
    for scene in "abcd":
        with (
            rasterio.open(d / "tiles" / f"{scene}.tif") as tile,
            rasterio.open(masks / f"{scene}.tif") as mask,
        ):
            assert mask.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert (mask.crs, mask.transform, mask.shape) == (tile.crs, tile.transform, tile.shape)
            valid = mask.read_masks(1) > 0
            np.testing.assert_array_equal(valid, tile.read_masks([1, 2, 3]).any(axis=0))
    with rasterio.open(masks / "mosaic.vrt") as mosaic:
        assert mosaic.crs.to_string() == UTM
        assert mosaic.bounds.left == X0
        assert mosaic.bounds.right == _utm_origin(1100)[0]  # d ends 1100 px east
    assert summary["truth"]["iou"] > 0.95
    assert set(summary["truth"]["tiles"]) == {"a", "b"}
    # Objects: the building on the a|b edge counts once on both sides; the
    # footprints of c and d (no truth there) are not counted.
    objects = summary["truth"]["objects"]
    assert (objects["predicted"], objects["truth"], objects["true_positives"]) == (2, 2, 2)
    assert objects["precision"] == objects["recall"] == objects["f1"] == 1.0
    assert objects["mean_matched_iou"] > 0.9
    assert (d / "out" / "truth" / "objects.parquet").exists()


@pytest.mark.slow
def test_pipeline_writes_footprints_merged_across_tiles(mixed_run):
    d, config, summary = mixed_run
    table = pq.read_table(d / "out" / "footprints")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32615}
    rows = {r["tile"]: [] for r in table.to_pylist()}
    for r in table.to_pylist():
        rows[r["tile"]].append(r)
    assert summary["counts"]["footprints"] == table.num_rows == 4
    # The building on the a|b edge is one footprint, 30 x 60 pixels.
    crossing = [
        r
        for r in table.to_pylist()
        if shapely.from_wkb(r["geometry"]).bounds[0]
        < _utm_origin(130)[0]
        < shapely.from_wkb(r["geometry"]).bounds[2]
    ]
    assert len(crossing) == 1
    # area_m2 is the written polygon's: simplification cuts the blurred
    # corners, so it is a few percent under the drawn 30 x 60 pixels.
    assert crossing[0]["area_m2"] == pytest.approx(
        shapely.from_wkb(crossing[0]["geometry"]).area, rel=1e-9
    )
    assert crossing[0]["area_m2"] == pytest.approx(30 * 60 * PX * PX, rel=0.07)
    assert crossing[0]["mean_probability"] > 0.9
    # The EPSG:4326 tile's building is reprojected into the table's CRS.
    (geo_row,) = rows["c"]
    x, y = shapely.from_wkb(geo_row["geometry"]).centroid.coords[0]
    assert 499_000 < x < 501_000 and 4_980_000 < y < 4_990_000
    assert geo_row["area_m2"] == pytest.approx(10 * 20 * 0.787 * 1.111, rel=0.05)
    errors = pq.read_table(d / "out" / "errors").to_pylist()
    assert {e["stage"] for e in errors} == {"match", "validate", "inference", "stitch"}


@pytest.mark.slow
def test_pipeline_scores_its_footprints_with_the_classifier(mixed_run):
    d, _, summary = mixed_run
    footprints = pq.read_table(d / "out" / "footprints").to_pylist()
    scores = pq.read_table(d / "out" / "scores")
    rows = scores.to_pylist()
    # Every footprint is chipped from the tiles and scored, in the footprints' CRS.
    assert sorted(r["footprint_id"] for r in rows) == sorted(f["footprint_id"] for f in footprints)
    geo = json.loads(scores.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32615}
    by_id = {f["footprint_id"]: f["geometry"] for f in footprints}
    assert all(r["geometry"] == by_id[r["footprint_id"]] for r in rows)
    # Exactly k = round(0.5 * 4) are residential, the brightest chips.
    assert sum(r["is_residential"] for r in rows) == 2
    assert {r["run_id"] for r in rows} == {summary["run_id"]}
    assert summary["reconciles"] and summary["counts"]["scored"] == 4
    assert summary["scores"]["regions"]["all"]["k"] == 2


@pytest.mark.slow
def test_stitched_mask_equals_whole_tile_inference(models, tmp_path):
    image = helpers.random_image(100, 90, seed=7)
    write_geotiff(str(tmp_path / "t.tif"), image, blocksize=16)
    config = SegmentConfig.create(
        raster=str(tmp_path / "t.tif"),
        model_dir=models["conv"],
        output=str(tmp_path / "out"),
        batch_size=3,
        min_batch_size=2,
    )
    assert config.halo == 7  # the model's receptive radius, from its assets
    summary = run_config(config)
    assert summary["counts"]["windows"]["planned"] == summary["counts"]["windows"]["inferred"] > 9
    whole = quantize(helpers.run_whole(models["conv"], np.moveaxis(image, 0, -1)))
    with rasterio.open(tmp_path / "out" / "masks" / "t.tif") as src:
        stitched = src.read(1)
    inner = (slice(7, -7), slice(7, -7))
    diff = np.abs(stitched[inner].astype(int) - whole[inner])
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


@pytest.mark.slow
def test_cli_gray_uint16_tiles_with_tta_binary_mask_and_rerun(models, tmp_path, capsys):
    for i, (rects, seed) in enumerate([([(5, 5, 30, 30)], 1), ([(40, 40, 60, 70)], 2)]):
        data, _ = helpers.bright_scene(90, 80, rects, bands=1, dtype="uint16", seed=seed)
        write_geotiff(str(tmp_path / "tiles" / f"g{i}.tif"), data, origin=_utm_origin(200 * i))
    out = str(tmp_path / "out")
    argv = [
        "segment",
        "--raster",
        str(tmp_path / "tiles" / "*.tif"),
        "--model",
        models["gray16"],
        "--output",
        out,
        "--tta",
        "flips",
        "--binary-mask",
        "--halo",
        "4",
        "--regularize",
        "--runner",
        "DirectRunner",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "segment: 2 tiles -> 2 masks" in printed and "footprints: 2 buildings" in printed
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["counts"]["tiles"]["written"] == 2 and summary["counts"]["footprints"] == 2
    # --regularize: the blurred-corner rectangles come out as four right-angled corners.
    for row in pq.read_table(os.path.join(out, "footprints")).to_pylist():
        geom = shapely.from_wkb(row["geometry"])
        assert len(geom.exterior.coords) == 5 and geom.exterior.is_ccw
        assert row["area_m2"] == pytest.approx(geom.area)
    with rasterio.open(os.path.join(out, "masks", "g0.tif")) as src:
        assert src.count == 2 and src.descriptions[1] == "building"
        binary = src.read(2)
        assert binary[10:25, 10:25].all() and not binary[50:, 50:].any()
    # A rerun over fewer tiles leaves exactly that run's masks.
    os.remove(tmp_path / "tiles" / "g1.tif")
    assert cli.main(argv) == 0
    assert sorted(os.listdir(os.path.join(out, "masks"))) == ["g0.tif", "mosaic.vrt"]
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["counts"]["tiles"]["written"] == 1 and summary["inputs"]["tta"] == "flips"


@pytest.mark.slow
def test_sample_area_end_to_end_against_true_footprints(models, tmp_path, capsys):
    """``--truth-footprints`` (another CRS) through the CLI agrees with the true masks."""
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area
    from pipeline.evaluation import truth_summary

    area = generate_sample_area(
        str(tmp_path / "area"),
        SampleAreaConfig(
            seed=0,
            tiles_x=2,
            tiles_y=2,
            tile_size=256,
            bands="rgbn",
            dtype="uint16",
            footprints_crs="EPSG:4326",
        ),
    )
    model = helpers.save_bright_segmenter(str(tmp_path / "m16"), raw_dtype="uint16", window_size=64)
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "segment",
                "--raster",
                os.path.join(area.root, "tiles", "*.tif"),
                "--model",
                model,
                "--output",
                str(out),
                "--batch-size",
                "16",
                "--truth-footprints",
                area.footprints,
            ]
        )
        == 0
    )
    assert "against the truth: pixel IoU" in capsys.readouterr().out
    summary = json.load(open(out / "summary.json"))
    assert summary["counts"]["tiles"]["written"] == 4 and summary["reconciles"]
    truth = summary["truth"]
    assert truth["source"]["kind"] == "footprints" and truth["source"]["rejected"] == 0
    assert sorted(truth["tiles"]) == sorted(
        os.path.splitext(os.path.basename(t))[0] for t in area.tiles
    )
    assert summary["footprints"]["crs"] == area.crs
    # The same outputs measured against the true masks the area drew from
    # the same polygons: pixel IoU within rasterization noise, objects equal
    # up to buildings whose burnt and drawn outlines differ near 0.5 IoU.
    masks = sorted(str(p) for p in (out / "masks").glob("*.tif"))
    by_masks = truth_summary(
        output=str(tmp_path / "again"),
        mask_paths=masks,
        footprint_files=[str(out / f) for f in summary["footprints"]["files"]],
        crs=area.crs,
        threshold=0.5,
        truth_masks=list(area.masks),
    )
    assert truth["iou"] == pytest.approx(by_masks["iou"], abs=0.02)
    a, b = truth["objects"], by_masks["objects"]
    assert a["predicted"] == b["predicted"] > 0
    assert abs(a["truth"] - b["truth"]) <= max(2, 0.1 * b["truth"])
    assert abs(a["true_positives"] - b["true_positives"]) <= max(2, 0.1 * b["truth"])
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= a[key] <= 1.0
    assert (
        sum(t["true_positive"] + t["false_positive"] for t in truth["tile_objects"].values())
        == a["predicted"]
    )


def test_pipeline_with_accelerator_hints_the_inference_steps_only(models, tmp_path):
    """The GPU hint lands on RunInference (segmenter and classifier), nowhere else."""
    import apache_beam as beam

    from pipeline.segment import build_pipeline

    hint = "type:nvidia-l4;count:1;install-nvidia-driver"
    data, _ = helpers.bright_scene(70, 70, [(10, 10, 40, 40)])
    write_geotiff(str(tmp_path / "t.tif"), data)
    config = SegmentConfig.create(
        raster=str(tmp_path / "t.tif"),
        model_dir=models["bright"],
        output=str(tmp_path / "out"),
        accelerator=hint,
        classifier=score_helpers.save_classifier(str(tmp_path / "cls")),
        residential_fraction="0.5",
        check_model=False,
    )
    pipeline = beam.Pipeline()
    build_pipeline(pipeline, config)
    proto = pipeline.to_runner_api()
    envs = proto.components.environments
    hinted = {
        t.unique_name: dict(envs[t.environment_id].resource_hints)
        for t in proto.components.transforms.values()
        if t.environment_id and not t.subtransforms and envs[t.environment_id].resource_hints
    }
    # Reads, windowing, stitching, chipping and writes stay on CPU workers.
    assert sorted(hinted) == [
        "ScoreChips/Score/RunInference/BeamML_RunInference",
        "Segment/RunInference/BeamML_RunInference",
    ]
    assert all(h == {"beam:resources:accelerator:v1": hint.encode()} for h in hinted.values())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--raster", "/nonexistent/*.tif"], "matches no files"),
        (["--accelerator", "nvidia-l4"], "type:GPU_TYPE;count:N"),
        (["--halo", "40"], "--halo 40"),
        (["--batch-size", "2", "--min-batch-size", "4"], "min <= batch size"),
        (["--model", "/nonexistent"], "does not exist"),
        (["--truth-footprints", "/nonexistent.gpkg"], "--truth-footprints: footprint file"),
        (["--truth-masks", "/nonexistent/*.tif"], "--truth-masks '/nonexistent/*.tif' matches no"),
    ],
)
def test_cli_rejects_bad_flags_before_building_a_pipeline(models, tmp_path, capsys, flags, message):
    write_geotiff(str(tmp_path / "t.tif"), np.zeros((3, 10, 10), np.uint8))
    base = {
        "--raster": str(tmp_path / "*.tif"),
        "--model": models["conv"],
        "--output": str(tmp_path / "out"),
    }
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        base[flag] = value
    argv = ["segment"] + [x for kv in base.items() for x in kv]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_sparse_tile_skips_absent_blocks_and_counts_them(models, tmp_path):
    """A uint16 tile that declares 4096 x 4096 pixels and stores 3 blocks of 256: the
    windows on absent blocks never reach the model, are counted as ``skipped_empty``
    and are masked in the mask; the one bright roof is still found (issue 22)."""
    from raster_fixtures import write_sparse_geotiff

    rng = np.random.default_rng(7)
    stored = {(2, 3): None, (2, 4): None, (12, 9): None}
    for rc in stored:
        stored[rc] = rng.integers(300, 1500, (1, 256, 256))
    stored[(2, 3)][0, 100:160, 200:256] = 3500  # a roof across two stored blocks
    stored[(2, 4)][0, 100:160, 0:40] = 3500
    path = write_sparse_geotiff(tmp_path / "tiles" / "sparse.tif", 4096, 4096, stored)
    config = SegmentConfig.create(
        raster=path, model_dir=models["gray16"], output=str(tmp_path / "out"), halo=8
    )
    summary = run_config(config)
    # Independent of the pipeline: the plan's cores that overlap no stored block.
    plans = plan_windows("sparse", 4096, 4096, 64, 8)
    blocks = [Box(r * 256, c * 256, 256, 256) for r, c in stored]
    empty = [p for p in plans if all(p.core.intersect(b).empty for b in blocks)]
    windows = summary["counts"]["windows"]
    assert windows == {
        "planned": len(plans),
        "inferred": len(plans) - len(empty),
        "nodata": 0,
        "failed": 0,
        "skipped_empty": len(empty),
    }
    assert summary["reconciles"] and 0 < windows["inferred"] < 0.02 * len(plans)
    with rasterio.open(tmp_path / "out" / "masks" / "sparse.tif") as mask:
        valid = mask.read_masks(1) > 0
    skipped = np.zeros((4096, 4096), bool)
    for p in empty:
        skipped[p.core.row : p.core.bottom, p.core.col : p.core.right] = True
    np.testing.assert_array_equal(valid, ~skipped)
    table = pq.read_table(tmp_path / "out" / "footprints")
    assert table.num_rows == 1
    assert table.column("area_m2")[0].as_py() == pytest.approx(60 * 96 * 0.25, rel=0.1)


@pytest.mark.slow
def test_building_across_a_utm_zone_boundary_is_one_footprint(models, tmp_path):
    """The job on two uint16 tiles, UTM 15N and 16N, meeting at -90 deg with nodata
    collars: the roof across the meridian is one footprint of its true area (issue 22)."""
    from raster_fixtures import ZonePair

    pair = ZonePair(tmp_path / "tiles")
    config = SegmentConfig.create(
        raster=str(tmp_path / "tiles" / "*.tif"),
        model_dir=models["gray16"],
        output=str(tmp_path / "out"),
        footprints_crs="EPSG:4326",
    )
    summary = run_config(config)
    assert summary["reconciles"] and summary["counts"]["tiles"]["written"] == 2
    rows = pq.read_table(tmp_path / "out" / "footprints").to_pylist()
    assert len(rows) == 1, [(r["footprint_id"], r["area_m2"]) for r in rows]
    # The model's 3x3 box filter rounds the roof's corners (and its corners on the
    # collar); the outline is otherwise the roof's own.
    assert rows[0]["area_m2"] == pytest.approx(pair.true_area_m2(), rel=0.03)


def test_mask_threshold_comes_from_the_models_assets_unless_given(models, tmp_path):
    """Training records the threshold it chose on validation; segment uses it
    when --mask-threshold is left out, and 0.5 for a model that has none."""
    import dataclasses

    from footprints.contracts import SEGMENTER_ASSETS

    model = str(tmp_path / "chosen")
    shutil.copytree(models["bright"], model)
    path = os.path.join(model, "assets", SEGMENTER_ASSETS)
    with open(path, encoding="utf-8") as f:
        assets = SegmenterAssets.from_json(f.read())
    assert assets.mask_threshold is None
    with open(path, "w", encoding="utf-8") as f:
        f.write(dataclasses.replace(assets, mask_threshold=0.35).to_json())
    data, _ = helpers.bright_scene(70, 70, [(10, 10, 40, 40)])
    write_geotiff(str(tmp_path / "t.tif"), data)

    def threshold(model_dir, given):
        return SegmentConfig.create(
            raster=str(tmp_path / "t.tif"),
            model_dir=model_dir,
            output=str(tmp_path / "out"),
            mask_threshold=given,
            check_model=False,
        ).mask_threshold

    assert threshold(model, None) == 0.35
    assert threshold(model, 0.6) == 0.6
    assert threshold(models["bright"], None) == 0.5
