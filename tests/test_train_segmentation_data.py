"""Tests of the segmenter's data preparation on small GeoTIFFs with a real CRS."""

from __future__ import annotations

import numpy as np
import pyogrio
import pyproj
import pytest
import shapely
from hypothesis import assume, given
from hypothesis import strategies as st
from raster_fixtures import write_geotiff

from footprints import contracts
from footprints.errors import ConfigError, InputError
from model_training import segmentation_data as sd
from model_training.configs import SegmenterConfig
from model_training.segmenter import prepare_data

CRS = "EPSG:32615"
ORIGIN = (500_000.0, 4_650_000.0)
PIXEL = 1.0


def write_tif(path, data, **kwargs) -> str:
    """Writes [bands, H, W] data on this module's 1 m grid (see ``raster_fixtures``)."""
    kwargs.setdefault("origin", ORIGIN)
    kwargs.setdefault("crs", CRS)
    return write_geotiff(path, data, pixel_size=PIXEL, tiled=False, **kwargs)


def square(col, row, size, origin=ORIGIN):
    """A polygon covering pixels [row, row+size) x [col, col+size) of a tile at origin."""
    x0, y0 = origin[0] + col * PIXEL, origin[1] - row * PIXEL
    return shapely.box(x0, y0 - size * PIXEL, x0 + size * PIXEL, y0)


def write_vector(path, geoms, crs=CRS):
    if crs != CRS:
        transformer = pyproj.Transformer.from_crs(CRS, crs, always_xy=True)
        geoms = [
            shapely.transform(
                g, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
            )
            for g in geoms
        ]
    pyogrio.raw.write(
        str(path),
        shapely.to_wkb(np.array(geoms, dtype=object)),
        [np.array([f"b{i}" for i in range(len(geoms))], dtype=object)],
        ["id"],
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs,
    )
    return str(path)


def rgb(height=64, width=64, seed=0, dtype="uint8"):
    top = 255 if dtype == "uint8" else 4095
    return np.random.default_rng(seed).integers(0, top, (3, height, width)).astype(dtype)


@pytest.mark.parametrize("vector_crs", [CRS, "EPSG:4326"], ids=["same-crs", "reprojected"])
def test_footprints_are_rasterized_on_each_tile_grid(tmp_path, vector_crs):
    second = (ORIGIN[0] + 64 * PIXEL, ORIGIN[1])  # the tile east of the first
    t0 = write_tif(tmp_path / "t0.tif", rgb())
    t1 = write_tif(tmp_path / "t1.tif", rgb(seed=1), origin=second)
    # One building in t0, one straddling the edge between t0 and t1.
    vector = write_vector(
        tmp_path / "fp.gpkg", [square(10, 20, 8), square(60, 5, 10)], crs=vector_crs
    )
    m0, m1 = sd.rasterize_footprints(vector, (t0, t1))
    expected0 = np.zeros((64, 64), np.uint8)
    expected0[20:28, 10:18] = 1
    expected0[5:15, 60:64] = 1
    expected1 = np.zeros((64, 64), np.uint8)
    expected1[5:15, 0:6] = 1
    # Reprojection through lon/lat moves edges by far less than a pixel.
    assert np.sum(m0 != expected0) <= 4 and np.sum(m1 != expected1) <= 4
    assert m0.sum() > 0 and m1.sum() > 0


def test_labels_that_miss_the_imagery_stop_with_an_error(tmp_path):
    write_tif(tmp_path / "t0.tif", rgb())
    far = (ORIGIN[0] + 10_000, ORIGIN[1])
    vector = write_vector(tmp_path / "fp.gpkg", [square(5, 5, 8, origin=far)])
    with pytest.raises(InputError, match="overlap the imagery"):
        sd.load_tiles(str(tmp_path / "t*.tif"), footprints=vector)


def test_mismatched_band_counts_are_reported_before_reading(tmp_path):
    write_tif(tmp_path / "a.tif", rgb())
    write_tif(tmp_path / "b.tif", rgb()[:1])
    with pytest.raises(InputError, match="differ in band count"):
        sd.inspect_images((str(tmp_path / "a.tif"), str(tmp_path / "b.tif")), None)
    with pytest.raises(InputError, match="bands the tiles do not have"):
        sd.inspect_images((str(tmp_path / "a.tif"),), (1, 4))


def test_masks_pair_by_name_and_must_share_the_grid(tmp_path):
    (tmp_path / "tiles").mkdir()
    (tmp_path / "masks").mkdir()
    images = (
        write_tif(tmp_path / "tiles" / "r0.tif", rgb()),
        write_tif(tmp_path / "tiles" / "r1.tif", rgb()),
    )
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, 3:9, 3:9] = 1
    masks = (
        write_tif(tmp_path / "masks" / "r1_mask.tif", label),
        write_tif(tmp_path / "masks" / "r0.tif", label),
    )
    assert sd.pair_masks(images, masks) == [masks[1], masks[0]]
    with pytest.raises(InputError, match="matching masks"):
        sd.pair_masks(images, masks[:1])
    shifted = write_tif(tmp_path / "masks" / "moved.tif", label, origin=(ORIGIN[0] + 5, ORIGIN[1]))
    with pytest.raises(InputError, match="not on the grid"):
        sd.read_mask(shifted, images[0])


@given(length=st.integers(1, 300), size=st.integers(1, 64), stride=st.integers(1, 64))
def test_window_starts_cover_every_pixel_inside_the_tile(length, size, stride):
    assume(stride <= size)  # the configs refuse gaps between patches
    starts = sd.window_starts(length, size, stride)
    if length < size:
        assert starts == []
        return
    assert starts == sorted(set(starts))
    assert all(0 <= s <= length - size for s in starts)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()


def test_window_starts_docstring_example():
    assert sd.window_starts(10, 4, 4) == [0, 4, 6]


def buildings_tile(
    tmp_path, height=256, width=256, nodata_rows=0, dtype="uint16", bands=1, seed=0, spacing=40
):
    """A noisy tile with bright 8-pixel square buildings every ``spacing`` pixels,
    its mask, and an optional nodata band (value 0) along the top."""
    rng = np.random.default_rng(seed)
    top = 4095 if dtype == "uint16" else 255
    data = rng.integers(top // 8, top // 3, (bands, height, width)).astype(dtype)
    label = np.zeros((1, height, width), np.uint8)
    for r in range(8, height - 16, spacing):
        for c in range(8, width - 16, spacing):
            label[0, r : r + 8, c : c + 8] = 1
    data[:, label[0] > 0] = top - 10
    data[:, :nodata_rows, :] = 0
    image = write_tif(tmp_path / "t.tif", data, nodata=0)
    mask = write_tif(tmp_path / "t_mask.tif", label)
    return image, mask


def test_uint16_four_band_tiles_get_per_band_scaling_fitted_on_the_training_area(tmp_path):
    rng = np.random.default_rng(3)
    data = np.zeros((4, 256, 128), np.uint16)
    for band, (lo, hi) in enumerate([(100, 900), (200, 1200), (300, 2000), (1000, 4000)]):
        data[band] = rng.integers(lo, hi, (256, 128))
    data[:, :32, :] = 0  # a nodata band along the top
    path = write_tif(tmp_path / "t.tif", data, nodata=0)
    label = np.zeros((1, 256, 128), np.uint8)
    label[0, 40:60, 10:30] = 1
    label[0, 140:160, 70:90] = 1
    write_tif(tmp_path / "t_mask.tif", label)
    config = SegmenterConfig(
        images=path,
        masks=str(tmp_path / "t_mask.tif"),
        output=str(tmp_path / "out"),
        patch_size=32,
        depth=2,
    )
    prepared = prepare_data(config)
    assets = prepared.assets
    assert assets.raw_dtype == "uint16" and assets.bands == (1, 2, 3, 4)
    # The 1st..99th percentiles of each band's valid pixels map to 0..255.
    assert assets.offset[0] == pytest.approx(108, abs=10)
    assert assets.offset[3] == pytest.approx(1030, abs=40)
    assert assets.scale[3] == pytest.approx(255 / 2940, rel=0.05)
    scaled = contracts.scale_to_model_input(data[:, 40:].transpose(1, 2, 0), assets)
    assert scaled.dtype == np.uint8 and scaled.min() == 0 and scaled.max() == 255
    # Validation patches are whole blocks cut in patches, nodata weighed 0.
    val = prepared.val
    assert val.images.shape[1:] == (32, 32, 4) and val.weights.shape == val.masks.shape
    # Blocks of one patch side by default (--val-block).
    for block in prepared.split.blocks:
        assert (
            block.size == 32
            and not prepared.split.train_areas[0][
                block.row : block.row + 32, block.col : block.col + 32
            ].any()
        )


def test_validation_blocks_are_spatially_separate_and_hold_buildings(tmp_path):
    image, mask = buildings_tile(tmp_path, 512, 512)
    tiles, _ = sd.load_tiles(image, masks=mask)
    # Buildings only in the left half: a density-blind split could miss them.
    tiles[0].label[:, 256:] = 0
    for seed in range(5):
        split = sd.split_blocks(tiles, 64, 0.25, seed)
        assert len(split.blocks) == 4  # 16 blocks of 128 px, a quarter held out
        held = ~split.train_areas[0]
        assert held.sum() == 4 * 128 * 128
        assert split.counts["validation"]["buildings"] > 0
        assert split.counts["train"]["buildings"] > 0
        assert (
            split.counts["train"]["building_pixels"] + split.counts["validation"]["building_pixels"]
            == tiles[0].label.sum()
        )
        # Stratified: the sparse half of the blocks (no building) gives validation
        # blocks too, not only the dense ones.
        densities = [
            tiles[0].label[b.row : b.row + b.size, b.col : b.col + b.size].mean()
            for b in split.blocks
        ]
        assert min(densities) == 0 and max(densities) > 0
        # No training window touches a validation block.
        sampler = sd.PatchSampler(
            tiles,
            contracts.SegmenterAssets(
                window_size=64, bands=(1,), raw_dtype="uint16", offset=(0.0,), scale=(0.06,)
            ),
            split.train_areas,
            64,
        )
        for _, r, c in sampler.windows:
            assert not held[r : r + sampler.window, c : c + sampler.window].any()
    assert len({sd.split_blocks(tiles, 64, 0.25, s).blocks for s in range(5)}) > 1


def test_tiles_too_small_to_split_are_refused(tmp_path):
    image, mask = buildings_tile(tmp_path, 64, 64)
    tiles, _ = sd.load_tiles(image, masks=mask)
    with pytest.raises(ConfigError, match="fewer than two"):
        sd.split_blocks(tiles, 64, 0.2)


def _sampler(tmp_path, building_share=0.5, augmentation=None, nodata_rows=0, spacing=40):
    image, mask = buildings_tile(tmp_path, 256, 256, nodata_rows=nodata_rows, spacing=spacing)
    tiles, info = sd.load_tiles(image, masks=mask)
    areas = [np.ones((256, 256), bool)]
    offset, scale = sd.fit_scaling(tiles, info, areas)
    assets = contracts.SegmenterAssets(
        window_size=64, bands=(1,), raw_dtype="uint16", offset=offset, scale=scale
    )
    return tiles, sd.PatchSampler(
        tiles, assets, areas, 32, augmentation or sd.Augmentation(), building_share
    )


def _batches(sampler, steps=20, batch=8, seed=0):
    pairs = [(a.numpy(), b.numpy()) for a, b in sampler.dataset(steps, batch, seed).take(steps)]
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


def test_patch_sampler_oversamples_buildings(tmp_path):
    # Sparse buildings: 9 of 8 x 8 pixels, 0.9% of the tile.
    tiles, sampler = _sampler(tmp_path, spacing=96)
    area_fraction = tiles[0].label.mean()
    _, y = _batches(sampler)
    with_building = (y[..., 0].reshape(len(y), -1).max(axis=1) > 0).mean()
    assert with_building >= 0.5
    assert y[..., 0].mean() > 2 * area_fraction
    _, uniform = _sampler(tmp_path, building_share=0.0, spacing=96)
    _, y0 = _batches(uniform)
    assert abs(y0[..., 0].mean() - area_fraction) < 0.5 * area_fraction
    assert with_building > (y0[..., 0].reshape(len(y0), -1).max(axis=1) > 0).mean()


def test_nodata_pixels_get_zero_loss_weight(tmp_path):
    from model_training import losses

    tiles, sampler = _sampler(tmp_path, augmentation=sd.Augmentation.off(), nodata_rows=100)
    x, y = _batches(sampler, steps=10)
    weight = y[..., 1]
    assert 0 < weight.mean() < 1
    # Weight 0 only where the image is nodata (raw 0, scaled to 0; some dark
    # valid pixels scale to 0 too and keep their weight).
    assert (x[..., 0][weight == 0] == 0).all()
    assert ((x[..., 0] == 0) & (weight == 1)).mean() < 0.05
    # Predictions under weight 0 change neither the loss nor the metric.
    loss = losses.SegmentationLoss("bce+jaccard")
    pred = np.clip(y[..., :1] * 0.8 + 0.1, 0, 1).astype("float32")
    noisy = np.where(weight[..., None] == 0, 0.99, pred).astype("float32")
    assert float(loss(y, pred)) == pytest.approx(float(loss(y, noisy)), rel=1e-5)
    plain = float(loss(y[..., :1], noisy))
    assert plain > float(loss(y, noisy)) + 0.1  # unweighted, the collar would count
    iou = losses.BuildingIoU()
    iou.update_state(y, noisy)
    assert float(iou.result()) == pytest.approx(1.0)


def test_same_seed_same_patches_and_augmentation(tmp_path):
    _, sampler = _sampler(tmp_path)
    a = _batches(sampler, steps=4, seed=3)
    b = _batches(sampler, steps=4, seed=3)
    c = _batches(sampler, steps=4, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # Resuming skips exactly the steps already trained.
    skipped = [x.numpy() for x, _ in sampler.dataset(4, 8, 3, skip_steps=2).take(2)]
    np.testing.assert_array_equal(np.concatenate(skipped), a[0][16:])


def test_sensor_augmentation_is_seeded_and_changes_only_the_image(tmp_path):
    _, sensor = _sampler(tmp_path, augmentation=sd.Augmentation.sensor())
    _, plain = _sampler(tmp_path)
    a, b = _batches(sensor, steps=3, seed=5), _batches(sensor, steps=3, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    p = _batches(plain, steps=3, seed=5)
    # Same windows, flips and zoom (the same draws): identical masks, other pixels.
    np.testing.assert_array_equal(a[1], p[1])
    assert np.abs(a[0] - p[0]).mean() > 1.0


def test_augmentation_moves_image_and_mask_together(tmp_path):
    _, sampler = _sampler(tmp_path)
    x, y = _batches(sampler, steps=10)
    # Buildings are the bright pixels: after flips, rotations, zoom and colour
    # changes they still coincide with the mask (up to resampling at edges).
    brightest = x[..., 0] > np.percentile(x[..., 0], 100 * (1 - y[..., 0].mean()))
    agree = (brightest == (y[..., 0] > 0)).mean()
    assert agree > 0.97
    # Zoom and colour are really applied: patches differ from plain crops.
    _, plain = _sampler(tmp_path, augmentation=sd.Augmentation.off())
    px, _ = _batches(plain, steps=10)
    assert not np.allclose(x.std(axis=(1, 2, 3)), px.std(axis=(1, 2, 3)))


def test_identity_scaling_refuses_uint16(tmp_path):
    path = write_tif(tmp_path / "t.tif", rgb(128, 64, dtype="uint16"))
    tiles, info = sd.load_tiles(
        path, footprints=write_vector(tmp_path / "f.gpkg", [square(4, 4, 10)])
    )
    with pytest.raises(ConfigError, match="percentile"):
        sd.fit_scaling(tiles, info, [np.ones((128, 64), bool)], "identity")
