"""The provenance of ``footprints/`` and ``classified/`` rows (``pipeline.writers.footprints``)."""

import datetime

import numpy as np
import pytest
import rasterio
import shapely
from raster_fixtures import RES, X0, Y0, write_geotiff
from rasterio.transform import from_origin

from footprints import contracts
from footprints.errors import ConfigError
from pipeline.writers.footprints import (
    SCORE_COLUMNS,
    classified_row,
    footprint_row,
    footprint_rows,
    parse_imagery_date,
    tiff_date,
)


def test_imagery_date_is_iso_or_a_config_error_with_the_fix():
    assert parse_imagery_date("2024-06-30") == datetime.date(2024, 6, 30)
    with pytest.raises(ConfigError, match="YYYY-MM-DD, for example 2024-06-30"):
        parse_imagery_date("30/06/2024")


def test_tiff_date_reads_the_datetime_tag_and_never_guesses(tmp_path):
    data = np.zeros((1, 16, 16), np.uint16)
    transform = from_origin(X0, Y0, RES, RES)
    tagged = write_geotiff(tmp_path / "a.tif", data, transform=transform)
    with rasterio.open(tagged, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2023:04:05 10:15:00")
    odd = write_geotiff(tmp_path / "b.tif", data, transform=transform)
    with rasterio.open(odd, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="April 2023")
    plain = write_geotiff(tmp_path / "c.tif", data, transform=transform)
    (tmp_path / "d.tif").write_text("not a raster")
    assert tiff_date(tagged) == datetime.date(2023, 4, 5)
    assert tiff_date(odd) is None
    assert tiff_date(plain) is None
    assert tiff_date(str(tmp_path / "d.tif")) is None


def test_tiff_date_reads_acquisition_metadata_when_the_tiff_tag_is_absent(tmp_path):
    # Issue 23: imagery dated only by acquisition metadata was "undated", and
    # its STAC items carried the processing time.
    data = np.zeros((1, 16, 16), np.uint8)
    transform = from_origin(X0, Y0, RES, RES)
    acquired = write_geotiff(tmp_path / "a.tif", data, transform=transform)
    with rasterio.open(acquired, "r+") as dst:
        dst.update_tags(ACQUISITIONDATE="20220817")
    vendor = write_geotiff(tmp_path / "b.tif", data, transform=transform)
    with rasterio.open(vendor, "r+") as dst:
        dst.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2021-09-01T16:02:11.000Z")
    both = write_geotiff(tmp_path / "c.tif", data, transform=transform)
    with rasterio.open(both, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2023:04:05 10:15:00", ACQUISITIONDATE="2022-08-17")
    assert tiff_date(acquired) == datetime.date(2022, 8, 17)
    assert tiff_date(vendor) == datetime.date(2021, 9, 1)
    assert tiff_date(both) == datetime.date(2023, 4, 5)  # the TIFF tag first


def test_footprint_row_adds_provenance_and_orients_the_polygon():
    clockwise = shapely.Polygon([(X0, Y0), (X0 + 10, Y0), (X0 + 10, Y0 - 8), (X0, Y0 - 8)])
    assert not clockwise.exterior.is_ccw
    row = {
        "tile": "t0",
        "area_m2": 80.0,
        "mean_probability": 0.9,
        "geometry": shapely.to_wkb(clockwise),
    }
    dates = {"t0": datetime.date(2024, 6, 30)}
    got = footprint_row(row, "EPSG:32615", "segmenter-1", "run-1", dates)
    geom = shapely.from_wkb(got["geometry"])
    assert geom.exterior.is_ccw and geom.equals(clockwise)
    assert (got["segmenter_model_id"], got["run_id"], got["imagery_date"]) == (
        "segmenter-1",
        "run-1",
        datetime.date(2024, 6, 30),
    )
    # UTM 15N, 500 km easting: the central meridian, -93 degrees.
    assert got["centroid_lon"] == pytest.approx(-93.0, abs=1e-3)
    assert 41 < got["centroid_lat"] < 43
    # The id is stable: the same polygon in another row order gets the same id.
    again = footprint_row(dict(reversed(list(row.items()))), "EPSG:32615", "m", "r", {})
    assert again["footprint_id"] == got["footprint_id"] and again["imagery_date"] is None


def _footprint():
    return {name: f"value of {name}" for name in contracts.FOOTPRINTS_SCHEMA.names}


def test_classified_row_joins_the_scores_of_a_scored_footprint():
    score = {name: f"score {name}" for name in SCORE_COLUMNS} | {"footprint_id": "x"}
    got = classified_row(("x", {"footprint": [_footprint()], "score": [score]}), "clf-1")
    assert set(got) <= set(contracts.CLASSIFIED_SCHEMA.names)
    assert got["classifier_model_id"] == "clf-1"
    assert all(got[name] == f"score {name}" for name in SCORE_COLUMNS)
    assert got["tile"] == "value of tile"


def test_classified_row_of_an_unscored_footprint_has_null_scores():
    got = classified_row(("x", {"footprint": [_footprint()], "score": []}), "clf-1")
    assert got["classifier_model_id"] is None
    assert all(got[name] is None for name in SCORE_COLUMNS)


def test_a_footprint_joined_twice_is_an_error():
    with pytest.raises(ValueError):
        classified_row(("x", {"footprint": [_footprint(), _footprint()], "score": []}), "c")


def test_footprint_rows_of_a_batch_equal_each_row_on_its_own():
    # Buildings spread over a few kilometres, one with a hole, in two tiles.
    rng = np.random.default_rng(3)
    rows = []
    for i in range(25):
        x, y = X0 + rng.uniform(0, 3000), Y0 - rng.uniform(0, 3000)
        poly = shapely.box(x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30))
        if i == 4:
            poly = poly.difference(shapely.box(x + 2, y + 2, x + 4, y + 4))
        rows.append(
            {
                "tile": f"t{i % 2}",
                "area_m2": poly.area,
                "mean_probability": 0.8,
                "geometry": shapely.to_wkb(shapely.orient_polygons(poly, exterior_cw=True)),
            }
        )
    dates = {"t1": datetime.date(2024, 6, 30)}
    batch = footprint_rows(rows, "EPSG:32615", "m", "r", dates)
    assert batch == [footprint_row(row, "EPSG:32615", "m", "r", dates) for row in rows]
    assert len({row["footprint_id"] for row in batch}) == len(rows)
    for row, got in zip(rows, batch, strict=True):  # each row keeps its own polygon and tile
        geom = shapely.from_wkb(got["geometry"])
        assert geom.equals(shapely.from_wkb(row["geometry"])) and geom.exterior.is_ccw
        assert got["imagery_date"] == dates.get(row["tile"])
    assert footprint_rows([], "EPSG:32615", "m", "r", dates) == []
