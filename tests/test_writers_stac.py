"""One mask's STAC Item (``pipeline.writers.stac.mask_item``), checked field by field."""

import datetime

import pyproj
import pytest
import shapely

from pipeline.stitching.vrt import MaskEntry
from pipeline.writers.stac import mask_item

RUN_TIME = datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.UTC)


def _entry(crs="EPSG:32615", count=2):
    # 200 x 100 pixels of 0.5 m: 100 m east-west, 50 m north-south.
    return MaskEntry(
        path="/runs/r1/masks/t_0_1.tif",
        crs=crs,
        transform=(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_650_000.0),
        width=200,
        height=100,
        count=count,
        masked=False,
        block=256,
    )


def test_item_is_the_mask_footprint_in_lonlat_dated_by_the_imagery():
    item = mask_item(_entry(), "/runs/r1", datetime.date(2024, 6, 30), RUN_TIME)
    assert item.id == "t_0_1"
    assert item.datetime == datetime.datetime(2024, 6, 30, tzinfo=datetime.UTC)
    assert item.properties["footprints:datetime_source"] == "imagery"
    # The footprint, back in UTM, is the tile's box.
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32615", always_xy=True)
    lonlat = shapely.geometry.shape(item.geometry)
    assert lonlat.exterior.is_ccw
    utm = shapely.transform(lonlat, lambda xy: list(zip(*to_utm.transform(*xy.T), strict=True)))
    assert utm.bounds == pytest.approx((500_000.0, 4_649_950.0, 500_100.0, 4_650_000.0), abs=1e-3)
    assert item.bbox == pytest.approx(list(lonlat.bounds))


def test_item_carries_projection_raster_bands_and_a_relative_href():
    item = mask_item(_entry(), "/runs/r1", None, RUN_TIME)
    assert item.datetime == RUN_TIME
    assert item.properties["footprints:datetime_source"] == "processing"
    asset = item.assets["mask"]
    assert asset.href == "../../masks/t_0_1.tif"  # from stac/<tile>/ to masks/
    assert item.properties["proj:code"] == "EPSG:32615"
    assert item.properties["proj:shape"] == [100, 200]
    bands = asset.extra_fields["raster:bands"]
    assert len(bands) == 2 and bands[0]["scale"] == pytest.approx(1 / 255)
    one_band = mask_item(_entry(count=1), "/runs/r1", None, RUN_TIME)
    assert len(one_band.assets["mask"].extra_fields["raster:bands"]) == 1


def test_a_crs_without_an_epsg_code_is_written_as_wkt2():
    wkt = pyproj.CRS("EPSG:32615").to_wkt()
    item = mask_item(_entry(crs=wkt), "/runs/r1", None, RUN_TIME)
    assert item.properties.get("proj:code") is None
    assert item.properties["proj:wkt2"] == wkt
