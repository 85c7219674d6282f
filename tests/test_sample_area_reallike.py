"""The real-like tile: 12-bit single band, nodata collar, labels in another CRS,
roofs not a brightness class, and byte-identical from a seed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio

from footprints.errors import ConfigError
from footprints_app import cli
from footprints_app.sample_area.reallike import NODATA, RealLikeConfig, generate_real_like
from model_training import segmentation_data as sd

SMALL = RealLikeConfig(seed=5, width=512, buildings_per_half=12)


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    return generate_real_like(str(tmp_path_factory.mktemp("rl")), SMALL)


def test_tile_is_single_band_12_bit_with_a_declared_irregular_nodata_collar(area):
    for path in area.tiles:
        with rasterio.open(path) as src:
            assert src.count == 1 and src.dtypes[0] == "uint16" and src.nodata == NODATA
            assert src.crs.to_epsg() == 32615 and src.res == (0.5, 0.5)
            assert (src.width, src.height) == (256, 256)
            data = src.read(1)
            valid = src.dataset_mask() > 0
        assert data.max() <= 4095 and (data[valid] > 0).all() and (data[~valid] == 0).all()
        first_valid_row = valid.argmax(axis=0)
        assert 0.01 < (~valid).mean() < 0.2
        assert len(np.unique(first_valid_row)) > 3  # a wavy edge, not a straight cut
        assert np.std(data[valid].astype(float)) > 100  # texture and noise, not flat


def test_labels_are_in_another_crs_and_reproject_onto_the_masks(area):
    with open(area.footprints, encoding="utf-8") as f:
        collection = json.load(f)
    assert len(collection["features"]) == area.counts["total"] == 24
    assert area.counts["west"] == area.counts["east"] == 12
    lon, lat = collection["features"][0]["geometry"]["coordinates"][0][0]
    assert -180 < lon < 180 and -90 < lat < 90
    burnt = sd.rasterize_footprints(area.footprints, area.tiles)
    for mask_path, mask in zip(area.masks, burnt, strict=True):
        with rasterio.open(mask_path) as src:
            truth = src.read(1)
        assert truth.sum() > 0 and (mask != truth).sum() < 0.02 * truth.sum()


def test_roof_brightness_gives_no_class_cue(tmp_path):
    area = generate_real_like(str(tmp_path), RealLikeConfig(seed=1, width=1024))
    darker = brighter = 0
    with rasterio.open(area.tiles[0]) as src:
        data = src.read(1).astype(float)
        valid = src.dataset_mask() > 0
    ground = np.median(data[valid])
    tiles, _ = sd.load_tiles(area.tiles[0], footprints=area.footprints)
    labels = sd._connected(tiles[0].label)
    for region in range(1, labels.max() + 1):
        inside = (labels == region) & valid
        if inside.sum() > 50:
            median = np.median(data[inside])
            darker += median < ground
            brighter += median > ground
    # Both are common: a threshold on brightness cannot find the buildings.
    assert darker >= 5 and brighter >= 5, (darker, brighter)


def test_same_seed_same_bytes_and_four_band_variant(tmp_path, area):
    again = generate_real_like(str(tmp_path / "again"), SMALL)
    for a, b in zip(area.tiles + area.masks, again.tiles + again.masks, strict=True):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()
    other = generate_real_like(
        str(tmp_path / "other"), RealLikeConfig(seed=6, width=512, buildings_per_half=12)
    )
    with rasterio.open(area.tiles[0]) as x, rasterio.open(other.tiles[0]) as y:
        assert not np.array_equal(x.read(), y.read())
    four = generate_real_like(
        str(tmp_path / "rgbn"), RealLikeConfig(seed=5, width=512, bands="rgbn")
    )
    with rasterio.open(four.tiles[1]) as src:
        assert src.count == 4 and src.descriptions == ("red", "green", "blue", "nir")
        assert src.nodata == NODATA


def test_cli_style_real_like_and_its_flag_checks(tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert (
        cli.main(["sample-area", "--style", "real-like", "--output", out, "--tile-size", "512"])
        == 0
    )
    assert "real-like tile: 512x256" in capsys.readouterr().out
    assert os.path.exists(os.path.join(out, "tiles", "east.tif"))
    assert cli.main(["sample-area", "--style", "real-like", "--output", out, "--density", "2"]) == 2
    assert "do not apply" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not one of"):
        RealLikeConfig(bands="rgb")
