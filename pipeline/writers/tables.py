"""Parquet tables: the ``errors/`` dead letters and every row table of a run.

Rows are plain dicts that fit a schema from :mod:`footprints.contracts`.
Tables are written as ``DIR/part-00000-of-0000N.parquet``, zstd-compressed,
then older shards are removed, so a rerun replaces rather than adds. An
empty PCollection still gives one valid, empty file with the schema, so
readers never meet a missing table.

Two writers, because geometry tables need what Beam's ``WriteToParquet``
cannot give (it fixes the file metadata before the first row):

* :class:`WriteTable` (``errors/`` and tables without geometry): Beam's
  ``WriteToParquet``, which every runner writes in parallel and renames into
  place only when complete.
* :class:`WriteGeoTable` (``footprints/``, ``scores/``, ``classified/``):
  complete GeoParquet 1.1. One pass combines the table's count and lon/lat
  extent; rows are range-partitioned into shards along a Hilbert curve over
  that extent and each shard is sorted along it (by ``centroid_lon``/
  ``centroid_lat``), so a row group covers a compact area; each file gets a
  ``bbox`` covering column (struct ``xmin, ymin, xmax, ymax``, whose
  row-group statistics let readers such as DuckDB and pyarrow skip row
  groups), its own ``bbox`` and exact ``geometry_types`` in the ``geo``
  metadata, and
  ``edges: planar`` and ``orientation: counterclockwise`` declared. Each
  file is written by the one worker that holds its shard, to a temporary
  name, then renamed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from footprints import contracts
from pipeline.ptransform import DataclassTransform
from pipeline.writers.files import RemoveStaleShards, join

SHARD_TEMPLATE = contracts.SHARD_TEMPLATE
#: Compression of every table: the codec the GeoParquet best practices
#: recommend (a better ratio than Snappy at similar read speed).
COMPRESSION = "zstd"
#: Rows per row group of a geometry table: large enough that footers and
#: requests stay cheap, small enough that a city-block query skips most.
ROW_GROUP_ROWS = 20_000
#: Rows per file when the runner decides the shard count (``num_shards=0``).
ROWS_PER_FILE = 1_000_000
BBOX_COLUMN = "bbox"
BBOX_TYPE = pa.struct([(name, pa.float64()) for name in ("xmin", "ymin", "xmax", "ymax")])


def table_pattern(directory: str, prefix: str = "part") -> str:
    """The glob that matches every shard of a table written by :class:`WriteTable`."""
    return join(directory, f"{prefix}-*-of-*.parquet")


@dataclasses.dataclass
class _FinishTable(DataclassTransform):
    """After a table's files are written: older shards removed, the BigQuery schema beside it.

    Input: the written file names. Output: one element, their sorted list.
    """

    directory: str
    prefix: str
    schema: pa.Schema

    def expand(self, written):
        return (
            written
            | "ReplaceOlder" >> RemoveStaleShards(table_pattern(self.directory, self.prefix))
            | "BigQuerySchema"
            >> beam.Map(_write_bigquery_schema, bigquery_schema_path(self.directory), self.schema)
        )


@dataclasses.dataclass
class WriteTable(DataclassTransform):
    """Writes dict rows to a sharded Parquet table that replaces earlier runs.

    Attributes:
        directory: Folder of the table (created if needed).
        schema: Arrow schema of the rows, with any file metadata (GeoParquet).
        num_shards: Number of files; 1 keeps small tables in one file.
        prefix: File name prefix inside ``directory``.

    Beside the folder, ``<folder>.bigquery.json`` holds the table's BigQuery
    schema (:func:`bigquery_schema`).

    Returns:
        A PCollection with one element: the sorted list of files written.

    """

    directory: str
    schema: pa.Schema
    num_shards: int = 1
    prefix: str = "part"

    def expand(self, rows):
        """Writes the Parquet shards and removes stale ones; returns the list of files."""
        written = rows | "WriteParquet" >> beam.io.WriteToParquet(
            join(self.directory, self.prefix),
            self.schema,
            num_shards=self.num_shards,
            codec=COMPRESSION,
            shard_name_template=SHARD_TEMPLATE,
            file_name_suffix=".parquet",
        )
        return written | "Finish" >> _FinishTable(self.directory, self.prefix, self.schema)


@dataclasses.dataclass
class WriteErrors(DataclassTransform):
    """Writes :class:`footprints.contracts.ErrorRecord` dead letters to ``DIR``."""

    directory: str

    def expand(self, errors):
        """Writes the error records as a table."""
        return (
            errors
            | "ToRow" >> beam.Map(contracts.ErrorRecord.to_row)
            | "Table" >> WriteTable(self.directory, contracts.ERRORS_SCHEMA)
        )


def geoparquet_schema(
    schema: pa.Schema, crs: str | None, geometry_types: Sequence[str] = (), column: str = "geometry"
) -> pa.Schema:
    """Adds GeoParquet 1.1 ``geo`` metadata for a WKB column to ``schema``.

    The metadata a whole table shares; :func:`geo_file_table` adds what is
    per file (``bbox``, exact ``geometry_types``, the covering column).

    Args:
        schema: The table schema, holding a binary ``column``.
        crs: Any CRS pyproj understands (``EPSG:32615``); stored as PROJJSON so
            geopandas, DuckDB and GDAL read it without a lookup. None leaves
            the CRS unset, which GeoParquet reads as OGC:CRS84.
        geometry_types: GeoParquet geometry type names, e.g. ``["Polygon"]``;
            empty: any (each file then lists exactly what it holds).
        column: Name of the WKB column.

    """
    meta: dict = {
        "encoding": "WKB",
        "geometry_types": list(geometry_types),
        # Buildings are metres across: straight lines in the CRS,
        # and rings oriented as :func:`pipeline.writers.geo.orient_ccw` leaves them.
        "edges": "planar",
        "orientation": "counterclockwise",
    }
    if crs is not None:
        import pyproj

        meta["crs"] = pyproj.CRS.from_user_input(crs).to_json_dict()
    geo = {"version": "1.1.0", "primary_column": column, "columns": {column: meta}}
    return schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(geo).encode()})


def geo_metadata(schema: pa.Schema) -> dict:
    """The decoded ``geo`` metadata of a schema ({} when it has none)."""
    raw = (schema.metadata or {}).get(b"geo")
    return json.loads(raw) if raw else {}


_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def geo_file_table(
    rows: Sequence[Mapping[str, Any]], schema: pa.Schema, extent: Sequence[float] | None = None
) -> pa.Table:
    """One GeoParquet 1.1 file's table: rows sorted along a Hilbert curve, with a ``bbox``.

    Args:
        rows: Dicts fitting ``schema`` (``geometry`` WKB, ``centroid_lon``
            and ``centroid_lat`` when the schema has them).
        schema: A schema with ``geo`` metadata (:func:`geoparquet_schema`).
        extent: Lon/lat extent the curve spans (xmin, ymin, xmax, ymax);
            None: that of the rows.

    Returns:
        The table with a ``bbox`` struct column after the geometry, and
        ``geo`` metadata naming it as the covering, with this file's
        ``bbox`` and exact ``geometry_types``.

    """
    import shapely

    from pipeline.writers import geo

    column = geo_metadata(schema)["primary_column"]
    table = contracts.validate_rows(rows, schema)
    if "centroid_lon" in schema.names and len(table):
        lon = table.column("centroid_lon").to_numpy(zero_copy_only=False).astype(float)
        lat = table.column("centroid_lat").to_numpy(zero_copy_only=False).astype(float)
        finite = np.isfinite(lon) & np.isfinite(lat)
        if extent is None and finite.any():
            extent = (lon[finite].min(), lat[finite].min(), lon[finite].max(), lat[finite].max())
        keys = geo.hilbert_keys(lon, lat, extent or (-180.0, -90.0, 180.0, 90.0))
        ids = np.asarray(table.column(0).to_pylist(), dtype=object)
        # The id breaks ties, so the order (and the file) is the same on every run.
        table = table.take(np.lexsort((ids, keys)))
    geoms = shapely.from_wkb(table.column(column).to_numpy(zero_copy_only=False))
    bounds = shapely.bounds(geoms)
    missing = shapely.is_missing(geoms)
    bbox = pa.StructArray.from_arrays(
        [pa.array(bounds[:, i], pa.float64()) for i in range(4)],
        fields=list(BBOX_TYPE),
        mask=pa.array(missing) if missing.any() else None,
    )
    at = table.schema.get_field_index(column) + 1
    # The covering repeats as its geometry does (GeoParquet's rule): required
    # for a required geometry.
    nullable = schema.field(column).nullable
    table = table.add_column(at, pa.field(BBOX_COLUMN, BBOX_TYPE, nullable=nullable), bbox)
    meta = geo_metadata(schema)
    col = meta["columns"][column]
    present = geoms[~missing]
    col["geometry_types"] = sorted({_TYPE_NAMES[t] for t in shapely.get_type_id(present)})
    if len(present):
        col["bbox"] = [
            float(np.nanmin(bounds[:, 0])),
            float(np.nanmin(bounds[:, 1])),
            float(np.nanmax(bounds[:, 2])),
            float(np.nanmax(bounds[:, 3])),
        ]
    col["covering"] = {"bbox": {k: [BBOX_COLUMN, k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"geo": json.dumps(meta).encode()}
    )


def parquet_bytes(table: pa.Table, row_group_rows: int = ROW_GROUP_ROWS) -> bytes:
    """The Parquet file of ``table``: zstd, row groups of ``row_group_rows``, statistics on."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression=COMPRESSION, row_group_size=row_group_rows, write_statistics=True
    )
    return sink.getvalue().to_pybytes()


class _ExtentFn(beam.CombineFn):
    """Count and lon/lat extent of rows (their ``centroid_lon``/``centroid_lat``)."""

    def create_accumulator(self):
        return (0, math.inf, math.inf, -math.inf, -math.inf)

    def add_input(self, acc, row):
        n, x0, y0, x1, y1 = acc
        lon, lat = row.get("centroid_lon"), row.get("centroid_lat")
        if lon is None or lat is None or not (math.isfinite(lon) and math.isfinite(lat)):
            return (n + 1, x0, y0, x1, y1)
        return (n + 1, min(x0, lon), min(y0, lat), max(x1, lon), max(y1, lat))

    def merge_accumulators(self, accs):
        accs = list(accs)
        return (
            sum(a[0] for a in accs),
            min(a[1] for a in accs),
            min(a[2] for a in accs),
            max(a[3] for a in accs),
            max(a[4] for a in accs),
        )

    def extract_output(self, acc):
        n, *extent = acc
        return {"count": n, "extent": extent if math.isfinite(extent[0]) else None}


def _plan(stats: dict, num_shards: int, rows_per_file: int) -> dict:
    shards = num_shards or max(1, math.ceil(stats["count"] / rows_per_file))
    return {**stats, "shards": shards}


def _shard_of(row: Mapping[str, Any], plan: dict) -> tuple[int, Mapping[str, Any]]:
    from pipeline.writers import geo

    n, extent = plan["shards"], plan["extent"]
    if n == 1 or extent is None:
        return 0, row
    # Ranges of a coarse curve: neighbours land in the same file.
    order = 8
    key = geo.hilbert_keys(
        np.array([row.get("centroid_lon") or np.nan], float),
        np.array([row.get("centroid_lat") or np.nan], float),
        extent,
        order,
    )[0]
    return min(n - 1, int(key) * n // (1 << (2 * order))), row


_BQ_TYPES = [
    (pa.types.is_string, "STRING"),
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_integer, "INT64"),
    (pa.types.is_floating, "FLOAT64"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
    (pa.types.is_binary, "BYTES"),
]


def bigquery_schema(schema: pa.Schema, covering: bool = True) -> dict:
    """The BigQuery schema (``{"fields": [...]}``) of a table written with ``schema``.

    The GeoParquet geometry column is a ``GEOGRAPHY``; with ``covering`` the
    ``bbox`` struct the file writer adds is a ``RECORD`` after it. Columns
    that may be null are ``NULLABLE``, the rest ``REQUIRED``.
    """
    geometry = geo_metadata(schema).get("primary_column")

    def field(f: pa.Field) -> dict:
        if f.name == geometry:
            kind = "GEOGRAPHY"
        elif pa.types.is_struct(f.type):
            return {
                "name": f.name,
                "type": "RECORD",
                "mode": "NULLABLE" if f.nullable else "REQUIRED",
                "fields": [field(f.type.field(i)) for i in range(f.type.num_fields)],
            }
        else:
            kind = next(name for test, name in _BQ_TYPES if test(f.type))
        return {"name": f.name, "type": kind, "mode": "NULLABLE" if f.nullable else "REQUIRED"}

    fields = []
    for f in schema:
        fields.append(field(f))
        if covering and f.name == geometry:
            fields.append(field(pa.field(BBOX_COLUMN, BBOX_TYPE, nullable=f.nullable)))
    return {"fields": fields}


def bigquery_schema_path(directory: str) -> str:
    """``<table folder>.bigquery.json``: the BigQuery schema written beside a table."""
    return directory.rstrip("/") + ".bigquery.json"


def _write_bigquery_schema(files: list[str], path: str, schema: pa.Schema) -> list[str]:
    from pipeline.writers.files import write_json_atomic

    # bq reads the file as it is: the bare list of fields.
    write_json_atomic(path, bigquery_schema(schema)["fields"])
    return files


def _write_shard(
    item, plan: dict, directory: str, prefix: str, schema: pa.Schema, row_group_rows: int
) -> str:
    from pipeline.stitching.cog import write_bytes_atomic

    shard, grouped = item
    path = join(directory, f"{prefix}-{shard:05d}-of-{plan['shards']:05d}.parquet")
    table = geo_file_table(list(grouped["rows"]), schema, plan["extent"])
    return write_bytes_atomic(path, parquet_bytes(table, row_group_rows))


@dataclasses.dataclass
class WriteGeoTable(DataclassTransform):
    """Writes dict rows with a WKB geometry as a sharded, complete GeoParquet 1.1 table.

    Attributes:
        directory: Folder of the table (created if needed).
        schema: Arrow schema with ``geo`` metadata (:func:`geoparquet_schema`).
        num_shards: Number of files (0: one per ``rows_per_file`` rows).
        prefix: File name prefix inside ``directory``.
        row_group_rows: Rows per row group.
        rows_per_file: Rows per file when ``num_shards`` is 0.

    Beside the folder, ``<folder>.bigquery.json`` holds the table's
    BigQuery schema (:func:`bigquery_schema`), for ``bq mk``.

    Returns:
        A PCollection with one element: the sorted list of files written.

    """

    directory: str
    schema: pa.Schema
    num_shards: int = 1
    prefix: str = "part"
    row_group_rows: int = ROW_GROUP_ROWS
    rows_per_file: int = ROWS_PER_FILE

    def expand(self, rows):
        """Plans shards from count and extent, then writes the GeoParquet files."""
        plan = (
            rows
            | "CountAndExtent" >> beam.CombineGlobally(_ExtentFn())
            | "Plan" >> beam.Map(_plan, self.num_shards, self.rows_per_file)
        )
        keyed = rows | "Shard" >> beam.Map(_shard_of, beam.pvalue.AsSingleton(plan))
        # Every shard gets a file, an empty one too, so the table always exists.
        slots = plan | "Slots" >> beam.FlatMap(lambda p: [(i, None) for i in range(p["shards"])])
        written = (
            {"rows": keyed, "slot": slots}
            | "ByShard" >> beam.CoGroupByKey()
            | "WriteShard"
            >> beam.Map(
                _write_shard,
                beam.pvalue.AsSingleton(plan),
                self.directory,
                self.prefix,
                self.schema,
                self.row_group_rows,
            )
        )
        return written | "Finish" >> _FinishTable(self.directory, self.prefix, self.schema)
