"""``stac/``: a STAC Collection for the run and an Item per mask, so catalogues find the outputs.

Catalogues (STAC browsers, QGIS's STAC data source, stac-fastapi) index
STAC JSON, not folders of GeoTIFFs and Parquet. After every mask and table
is in place, :func:`write_catalog` writes, with pystac:

* ``stac/collection.json``: the run (id = run id), its lon/lat extent and
  imagery dates, the segmenter's id, the tables as assets (one asset per
  Parquet file, ``application/vnd.apache.parquet``, role ``data``) and the
  mosaic (``masks/mosaic.vrt``, asset ``mosaic``);
* ``stac/<tile>/<tile>.json``: one Item per mask, on the tile's footprint in
  lon/lat, dated by the imagery date (else the run's time, flagged by
  ``footprints:datetime_source``), with the projection extension (the
  tile's CRS, shape and transform) and the raster extension (band 1's scale
  1/255 and offset 0, so a reader gets probabilities; band 2 the binary
  mask), the COG as its ``mask`` asset;
* ``stac/footprints-stac-extension-v1.0.0.json``: the JSON schema of the
  ``footprints:`` fields (:data:`EXTENSION`, shipped in
  ``pipeline/writers/schemas/``), which every Item and the Collection list
  in ``stac_extensions``, so the catalogue validates offline against the
  STAC schemas and this one.

Hrefs are relative, so the folder can be copied or served as it is. The
JSON goes through :func:`pipeline.writers.files.write_json_atomic` (Beam's
FileSystems), so ``gs://`` outputs get their catalogue too.
"""

from __future__ import annotations

import datetime
import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from pipeline.values import BINARY_BAND, PROBABILITY_BAND, PROBABILITY_SCALE
from pipeline.writers.files import join, remove_stale_shards, write_json_atomic

if TYPE_CHECKING:
    import pystac

    from pipeline.stitching.vrt import MaskEntry

STAC_DIR = "stac"
PARQUET_TYPE = "application/vnd.apache.parquet"
#: The mosaic's media type: a GDAL virtual raster is XML.
VRT_TYPE = "application/xml"
#: The ``footprints:`` fields' extension: its JSON schema's ``$id``.
EXTENSION = "urn:footprints:stac-extension:v1.0.0"
#: The schema's file name, in ``pipeline/writers/schemas/`` and beside the catalogue.
EXTENSION_FILE = "footprints-stac-extension-v1.0.0.json"


def extension_schema() -> dict[str, Any]:
    """The JSON schema of the ``footprints:`` fields (``$id`` :data:`EXTENSION`)."""
    path = os.path.join(os.path.dirname(__file__), "schemas", EXTENSION_FILE)
    with open(path, encoding="utf-8") as f:
        return cast(dict[str, Any], json.load(f))


def _relative(path: str, start: str) -> str:
    return posixpath.relpath(path, start)


def mask_item(
    entry: MaskEntry, output: str, date: datetime.date | None, run_time: datetime.datetime
) -> pystac.Item:
    """The STAC Item (pystac) of one written mask (:class:`pipeline.stitching.vrt.MaskEntry`)."""
    import pystac
    import shapely
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension
    from rasterio.transform import Affine, array_bounds

    from pipeline.writers import geo

    scene = posixpath.splitext(posixpath.basename(entry.path))[0]
    left, bottom, right, top = array_bounds(entry.height, entry.width, Affine(*entry.transform))
    footprint = geo.orient_ccw(
        geo.to_lonlat(
            [
                shapely.box(left, bottom, right, top).segmentize(
                    max(right - left, top - bottom) / 16
                )
            ],
            entry.crs,
        )
    )[0]
    when = datetime.datetime.combine(date, datetime.time(), datetime.UTC) if date else run_time
    item = pystac.Item(
        id=scene,
        geometry=shapely.geometry.mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=when,
        properties={"footprints:datetime_source": "imagery" if date else "processing"},
        stac_extensions=[EXTENSION],
    )
    item_dir = join(output, STAC_DIR, scene)
    item.add_asset(
        "mask",
        pystac.Asset(
            href=_relative(entry.path, item_dir),
            media_type=pystac.MediaType.COG,
            roles=["data"],
            title="building probability mask",
        ),
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = entry.crs if entry.crs.upper().startswith("EPSG:") else None
    if proj.code is None:
        proj.wkt2 = entry.crs
    proj.shape = [entry.height, entry.width]
    proj.transform = list(entry.transform)
    bands = [
        RasterBand.create(
            nodata=None, data_type=DataType.UINT8, scale=PROBABILITY_SCALE, offset=0.0
        )
    ]
    if entry.count > 1:
        bands.append(RasterBand.create(data_type=DataType.UINT8, scale=1.0, offset=0.0))
    RasterExtension.ext(item.assets["mask"], add_if_missing=True).bands = bands
    item.assets["mask"].description = "bands: " + ", ".join(
        [PROBABILITY_BAND, BINARY_BAND][: entry.count]
    )
    return item


def _collection(
    items: list[pystac.Item], run_id: str, model_id: str, run_time: datetime.datetime
) -> pystac.Collection:
    """The run's ``pystac.Collection``: its extent is that of the items (the world, undated)."""
    import pystac

    if items:
        # mask_item gives every item a bbox and a datetime.
        boxes = [cast(list[float], i.bbox) for i in items]
        bbox = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        times = [cast(datetime.datetime, i.datetime) for i in items]
        interval = [min(times), max(times)]
    else:
        bbox, interval = [-180.0, -90.0, 180.0, 90.0], [run_time, run_time]
    collection = pystac.Collection(
        id=run_id,
        description=f"Building masks and footprints of run {run_id} (segmenter {model_id}).",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval])),
        license="other",
        extra_fields={"footprints:segmenter_model_id": model_id},
        stac_extensions=[EXTENSION],
    )
    return collection


def _add_assets(
    collection: pystac.Collection,
    mosaics: Sequence[str],
    tables: Mapping[str, list[str]],
    stac_dir: str,
) -> None:
    """The Collection's assets: the mosaics (VRT) and every Parquet file of the tables."""
    import pystac

    for path in mosaics:
        name = posixpath.splitext(posixpath.basename(path))[0]
        collection.add_asset(
            name,
            pystac.Asset(
                href=_relative(path, stac_dir),
                media_type=VRT_TYPE,
                roles=["data"],
                title="building probability mosaic of every mask (GDAL VRT)",
                description="one band, uint8 with scale 1/255 and offset 0 (p = value / 255), "
                "masked where no tile has data",
            ),
        )
    for name, files in sorted(tables.items()):
        for path in files:
            if not path.endswith(".parquet"):
                continue
            key = f"{name}/{posixpath.splitext(posixpath.basename(path))[0]}"
            collection.add_asset(
                key,
                pystac.Asset(
                    href=_relative(path, stac_dir),
                    media_type=PARQUET_TYPE,
                    roles=["data"],
                    title=f"{name} table" + ("" if len(files) == 1 else f" ({key})"),
                ),
            )


def write_catalog(
    written: Mapping[str, Any],
    entries: Sequence[MaskEntry],
    output: str,
    run_id: str,
    model_id: str,
    dates: Mapping[str, datetime.date | None],
    tables: Mapping[str, list[str]],
    run_time: datetime.datetime | None = None,
) -> list[str]:
    """Writes ``stac/collection.json`` and one Item per mask; returns the files written.

    Args:
        written: What ``masks/`` holds (``masks``, ``mosaics``): the step
            runs once the masks and mosaics are in place; the mosaics are
            catalogued as Collection assets.
        entries: The masks written.
        output: The run's output folder.
        run_id: The run's id (the collection id).
        model_id: The segmenter's id.
        dates: Tile scene -> imagery date (or None).
        tables: Table name -> its files (``footprints``, ``classified``, ...).
        run_time: When the run happened (default: now), for undated imagery.

    """
    run_time = run_time or datetime.datetime.now(datetime.UTC)
    stac_dir = join(output, STAC_DIR)
    items = [
        mask_item(e, output, dates.get(_scene(e.path)), run_time)
        for e in sorted(entries, key=lambda e: e.path)
    ]
    collection = _collection(items, run_id, model_id, run_time)
    _add_assets(collection, written.get("mosaics", []), tables, stac_dir)
    collection_path = join(stac_dir, "collection.json")
    out = []
    collection_dict = collection.to_dict(include_self_link=False)
    collection_dict["links"] = [
        {"rel": "item", "href": f"./{item.id}/{item.id}.json", "type": "application/json"}
        for item in items
    ]
    for item in items:
        item_dict = item.to_dict(include_self_link=False)
        item_dict["collection"] = run_id
        item_dict["links"] = [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../collection.json", "type": "application/json"},
        ]
        out.append(write_json_atomic(join(stac_dir, item.id, f"{item.id}.json"), item_dict))
    collection_dict["links"].append(
        {"rel": "root", "href": "./collection.json", "type": "application/json"}
    )
    out.append(write_json_atomic(collection_path, collection_dict))
    out.append(write_json_atomic(join(stac_dir, EXTENSION_FILE), extension_schema()))
    # Items of tiles an earlier run into this folder had and this one has not.
    remove_stale_shards(out, join(stac_dir, "*", "*.json"))
    return sorted(out)


def _scene(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]
