"""The tables as data teams load them: GeoParquet 1.1 in full, lon/lat, BigQuery's rules.

A real ``footprints segment --classifier`` run over two 4-band NAIP-like
tiles in Texas state-plane feet (EPSG:2278, one with a TIFF DateTime tag),
written in EPSG:4326, and a real ``footprints score`` run in UTM. Every
table is checked the way its consumers read it: the geoparquet-validator
from PyPI (core, covering and distribution classes), DuckDB (native
GEOMETRY), geopandas and pyarrow; lon/lat and areas against shapely in a
metric CRS; BigQuery's rules (ranges, orientation, validity, schema types)
since BigQuery itself cannot run here.
"""

from __future__ import annotations

import glob
import json
import os
import re

import duckdb
import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from oracles import sphere_problems
from table_fixtures import FEET, classified_run

from footprints import contracts
from footprints_app import cli
from pipeline.writers import geo
from pipeline.writers.tables import (
    bigquery_schema,
    geo_file_table,
    geo_metadata,
    geoparquet_schema,
)

# --------------------------------------------------------------------------
# Plain functions
# --------------------------------------------------------------------------


def test_hilbert_keys_walk_a_grid_cell_by_adjacent_cell():
    xs, ys = np.meshgrid(np.arange(8.0), np.arange(8.0))
    keys = geo.hilbert_keys(xs.ravel(), ys.ravel(), (0, 0, 7, 7), order=3)
    assert sorted(keys.tolist()) == list(range(64))
    path = np.column_stack([xs.ravel(), ys.ravel()])[np.argsort(keys)]
    steps = np.abs(np.diff(path, axis=0)).sum(axis=1)
    assert (steps == 1).all()  # a Hilbert curve never jumps


def test_quadkeys_match_bing_tile_numbering():
    # Bing's documented example: tile x=3, y=5 at level 3 is quadkey "213".
    n = 8
    lon = (3 + 0.5) / n * 360 - 180
    lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * (5 + 0.5) / n))))
    assert geo.quadkeys(np.array([lon]), np.array([lat]), level=3) == ["213"]


def test_stable_ids_depend_on_the_polygon_only():
    a = shapely.box(500_000, 4_200_000, 500_010, 4_200_008)
    b = shapely.box(500_100, 4_200_000, 500_110, 4_200_008)
    ids = geo.stable_ids([a, b], "EPSG:32615")
    assert ids == geo.stable_ids([a, b], "EPSG:32615")
    assert geo.stable_ids([b], "EPSG:32615") == ids[1:]  # neighbours do not matter
    assert len(set(ids)) == 2 and all(len(i.split("-")[0]) == geo.QUADKEY_LEVEL for i in ids)
    # The same building in another CRS keeps its id (ids come from lon/lat).
    moved = geo.to_lonlat([a], "EPSG:32615")
    assert geo.stable_ids(moved, "EPSG:4326") == ids[:1]


def test_sphere_problems_catch_what_bigquery_rejects_or_reads_otherwise():
    good = geo.orient_ccw([shapely.box(-93.0, 42.0, -92.9999, 42.0001)])[0]
    assert sphere_problems([good]) == []
    clockwise = shapely.box(-93.0, 42.0, -92.9999, 42.0001, ccw=False)
    across = shapely.box(-179.9, 0, 179.9, 0.001)
    huge = shapely.box(-93.0, 42.0, -92.0, 42.001)
    problems = sphere_problems([clockwise, across, huge, None])
    assert any("row 0: clockwise" in p for p in problems)
    assert any("row 1: spans the antimeridian" in p for p in problems)
    assert any("row 2: an edge of" in p for p in problems)


def _utm_rows(n: int, seed: int, missing: bool = False) -> tuple[pa.Schema, list[dict]]:
    """``n`` 12 x 9 m buildings in UTM 15N and their schema; ``missing``: every 50th has none."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(500_000, 510_000, n)
    y = rng.uniform(4_200_000, 4_210_000, n)
    geoms = [
        None if missing and i % 50 == 7 else shapely.box(a, b, a + 12, b + 9)
        for i, (a, b) in enumerate(zip(x, y, strict=True))
    ]
    lon, lat = geo.lonlat_centroids(geoms, "EPSG:32615")
    schema = geoparquet_schema(
        pa.schema(
            [
                pa.field("footprint_id", pa.string(), nullable=False),
                pa.field("centroid_lon", pa.float64()),
                pa.field("centroid_lat", pa.float64()),
                pa.field("geometry", pa.binary()),
            ]
        ),
        "EPSG:32615",
    )
    rows = [
        {
            "footprint_id": f"f{i:05d}",
            "centroid_lon": None if np.isnan(lon[i]) else lon[i],
            "centroid_lat": None if np.isnan(lat[i]) else lat[i],
            "geometry": None if g is None else shapely.to_wkb(g),
        }
        for i, g in enumerate(geoms)
    ]
    return schema, rows


def test_many_row_groups_sorted_along_the_curve_pass_the_distribution_class(tmp_path):
    import geoparquet_validator as gpv

    schema, rows = _utm_rows(6000, seed=0)
    table = geo_file_table(rows, schema)
    path = str(tmp_path / "t.parquet")
    pq.write_table(table, path, row_group_size=500, compression="zstd")
    report = gpv.check(path)
    for cls in ("core", "covering", "distribution"):
        assert gpv.conformant(report, cls), gpv.failed(report)
    order = {o["id"]: o["status"] for o in report["outcomes"]}
    assert order["/conf/distribution/spatial-order"] == "pass"
    # The same rows in random order fail the spatial-order test: it can fail.
    shuffled = pq.read_table(path).take(np.random.default_rng(0).permutation(6000))
    pq.write_table(shuffled, path, row_group_size=500, compression="zstd")
    assert "/conf/distribution/spatial-order" in gpv.failed(gpv.check(path))


def _write_geo_table(rows, directory, schema, **kwargs) -> list[str]:
    import apache_beam as beam

    from pipeline.writers.tables import WriteGeoTable

    with beam.Pipeline() as p:
        _ = p | beam.Create(rows) | WriteGeoTable(str(directory), schema, **kwargs)
    return sorted(os.listdir(directory))


@pytest.mark.slow
def test_geo_table_is_written_in_bounded_batches_with_each_files_own_metadata(tmp_path):
    import geoparquet_validator as gpv

    schema, rows = _utm_rows(1300, seed=1, missing=True)
    out = tmp_path / "scores"
    # A killed earlier run's half-written file: never read, removed by the next run.
    out.mkdir()
    (out / f".part.tmp-{'0' * 32}").write_bytes(b"PAR1 cut short")
    names = _write_geo_table(rows, out, schema, num_shards=0, row_group_rows=100, rows_per_file=300)
    assert all(n.startswith("part-") and n.endswith(".parquet") for n in names), names
    assert len(names) >= 5  # at most rows_per_file rows each
    by_id = {r["footprint_id"]: r for r in rows}
    seen = []
    for name in names:
        path = str(out / name)
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows <= 300
        assert all(meta.row_group(i).num_rows <= 100 for i in range(meta.num_row_groups))
        report = gpv.check(path)
        for cls in ("core", "covering"):
            assert gpv.conformant(report, cls), (name, gpv.failed(report))
        table = pq.read_table(path)
        col = geo_metadata(table.schema)["columns"]["geometry"]
        assert col["geometry_types"] == ["Polygon"]
        assert col["crs"]["id"] == {"authority": "EPSG", "code": 32615}
        # The file's bbox is that of its own rows, not of the table.
        geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        present = geoms[~shapely.is_missing(geoms)]
        assert col["bbox"] == pytest.approx(list(shapely.total_bounds(present)))
        for row in table.to_pylist():
            want = by_id[row["footprint_id"]]
            assert row["geometry"] == want["geometry"]
            assert (row["bbox"] is None) == (want["geometry"] is None)
        seen += table.column("footprint_id").to_pylist()
    assert sorted(seen) == sorted(by_id)

    # A rerun with a fixed shard count replaces them: exactly two files, rows split evenly.
    names = _write_geo_table(rows, out, schema, num_shards=2, row_group_rows=100)
    assert names == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    counts = [pq.ParquetFile(str(out / n)).metadata.num_rows for n in names]
    assert counts == [650, 650]
    assert sorted(pq.read_table(str(out)).column("footprint_id").to_pylist()) == sorted(by_id)
    for name in names:
        assert gpv.conformant(gpv.check(str(out / name)), "covering")

    # No rows: still one valid file with the schema and the bbox covering column.
    names = _write_geo_table([], out, schema)
    assert names == ["part-00000-of-00001.parquet"]
    empty = pq.read_table(str(out / names[0]))
    assert empty.num_rows == 0 and empty.schema.names == [*schema.names, "bbox"]


def test_bigquery_schema_types_follow_the_arrow_schema():
    schema = geoparquet_schema(contracts.CLASSIFIED_SCHEMA, "EPSG:4326")
    fields = {f["name"]: f for f in bigquery_schema(schema)["fields"]}
    assert fields["geometry"] == {"name": "geometry", "type": "GEOGRAPHY", "mode": "REQUIRED"}
    assert fields["imagery_date"]["type"] == "DATE"
    assert fields["centroid_lon"]["type"] == "FLOAT64"
    assert fields["is_residential"] == {
        "name": "is_residential",
        "type": "BOOL",
        "mode": "NULLABLE",
    }
    assert fields["bbox"]["type"] == "RECORD"
    assert [f["name"] for f in fields["bbox"]["fields"]] == ["xmin", "ymin", "xmax", "ymax"]
    names = [f["name"] for f in bigquery_schema(schema)["fields"]]
    assert names == [*contracts.CLASSIFIED_SCHEMA.names, "bbox"]


def test_bigquery_schema_declares_geography_only_for_lonlat_tables():
    # Issue 23: a UTM table's schema said GEOGRAPHY, so `bq load` would read
    # metres as degrees. In a projected CRS the column is BYTES (WKB) and says so.
    for crs in ("EPSG:32615", FEET):
        schema = geoparquet_schema(contracts.CLASSIFIED_SCHEMA, crs)
        fields = {f["name"]: f for f in bigquery_schema(schema)["fields"]}
        assert fields["geometry"]["type"] == "BYTES" and fields["geometry"]["mode"] == "REQUIRED"
        assert crs in fields["geometry"]["description"]
        assert "--output-crs EPSG:4326" in fields["geometry"]["description"]
    for crs in ("EPSG:4326", "OGC:CRS84"):
        schema = geoparquet_schema(contracts.CLASSIFIED_SCHEMA, crs)
        fields = {f["name"]: f for f in bigquery_schema(schema)["fields"]}
        assert fields["geometry"]["type"] == "GEOGRAPHY", crs


# --------------------------------------------------------------------------
# A segment run in state-plane feet, written in lon/lat
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lonlat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    args = classified_run(root, root / "out")
    assert cli.main([*args, "--output", str(root / "again"), "--imagery-date", "2025-01-02"]) == 0
    return root


def _tables(root):
    return {name: str(root / "out" / name) for name in ("footprints", "scores", "classified")}


@pytest.mark.slow
def test_every_table_passes_the_geoparquet_validator(lonlat_run):
    import geoparquet_validator as gpv

    for name, folder in _tables(lonlat_run).items():
        files = glob.glob(os.path.join(folder, "*.parquet"))
        assert files, name
        for path in files:
            report = gpv.check(path)
            for cls in ("core", "covering", "distribution"):
                assert gpv.conformant(report, cls), (name, gpv.failed(report))
            meta = json.loads(pq.read_schema(path).metadata[b"geo"])["columns"]["geometry"]
            assert meta["geometry_types"] == ["Polygon"]
            assert meta["edges"] == "planar" and meta["orientation"] == "counterclockwise"
            assert meta["crs"]["id"] == {"authority": "EPSG", "code": 4326}
            assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.slow
def test_tables_read_in_duckdb_geopandas_and_pyarrow_agree_with_shapely(lonlat_run):
    con = duckdb.connect()
    for name, folder in _tables(lonlat_run).items():
        arrow = pq.read_table(folder)
        frame = gpd.read_parquet(folder)
        ddb = con.sql(
            f"SELECT footprint_id, ST_AsWKB(geometry) AS wkb, centroid_lon, "
            f"centroid_lat FROM read_parquet('{folder}/*.parquet') "
            f"ORDER BY footprint_id"
        ).fetchall()
        assert len(ddb) == len(frame) == arrow.num_rows > 0, name
        assert frame.crs.to_epsg() == 4326
        geoms = shapely.from_wkb([bytes(r[1]) for r in ddb])
        assert sphere_problems(geoms) == []
        # Centroid lon/lat: the building's centre, in range, inside the tiles.
        lon = np.array([r[2] for r in ddb])
        lat = np.array([r[3] for r in ddb])
        assert ((-95.5 < lon) & (lon < -95.3) & (29.7 < lat) & (lat < 29.8)).all()
        metric = frame.to_crs(frame.estimate_utm_crs())
        centre = metric.centroid.to_crs(4326)
        by_id = dict(zip(frame.footprint_id, zip(centre.x, centre.y, strict=True), strict=True))
        for fid, x, y in zip([r[0] for r in ddb], lon, lat, strict=True):
            assert by_id[fid] == pytest.approx((x, y), abs=1e-6)
        if "area_m2" in frame:
            np.testing.assert_allclose(metric.area, frame.area_m2, rtol=0.005)


@pytest.mark.slow
def test_classified_table_has_every_building_labelled_with_provenance(lonlat_run):
    out = lonlat_run / "out"
    classified = pq.read_table(out / "classified").to_pylist()
    footprints = pq.read_table(out / "footprints").to_pylist()
    scores = {r["footprint_id"]: r for r in pq.read_table(out / "scores").to_pylist()}
    assert sorted(r["footprint_id"] for r in classified) == sorted(
        r["footprint_id"] for r in footprints
    )
    assert sum(r["is_residential"] for r in classified) == round(0.5 * len(classified))
    for row in classified:
        score = scores[row["footprint_id"]]
        assert (row["score"], row["percentile"], row["threshold"]) == (
            score["score"],
            score["percentile"],
            score["threshold"],
        )
        assert row["run_id"] == "first" and row["target_fraction"] == 0.5
        assert row["segmenter_model_id"].startswith("segmenter@")
        assert row["classifier_model_id"].startswith("classifier@")
        assert row["mean_probability"] > 0.5 and row["area_m2"] > 0
        assert row["tile"] in ("a", "b")
    dates = {r["tile"]: r["imagery_date"] for r in classified}
    assert str(dates["a"]) == "2024-06-30" and dates["b"] is None  # b has no DateTime tag
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconciles"] and summary["counts"]["classified"] == len(classified)
    with open(out / "classified.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].split(",") == list(contracts.CLASSIFIED_SCHEMA.names)
    assert len(lines) == len(classified) + 1
    bq = json.loads((out / "classified.bigquery.json").read_text())
    assert {"name": "geometry", "type": "GEOGRAPHY", "mode": "REQUIRED"} in bq


@pytest.mark.slow
def test_ids_are_stable_across_reruns_and_the_date_flag_wins(lonlat_run):
    first = pq.read_table(lonlat_run / "out" / "classified").to_pylist()
    again = pq.read_table(lonlat_run / "again" / "classified").to_pylist()
    assert sorted(r["footprint_id"] for r in first) == sorted(r["footprint_id"] for r in again)
    assert {str(r["imagery_date"]) for r in again} == {"2025-01-02"}


@pytest.mark.slow
def test_masks_read_as_probabilities_and_are_catalogued(lonlat_run, monkeypatch):
    import pystac
    import pystac.validation
    from stac_offline import EXTERNAL, closed_network, offline_validator

    out = lonlat_run / "out"
    with rasterio.open(out / "masks" / "a.tif") as mask:
        assert mask.scales == (1 / 255, 1.0) and mask.offsets == (0.0, 0.0)
        assert mask.descriptions == ("building_probability", "building")
        probability = mask.read(1) * mask.scales[0] + mask.offsets[0]
    assert 0.0 <= probability.min() and probability.max() <= 1.0
    collection = pystac.Collection.from_file(str(out / "stac" / "collection.json"))
    assert collection.id == "first"
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == ["a", "b"]
    a = items[0]
    assert str(a.datetime.date()) == "2024-06-30"
    assert a.properties["proj:code"] == FEET
    assert a.assets["mask"].extra_fields["raster:bands"][0]["scale"] == pytest.approx(1 / 255)
    assert os.path.exists(a.assets["mask"].get_absolute_href())
    tables = {k.split("/")[0] for k in collection.assets}
    assert tables >= {"footprints", "scores", "classified", "errors"}
    for asset in collection.assets.values():
        assert os.path.exists(asset.get_absolute_href()), asset.href
    lon, lat = shapely.geometry.shape(a.geometry).centroid.coords[0]
    assert -95.5 < lon < -95.3 and 29.7 < lat < 29.8
    # The mosaic is catalogued, and the whole catalogue validates offline.
    assert collection.assets["mosaic"].href == "../masks/mosaic.vrt"
    closed_network(monkeypatch)
    validator = offline_validator()
    pystac.validation.set_validator(validator)
    try:
        path = out / "stac" / "collection.json"
        pystac.validation.validate_all(json.loads(path.read_text()), str(path))
    finally:
        pystac.validation.set_validator(pystac.validation.JsonSchemaSTACValidator())
    assert validator.unchecked == set(EXTERNAL)
    assert items[1].properties["footprints:datetime_source"] == "processing"  # b has no date


@pytest.mark.slow
def test_segment_bigquery_route_is_built_with_lonlat_rows(lonlat_run, tmp_path):
    import apache_beam as beam

    from footprints_app.commands.segment import config_from_args
    from pipeline.segment import build_pipeline
    from pipeline.writers.scores import bigquery_load_schema, bigquery_row

    parser_args = [
        "segment",
        "--raster",
        str(lonlat_run / "tiles" / "*.tif"),
        "--model",
        str(lonlat_run / "segmenter"),
        "--output",
        str(tmp_path),
        "--bigquery-table",
        "my-project:footprints.buildings",
    ]
    args = cli.build_parser().parse_known_args(parser_args)[0]
    p = beam.Pipeline()
    build_pipeline(p, config_from_args(args))
    names = [t.unique_name for t in p.to_runner_api().components.transforms.values()]
    assert any(n.endswith("WriteBigQuery") for n in names)
    schema = bigquery_load_schema(contracts.FOOTPRINTS_SCHEMA)
    assert {f["name"] for f in schema["fields"]} == set(contracts.FOOTPRINTS_SCHEMA.names)
    row = pq.read_table(lonlat_run / "out" / "footprints").to_pylist()[0]
    loaded = bigquery_row(row, "EPSG:4326")
    polygon = shapely.from_wkt(loaded["geometry"])
    assert polygon.exterior.is_ccw and sphere_problems([polygon]) == []
    assert loaded["imagery_date"] in ("2024-06-30", None)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["gpkg", "fgb", "geojson"])
def test_export_writes_styled_vector_files_for_desktop_gis(lonlat_run, tmp_path, fmt, capsys):
    import sqlite3
    import xml.etree.ElementTree as ET

    import pyogrio

    path = str(tmp_path / f"buildings.{fmt}")
    assert cli.main(["export", "--format", fmt, str(lonlat_run / "out"), "--output", path]) == 0
    assert "3 footprints" in capsys.readouterr().out
    meta, table = pyogrio.read_arrow(path, layer="footprints")
    classified = pq.read_table(lonlat_run / "out" / "classified")
    assert table.num_rows == classified.num_rows
    assert meta["crs"] in ("EPSG:4326", "OGC:CRS84")
    assert sorted(table.column("footprint_id").to_pylist()) == sorted(
        classified.column("footprint_id").to_pylist()
    )
    assert table.column("is_residential").to_pylist().count(True) == sum(
        classified.column("is_residential").to_pylist()
    )
    renderer = ET.parse(path.rsplit(".", 1)[0] + ".qml").getroot().find("renderer-v2")
    assert renderer.get("attr") == 'to_int("is_residential")'
    assert [c.get("label") for c in renderer.iter("category")] == [
        "residential",
        "non-residential",
        "not classified",
    ]
    if fmt == "gpkg":
        with sqlite3.connect(path) as db:
            ((name, column, default, updated),) = db.execute(
                "SELECT f_table_name, f_geometry_column, useAsDefault, update_time "
                "FROM layer_styles"
            ).fetchall()
            ((geometry_column,),) = db.execute(
                "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = 'footprints'"
            ).fetchall()
            ((version,),) = db.execute("PRAGMA user_version").fetchall()
        # QGIS matches a style on the layer's geometry column (issue 23: 'geometry' vs 'geom').
        assert (name, column, default) == ("footprints", geometry_column, 1)
        # GeoPackage 1.3 and an ISO-8601 time: GDAL 3.6 (Debian 12's QGIS) warns on 1.4.
        assert version == 10300
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", updated), updated


def test_export_rejects_a_folder_without_tables(tmp_path, capsys):
    assert cli.main(["export", "--format", "gpkg", str(tmp_path)]) == 2
    assert "neither classified/ nor footprints/" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bigquery-table", "no-dataset"], "must be PROJECT:DATASET.TABLE"),
        (["--imagery-date", "30/06/2024"], "write it as YYYY-MM-DD"),
        (["--output-crs", "EPSG:99999"], "is not a CRS"),
    ],
)
def test_segment_rejects_bad_table_flags_before_running(
    lonlat_run, tmp_path, capsys, flags, message
):
    code = cli.main(
        [
            "segment",
            "--raster",
            str(lonlat_run / "tiles" / "*.tif"),
            "--model",
            str(lonlat_run / "segmenter"),
            "--output",
            str(tmp_path / "out"),
            *flags,
        ]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
