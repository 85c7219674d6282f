"""One mask's STAC Item (``pipeline.writers.stac.mask_item``), checked field by field."""

import datetime
import json

import pyproj
import pytest
import shapely
from stac_offline import EXTERNAL, closed_network, offline_validator

from pipeline.stitching.vrt import MaskEntry
from pipeline.writers.stac import EXTENSION, EXTENSION_FILE, mask_item

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


@pytest.fixture
def offline(monkeypatch):
    """pystac validates with :func:`offline_validator`, and the network is closed."""
    import pystac.validation

    closed_network(monkeypatch)
    validator = offline_validator()
    pystac.validation.set_validator(validator)
    yield validator
    pystac.validation.set_validator(pystac.validation.JsonSchemaSTACValidator())


def _catalog(tmp_path, dates=None):
    """A catalogue of two masks (one dated), the mosaic and a table, as a run writes it."""
    import dataclasses

    from pipeline.writers.stac import write_catalog

    out = tmp_path / "run"
    entries = [
        dataclasses.replace(_entry(), path=str(out / "masks" / "t_0_1.tif")),
        dataclasses.replace(_entry(count=1), path=str(out / "masks" / "t_0_2.tif")),
    ]
    write_catalog(
        {"masks": [e.path for e in entries], "mosaics": [str(out / "masks" / "mosaic.vrt")]},
        entries,
        str(out),
        "run-1",
        "seg-abc",
        dates if dates is not None else {"t_0_1": datetime.date(2024, 6, 30)},
        {"footprints": [str(out / "footprints" / "part-00000-of-00001.parquet")]},
        run_time=RUN_TIME,
    )
    return out / "stac" / "collection.json"


def test_catalogue_validates_offline_against_stac_and_its_own_extension_schema(tmp_path, offline):
    # Issue 23: validate_all() fetched every extension schema from the web, and
    # the footprints: fields had no schema at all.
    import pystac.validation

    path = _catalog(tmp_path)
    collection = json.loads(path.read_text())
    assert pystac.validation.validate_all(collection, str(path)) is None
    assert offline.unchecked == set(EXTERNAL)  # the two schemas no package ships
    assert EXTENSION in collection["stac_extensions"]
    assert (path.parent / EXTENSION_FILE).is_file()  # the schema travels with the catalogue
    item = json.loads((path.parent / "t_0_1" / "t_0_1.json").read_text())
    assert EXTENSION in item["stac_extensions"]


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda d: d["properties"].update({"footprints:datetime_source": "guessed"}), "item"),
        (lambda d: d["properties"].update({"footprints:colour": "red"}), "item"),
        (lambda d: d["properties"].pop("footprints:datetime_source"), "item"),
        (lambda d: d.pop("footprints:segmenter_model_id"), "collection"),
    ],
)
def test_the_extension_schema_rejects_what_it_does_not_define(tmp_path, offline, edit, where):
    import pystac
    import pystac.validation

    path = _catalog(tmp_path)
    target = path if where == "collection" else path.parent / "t_0_1" / "t_0_1.json"
    document = json.loads(target.read_text())
    edit(document)
    with pytest.raises(pystac.STACValidationError, match="urn:footprints:stac-extension"):
        pystac.validation.validate_dict(document, href=str(target))


def test_the_mosaic_is_catalogued_and_undated_tiles_say_so(tmp_path):
    path = _catalog(tmp_path)
    collection = json.loads(path.read_text())
    mosaic = collection["assets"]["mosaic"]
    assert mosaic["href"] == "../masks/mosaic.vrt" and mosaic["roles"] == ["data"]
    assert (path.parent / mosaic["href"]).resolve() == (tmp_path / "run" / "masks" / "mosaic.vrt")
    dated = json.loads((path.parent / "t_0_1" / "t_0_1.json").read_text())["properties"]
    undated = json.loads((path.parent / "t_0_2" / "t_0_2.json").read_text())["properties"]
    assert (dated["datetime"], dated["footprints:datetime_source"]) == (
        "2024-06-30T00:00:00Z",
        "imagery",
    )
    assert undated["footprints:datetime_source"] == "processing"
    assert undated["datetime"] == "2026-12-01T09:30:00Z"
