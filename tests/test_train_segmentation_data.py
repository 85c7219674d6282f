"""Tests of the segmenter's data preparation on small GeoTIFFs with a real CRS."""

from __future__ import annotations

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from hypothesis import assume, given
from hypothesis import strategies as st
from rasterio.transform import from_origin

from footprints import contracts
from footprints.errors import ConfigError, InputError
from model_training import segmentation_data as sd
from model_training.configs import SegmenterConfig
from model_training.segmenter import prepare_data

CRS = "EPSG:32615"
ORIGIN = (500_000.0, 4_650_000.0)
PIXEL = 1.0


def write_tif(path, data, crs=CRS, origin=ORIGIN, nodata=None):
    """Writes [bands, H, W] data as a GeoTIFF with a 1 m grid."""
    bands, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands,
                       dtype=data.dtype.name, crs=crs, transform=from_origin(*origin, PIXEL,
                                                                               PIXEL),
                       nodata=nodata) as dst:
        dst.write(data)
    return str(path)


def square(col, row, size, origin=ORIGIN):
    """A polygon covering pixels [row, row+size) x [col, col+size) of a tile at origin."""
    x0, y0 = origin[0] + col * PIXEL, origin[1] - row * PIXEL
    return shapely.box(x0, y0 - size * PIXEL, x0 + size * PIXEL, y0)


def write_vector(path, geoms, crs=CRS):
    if crs != CRS:
        transformer = pyproj.Transformer.from_crs(CRS, crs, always_xy=True)
        geoms = [shapely.transform(g, lambda xy: np.column_stack(
            transformer.transform(xy[:, 0], xy[:, 1]))) for g in geoms]
    pyogrio.raw.write(str(path), shapely.to_wkb(np.array(geoms, dtype=object)),
                      [np.array([f"b{i}" for i in range(len(geoms))], dtype=object)], ["id"],
                      driver="GPKG", geometry_type="Polygon", crs=crs)
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
    vector = write_vector(tmp_path / "fp.gpkg",
                          [square(10, 20, 8), square(60, 5, 10)], crs=vector_crs)
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
    images = (write_tif(tmp_path / "tiles" / "r0.tif", rgb()),
              write_tif(tmp_path / "tiles" / "r1.tif", rgb()))
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, 3:9, 3:9] = 1
    masks = (write_tif(tmp_path / "masks" / "r1_mask.tif", label),
             write_tif(tmp_path / "masks" / "r0.tif", label))
    assert sd.pair_masks(images, masks) == [masks[1], masks[0]]
    with pytest.raises(InputError, match="matching masks"):
        sd.pair_masks(images, masks[:1])
    shifted = write_tif(tmp_path / "masks" / "moved.tif", label,
                        origin=(ORIGIN[0] + 5, ORIGIN[1]))
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
        covered[s:s + size] = True
    assert covered.all()


def test_window_starts_docstring_example():
    assert sd.window_starts(10, 4, 4) == [0, 4, 6]


def test_split_rows_keeps_a_patch_on_both_sides():
    assert sd.split_rows(256, 64, 0.25) == 192
    assert sd.split_rows(256, 64, 0.1) == 192  # the strip is at least one patch
    with pytest.raises(ConfigError, match="too small"):
        sd.split_rows(100, 64, 0.25)


def test_uint16_four_band_tiles_get_per_band_scaling_and_nodata_patches_are_skipped(tmp_path):
    rng = np.random.default_rng(3)
    data = np.zeros((4, 128, 64), np.uint16)
    for band, (lo, hi) in enumerate([(100, 900), (200, 1200), (300, 2000), (1000, 4000)]):
        data[band] = rng.integers(lo, hi, (128, 64))
    data[:, :32, :] = 0  # a nodata band along the top
    path = write_tif(tmp_path / "t.tif", data, nodata=0)
    label = np.zeros((1, 128, 64), np.uint8)
    label[0, 40:60, 10:30] = 1
    write_tif(tmp_path / "t_mask.tif", label)
    config = SegmenterConfig(images=path, masks=str(tmp_path / "t_mask.tif"),
                             output=str(tmp_path / "out"), patch_size=32, stride=32, depth=2,
                             val_fraction=0.25)
    prepared = prepare_data(config)
    assets = prepared.assets
    assert assets.raw_dtype == "uint16" and assets.bands == (1, 2, 3, 4)
    # The 1st..99th percentiles of each band's valid pixels map to 0..255.
    assert assets.offset[0] == pytest.approx(108, abs=10)
    assert assets.offset[3] == pytest.approx(1030, abs=40)
    assert assets.scale[3] == pytest.approx(255 / 2940, rel=0.05)
    scaled = contracts.scale_to_model_input(data[:, 40:].transpose(1, 2, 0), assets)
    assert scaled.dtype == np.uint8 and scaled.min() == 0 and scaled.max() == 255
    # 96 training rows: the 32-row nodata band is one skipped row of 2 patches.
    assert prepared.train.skipped == 2
    assert len(prepared.train) == 4 and len(prepared.val) == 2
    assert prepared.train.images.shape[1:] == (32, 32, 4)
    assert prepared.train.masks.sum() == 400


def test_identity_scaling_refuses_uint16(tmp_path):
    path = write_tif(tmp_path / "t.tif", rgb(128, 64, dtype="uint16"))
    tiles, info = sd.load_tiles(path, footprints=write_vector(tmp_path / "f.gpkg",
                                                              [square(4, 4, 10)]))
    with pytest.raises(ConfigError, match="percentile"):
        sd.fit_scaling(tiles, info, [96], "identity")


def test_segmentation_dataset_batches_and_augments_jointly():
    images = np.zeros((6, 16, 16, 3), np.uint8)
    images[:, :4, :, 0] = 255  # the mask marks exactly the red rows
    masks = (images[..., :1] > 0).astype(np.uint8)
    ds = sd.segmentation_dataset(sd.Patches(images, masks, 0), 4, training=True)
    x, y = next(iter(ds))
    assert x.shape == (4, 16, 16, 3) and y.shape == (4, 16, 16, 1)
    # Colour changes the image, never the mask; geometry moves both.
    np.testing.assert_array_equal(x.numpy()[..., 0] > x.numpy()[..., 1] + 50,
                                  y.numpy()[..., 0] > 0)
