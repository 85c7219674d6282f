"""Tests of the synthetic sample area (footprints_app.sample_area) and its CLI subcommand.

Most tests share one default-sized area (2x2 tiles of 512 px, built once per
module) and compare what is on disk with an independent reading: vectors with
pyogrio or pyarrow, rasters with rasterio, masks re-rasterized from the file.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pyogrio.raw
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from rasterio.enums import ColorInterp

from footprints.errors import ConfigError
from footprints_app import cli
from footprints_app.sample_area import (
    NON_RESIDENTIAL_CLASSES,
    RESIDENTIAL_CLASSES,
    SampleAreaConfig,
    generate_sample_area,
    is_residential,
)

SMALL = dict(tiles_x=2, tiles_y=1, tile_size=256, pixel_size=1.0)


def read_vectors(path: str):
    """(geometries, attribute columns, CRS) of a footprints file in any supported format."""
    if path.endswith(".parquet"):
        table = pq.read_table(path)
        geo = json.loads(table.schema.metadata[b"geo"])
        crs = pyproj.CRS.from_json_dict(geo["columns"]["geometry"]["crs"])
        columns = {n: table.column(n).to_pylist() for n in ("id", "building", "region")}
        return shapely.from_wkb(table.column("geometry").to_pylist()), columns, crs
    meta, _, wkb, values = pyogrio.raw.read(path)
    columns = {name: list(v) for name, v in zip(meta["fields"], values, strict=True)}
    return shapely.from_wkb(wkb), columns, pyproj.CRS.from_user_input(meta["crs"])


def read_tile(path: str):
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.profile


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    return generate_sample_area(str(tmp_path_factory.mktemp("area")), SampleAreaConfig(seed=11))


@pytest.fixture(scope="module")
def vectors(area):
    return read_vectors(area.footprints)


def test_same_seed_gives_byte_identical_tiles_and_masks(tmp_path):
    config = SampleAreaConfig(seed=5, **SMALL)
    a = generate_sample_area(str(tmp_path / "a"), config)
    b = generate_sample_area(str(tmp_path / "b"), config)
    for left, right in zip(a.tiles + a.masks, b.tiles + b.masks, strict=True):
        with open(left, "rb") as f, open(right, "rb") as g:
            assert f.read() == g.read(), left
    assert a.counts == b.counts
    c = generate_sample_area(str(tmp_path / "c"), SampleAreaConfig(seed=6, **SMALL))
    assert not np.array_equal(read_tile(a.tiles[0])[0], read_tile(c.tiles[0])[0])


def test_tiles_are_georeferenced_tiled_rgb_geotiffs(area):
    assert len(area.tiles) == 4 and len(area.masks) == 4
    config = area.config
    for path in area.tiles:
        row, col = map(int, re.search(r"tile_r(\d+)_c(\d+)\.tif$", path).groups())
        with rasterio.open(path) as src:
            assert src.crs == rasterio.crs.CRS.from_string("EPSG:32615")
            assert src.res == (0.5, 0.5)
            assert src.transform == rasterio.transform.from_origin(
                500000.0 + col * 256.0, 4650000.0 - row * 256.0, 0.5, 0.5
            )
            assert (src.width, src.height, src.count) == (512, 512, 3)
            assert src.dtypes == ("uint8",) * 3
            assert src.block_shapes == [(256, 256)] * 3
            assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
            assert src.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            assert src.descriptions == ("red", "green", "blue")
            assert src.nodata is None
            # Dated, as real orthophotos are (issue 23: the demo's imagery_date was null).
            assert src.tags()["TIFFTAG_DATETIME"] == "2024:06:15 10:30:00"
            data = src.read()
        assert 20 < data.mean() < 220 and data.std() > 10  # an image, not a constant
    assert config.tile_transform(1, 1) == rasterio.transform.from_origin(
        500256.0, 4649744.0, 0.5, 0.5
    )
    assert not [n for n in os.listdir(area.root) if n.startswith(".")]


def test_masks_equal_rasterized_footprints_from_the_file(area, vectors):
    geoms, _, crs = vectors
    assert crs == pyproj.CRS.from_user_input("EPSG:32615")
    assert set(shapely.get_type_id(geoms)) == {3}  # Polygon
    covered = 0
    for tile_path, mask_path in zip(area.tiles, area.masks, strict=True):
        mask, transform, profile = read_tile(mask_path)
        assert profile["dtype"] == "uint8" and profile["transform"] == read_tile(tile_path)[1]
        expected = rasterio.features.rasterize(
            ((g, 1) for g in geoms), out_shape=mask.shape[1:], transform=transform, dtype="uint8"
        )
        np.testing.assert_array_equal(mask[0], expected)
        covered += int(mask.sum())
    assert set(np.unique(mask)) <= {0, 1}
    assert covered > 1000


def test_some_footprints_straddle_tile_edges(area, vectors):
    geoms = vectors[0]
    x_edge, y_edge = 500256.0, 4649744.0
    edges = shapely.union(
        shapely.LineString([(x_edge, 4649488.0), (x_edge, 4650000.0)]),
        shapely.LineString([(500000.0, y_edge), (500512.0, y_edge)]),
    )
    assert int(shapely.intersects(geoms, edges).sum()) >= 2


def test_classes_ids_and_regions(area, vectors):
    geoms, columns, _ = vectors
    ids, classes, regions = columns["id"], columns["building"], columns["region"]
    assert len(ids) == len(set(ids)) == area.counts["total"] == len(geoms)
    assert all(re.fullmatch(r"fp-\d{6}", i) for i in ids)
    assert set(classes) <= set(RESIDENTIAL_CLASSES) | set(NON_RESIDENTIAL_CLASSES)
    assert {"house", "barn"} <= set(classes)
    assert any(is_residential(c) for c in classes) and not all(is_residential(c) for c in classes)
    for value in set(classes):
        assert area.counts[value] == classes.count(value)
    assert set(regions) == {"county-a", "county-b"}
    x = shapely.get_x(shapely.centroid(geoms))
    west = np.array(regions) == "county-a"
    assert x[west].max() <= 500256.0 <= x[~west].min()
    manifest = json.load(open(os.path.join(area.root, "manifest.json")))
    assert manifest["counts"] == area.counts and manifest["config"]["seed"] == 11


def test_residential_and_non_residential_overlap_in_size_and_roof_colour(area, vectors):
    geoms, columns, _ = vectors
    residential = np.array([is_residential(c) for c in columns["building"]])
    areas = shapely.area(geoms)
    res, non = areas[residential], areas[~residential]
    # Size alone must not separate the classes: each has members well inside the
    # other's typical (10th to 90th percentile) range.
    for these, others in ((non, res), (res, non)):
        lo, hi = np.percentile(others, [10, 90])
        assert ((these >= lo) & (these <= hi)).sum() >= 2
    # Nor must roof brightness: mean roof colour of each footprint from the image.
    sums, counts = np.zeros((len(geoms), 3)), np.zeros(len(geoms))
    for tile_path in area.tiles:
        data, transform, _ = read_tile(tile_path)
        ids = rasterio.features.rasterize(
            ((g, i + 1) for i, g in enumerate(geoms)),
            out_shape=data.shape[1:],
            transform=transform,
            dtype="int32",
        )
        for band in range(3):
            sums[:, band] += np.bincount(ids.ravel(), data[band].ravel(), len(geoms) + 1)[1:]
        counts += np.bincount(ids.ravel(), minlength=len(geoms) + 1)[1:]
    seen = counts > 0
    brightness = (sums[seen] / counts[seen, None]).mean(axis=1)
    res_b, non_b = brightness[residential[seen]], brightness[~residential[seen]]
    lo, hi = np.percentile(res_b, [10, 90])
    assert np.mean((non_b >= lo) & (non_b <= hi)) > 0.2


def test_footprints_crs_reprojects_onto_the_right_pixels(tmp_path):
    area = generate_sample_area(
        str(tmp_path),
        SampleAreaConfig(seed=2, footprints_crs="EPSG:4326", footprints_format="geojson", **SMALL),
    )
    geoms, _, crs = read_vectors(area.footprints)
    assert crs.to_epsg() == 4326
    lon, lat = shapely.get_coordinates(geoms).T
    assert (-94 < lon).all() and (lon < -92).all() and (41 < lat).all() and (lat < 43).all()
    back = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32615", always_xy=True)
    utm = shapely.transform(geoms, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    for mask_path in area.masks:
        mask, transform, _ = read_tile(mask_path)
        burnt = rasterio.features.rasterize(
            ((g, 1) for g in utm), out_shape=mask.shape[1:], transform=transform, dtype="uint8"
        )
        assert np.mean(burnt == mask[0]) > 0.9995
        assert mask.sum() > 0


@pytest.mark.parametrize("fmt", ["gpkg", "geojson", "shp", "parquet"])
def test_each_footprints_format_is_readable(tmp_path, fmt):
    area = generate_sample_area(
        str(tmp_path), SampleAreaConfig(seed=4, footprints_format=fmt, **SMALL)
    )
    assert area.footprints.endswith("." + fmt)
    geoms, columns, crs = read_vectors(area.footprints)
    assert crs == pyproj.CRS.from_user_input("EPSG:32615")
    assert len(geoms) == area.counts["total"] > 0
    assert sorted(columns["id"]) == [f"fp-{i + 1:06d}" for i in range(len(geoms))]
    if fmt == "parquet":
        geo = json.loads(pq.read_schema(area.footprints).metadata[b"geo"])
        assert geo["primary_column"] == "geometry"
        assert geo["columns"]["geometry"]["encoding"] == "WKB"
        assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32615}


def test_uint16_four_band_tiles_hold_12_bit_values_with_bright_vegetation_nir(tmp_path):
    area = generate_sample_area(
        str(tmp_path), SampleAreaConfig(seed=3, bands="rgbn", dtype="uint16", **SMALL)
    )
    data, _, profile = read_tile(area.tiles[0])
    mask = read_tile(area.masks[0])[0][0].astype(bool)
    assert profile["count"] == 4 and profile["dtype"] == "uint16"
    with rasterio.open(area.tiles[0]) as src:
        assert src.descriptions == ("red", "green", "blue", "nir")
    assert 255 < data.max() <= 4095
    red, nir = data[0].astype(float), data[3].astype(float)
    green_ground = ~mask & (data[1] > data[0])
    assert nir[green_ground].mean() > 1.5 * red[green_ground].mean()  # vegetation: NIR >> red


def test_gray_tiles_are_luminance(tmp_path):
    rgb = generate_sample_area(str(tmp_path / "rgb"), SampleAreaConfig(seed=8, **SMALL))
    gray = generate_sample_area(
        str(tmp_path / "gray"), SampleAreaConfig(seed=8, bands="gray", **SMALL)
    )
    colour, _, _ = read_tile(rgb.tiles[0])
    mono, _, profile = read_tile(gray.tiles[0])
    assert profile["count"] == 1 and profile["dtype"] == "uint8"
    with rasterio.open(gray.tiles[0]) as src:
        assert src.descriptions == ("gray",)
    luminance = colour.astype(float).T @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luminance.T - mono[0]).max() <= 1.5


def test_rerun_into_the_same_folder_replaces_outputs(tmp_path):
    generate_sample_area(str(tmp_path), SampleAreaConfig(seed=1, footprints_format="shp", **SMALL))
    assert os.path.exists(tmp_path / "tiles" / "tile_r0_c1.tif")
    area = generate_sample_area(
        str(tmp_path), SampleAreaConfig(seed=1, tiles_x=1, tiles_y=1, tile_size=256, pixel_size=1.0)
    )
    assert sorted(os.listdir(tmp_path / "tiles")) == ["tile_r0_c0.tif"]
    assert sorted(os.listdir(tmp_path / "masks")) == ["tile_r0_c0.tif"]
    assert sorted(os.listdir(tmp_path)) == ["footprints.gpkg", "manifest.json", "masks", "tiles"]
    assert area.tiles == (str(tmp_path / "tiles" / "tile_r0_c0.tif"),)


@pytest.mark.parametrize(
    "field, value, hint",
    [
        ("pixel_size", 5.0, "0.1 and 2.0"),
        ("bands", "cmyk", "rgb, rgbn, gray"),
        ("dtype", "float32", "uint8, uint16"),
        ("crs", "EPSG:4326", "UTM"),
        ("footprints_crs", "not a crs", "EPSG:4326"),
        ("footprints_format", "kml", "parquet"),
        ("block_size", 100, "multiple of 16"),
        ("tiles_x", 0, "1 to 64"),
        ("seed", -1, "non-negative"),
        ("regions", 27, "1 to 26"),
        ("density", 0.0, "0.1 and 5"),
        ("origin", (1.0,), "upper-left"),
    ],
)
def test_invalid_config_says_how_to_fix(field, value, hint):
    with pytest.raises(ConfigError, match=re.escape(hint)):
        SampleAreaConfig(**{field: value})


def test_cli_writes_an_area_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(
        [
            "sample-area",
            "--output",
            str(out),
            "--seed",
            "9",
            "--tiles",
            "2x1",
            "--tile-size",
            "256",
            "--pixel-size",
            "1.0",
            "--footprints-format",
            "parquet",
            "--regions",
            "1",
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert "2 tiles" in line and str(out) in line and "footprints" in line
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["config"]["tiles_x"] == 2 and manifest["regions"] == ["county-a"]
    assert sorted(os.listdir(out / "tiles")) == ["tile_r0_c0.tif", "tile_r0_c1.tif"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--tiles", "3by2"],
        ["--bands", "cmyk"],
        ["--seed", "-1"],
        ["--pixel-size", "abc"],
        ["--footprints-format", "kml"],
        ["--density", "lots"],
    ],
)
def test_cli_bad_flags_exit_2_with_a_fix(tmp_path, capsys, flags):
    assert cli.main(["sample-area", "--output", str(tmp_path / "x"), *flags]) == 2
    assert "error:" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
