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
  complete GeoParquet 1.1, written as the rows arrive, so its memory is one
  batch whatever the table's size. Each worker bundle buffers
  ``row_group_rows`` rows, sorts them along a Hilbert curve over their own
  lon/lat extent (by ``centroid_lon``/``centroid_lat``, so a row group
  covers a compact area), and appends them as a row group to its current
  file (a temporary, hidden name; a new file every ``rows_per_file`` rows)
  with a ``bbox`` covering column (struct ``xmin, ymin, xmax, ymax``, whose
  row-group statistics let readers such as DuckDB and pyarrow skip row
  groups). At the file's close its footer gets the ``geo`` metadata of that
  file's own rows (``bbox``, exact ``geometry_types``, CRS, ``edges:
  planar``, ``orientation: counterclockwise``), so nothing waits for a
  table-wide extent. The files are then renamed into shards; when
  ``num_shards`` asks for another count than the bundles wrote, their rows
  are copied, a row group at a time and in order, into that many files of
  near-equal size, each complete under a temporary name before its rename.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.pvalue import PCollection
from apache_beam.transforms import combiners
from apache_beam.utils.windowed_value import WindowedValue

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
#: Bytes of Arrow data per row group of a table without geometry. Beam's
#: ``WriteToParquet`` holds a row group's record batches until they reach this
#: size; its default, 64 MiB, made a 1M-row scores table hold ~64 MiB more than a
#: 100k one. 4 MiB is about 30,000 rows of the scores table.
ROW_GROUP_BYTES = 4 * 1024 * 1024
#: Rows per file when the runner decides the shard count (``num_shards=0``).
ROWS_PER_FILE = 1_000_000
BBOX_COLUMN = "bbox"
BBOX_TYPE = pa.struct([(name, pa.float64()) for name in ("xmin", "ymin", "xmax", "ymax")])


def table_pattern(directory: str, prefix: str = "part") -> str:
    """The glob that matches every shard of a table written by :class:`WriteTable`."""
    return join(directory, f"{prefix}-*-of-*.parquet")


@beam.typehints.with_input_types(str)
@dataclasses.dataclass
class _FinishTable(DataclassTransform):
    """After a table's files are written: older shards removed, the BigQuery schema beside it.

    Input: the written file names. Output: one element, their sorted list.
    """

    directory: str
    prefix: str
    schema: pa.Schema

    def expand(self, written: PCollection[str]) -> PCollection[list[str]]:
        result: PCollection[list[str]] = (
            written
            | "ReplaceOlder" >> RemoveStaleShards(table_pattern(self.directory, self.prefix))
            | "BigQuerySchema"
            >> beam.Map(_write_bigquery_schema, bigquery_schema_path(self.directory), self.schema)
        )
        return result


@beam.typehints.with_input_types(dict[str, Any])
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

    def expand(self, rows: PCollection[dict[str, Any]]) -> PCollection[list[str]]:
        """Writes the Parquet shards and removes stale ones; returns the list of files."""
        written = rows | "WriteParquet" >> beam.io.WriteToParquet(
            join(self.directory, self.prefix),
            self.schema,
            num_shards=self.num_shards,
            codec=COMPRESSION,
            shard_name_template=SHARD_TEMPLATE,
            file_name_suffix=".parquet",
            row_group_buffer_size=ROW_GROUP_BYTES,
        )
        result: PCollection[list[str]] = written | "Finish" >> _FinishTable(
            self.directory, self.prefix, self.schema
        )
        return result


@beam.typehints.with_input_types(contracts.ErrorRecord)
@dataclasses.dataclass
class WriteErrors(DataclassTransform):
    """Writes :class:`footprints.contracts.ErrorRecord` dead letters to ``DIR``."""

    directory: str

    def expand(self, errors: PCollection[contracts.ErrorRecord]) -> PCollection[list[str]]:
        """Writes the error records as a table."""
        result: PCollection[list[str]] = (
            errors
            | "ToRow" >> beam.Map(contracts.ErrorRecord.to_row)
            | "Table" >> WriteTable(self.directory, contracts.ERRORS_SCHEMA)
        )
        return result


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
    meta: dict[str, Any] = {
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


def geo_metadata(schema: pa.Schema) -> dict[str, Any]:
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
    stats = _GeoStats()
    stats.add(geoms, bounds)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"geo": stats.geo_json(schema)}
    )


class _GeoStats:
    """What a file's ``geo`` metadata says of its rows: their geometry types and bbox.

    Added to batch by batch, so a file written in pieces describes all of them.
    """

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.bbox = [math.inf, math.inf, -math.inf, -math.inf]

    def add(self, geoms: np.ndarray, bounds: np.ndarray) -> None:
        """Adds shapely geometries and their ``shapely.bounds``."""
        import shapely

        present = ~shapely.is_missing(geoms)
        if not present.any():
            return
        self.types |= {_TYPE_NAMES[t] for t in shapely.get_type_id(geoms[present])}
        b = bounds[present]
        self.bbox = [
            min(self.bbox[0], float(np.nanmin(b[:, 0]))),
            min(self.bbox[1], float(np.nanmin(b[:, 1]))),
            max(self.bbox[2], float(np.nanmax(b[:, 2]))),
            max(self.bbox[3], float(np.nanmax(b[:, 3]))),
        ]

    def merge(self, other: _GeoStats) -> None:
        """Adds what ``other`` has seen."""
        self.types |= other.types
        self.bbox = [
            *(min(a, b) for a, b in zip(self.bbox[:2], other.bbox[:2], strict=True)),
            *(max(a, b) for a, b in zip(self.bbox[2:], other.bbox[2:], strict=True)),
        ]

    def geo_json(self, schema: pa.Schema) -> bytes:
        """The encoded ``geo`` metadata of a file of these rows, written with ``schema``."""
        meta = geo_metadata(schema)
        col = meta["columns"][meta["primary_column"]]
        col["geometry_types"] = sorted(self.types)
        if math.isfinite(self.bbox[0]):
            col["bbox"] = list(self.bbox)
        col["covering"] = {"bbox": {k: [BBOX_COLUMN, k] for k in ("xmin", "ymin", "xmax", "ymax")}}
        return json.dumps(meta).encode()


def parquet_bytes(table: pa.Table, row_group_rows: int = ROW_GROUP_ROWS) -> bytes:
    """The Parquet file of ``table``: zstd, row groups of ``row_group_rows``, statistics on."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression=COMPRESSION, row_group_size=row_group_rows, write_statistics=True
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data


_BQ_TYPES = [
    (pa.types.is_string, "STRING"),
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_integer, "INT64"),
    (pa.types.is_floating, "FLOAT64"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
    (pa.types.is_binary, "BYTES"),
]


def bigquery_schema(schema: pa.Schema, covering: bool = True) -> dict[str, Any]:
    """The BigQuery schema (``{"fields": [...]}``) of a table written with ``schema``.

    The GeoParquet geometry column is a ``GEOGRAPHY`` when it is in lon/lat
    (EPSG:4326 or OGC:CRS84, GeoParquet's default when no CRS is given);
    in any other CRS (the tiles' UTM, state plane) it is ``BYTES`` (the WKB
    as it is) with a description that names the CRS, because BigQuery would
    read projected metres as degrees. With ``covering`` the ``bbox`` struct
    the file writer adds is a ``RECORD`` after it. Columns that may be null
    are ``NULLABLE``, the rest ``REQUIRED``.
    """
    geo = geo_metadata(schema)
    geometry = geo.get("primary_column")
    crs = (geo.get("columns", {}).get(geometry) or {}).get("crs") if geometry else None
    projected = crs_name(crs) if crs is not None and not is_lonlat(crs) else None

    def field(f: pa.Field) -> dict[str, Any]:
        if f.name == geometry and projected:
            return {
                "name": f.name,
                "type": "BYTES",
                "mode": "NULLABLE" if f.nullable else "REQUIRED",
                "description": f"WKB in {projected}, not lon/lat: BigQuery's GEOGRAPHY needs "
                "EPSG:4326 (write the table with --output-crs EPSG:4326, or convert with "
                "ST_GEOGFROMWKB after reprojecting)",
            }
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


def is_lonlat(crs: Any) -> bool:
    """Whether a GeoParquet ``crs`` (PROJJSON, a string, or None: OGC:CRS84) is lon/lat WGS 84."""
    import pyproj

    if crs is None:
        return True
    parsed = pyproj.CRS.from_json_dict(crs) if isinstance(crs, dict) else pyproj.CRS(crs)
    return parsed.to_epsg() == 4326 or parsed.to_authority() == ("OGC", "CRS84")


def crs_name(crs: Any) -> str:
    """``EPSG:32615`` for a GeoParquet ``crs`` with an authority code, else its name."""
    import pyproj

    parsed = pyproj.CRS.from_json_dict(crs) if isinstance(crs, dict) else pyproj.CRS(crs)
    authority = parsed.to_authority()
    return ":".join(authority) if authority else parsed.name


def bigquery_schema_path(directory: str) -> str:
    """``<table folder>.bigquery.json``: the BigQuery schema written beside a table."""
    return directory.rstrip("/") + ".bigquery.json"


def _write_bigquery_schema(files: list[str], path: str, schema: pa.Schema) -> list[str]:
    from pipeline.writers.files import write_json_atomic

    # bq reads the file as it is: the bare list of fields.
    write_json_atomic(path, bigquery_schema(schema)["fields"])
    return files


class _GeoFile:
    """One GeoParquet file written batch by batch to a temporary name, renamed at the end.

    Each :meth:`write` adds a row group (or several, ``row_group_rows`` each)
    straight to the file, so only the current batch is in memory. The
    ``geo`` metadata describes the file's own rows (bbox, geometry types),
    which are known only when it is complete, so it goes into the footer at
    :meth:`commit`: Arrow's own copy of the schema (``ARROW:schema``) is not
    stored, as it would carry the metadata of the first batch instead (every
    column type here round-trips through the Parquet schema alone).
    """

    def __init__(self, path: str, schema: pa.Schema, row_group_rows: int) -> None:
        from apache_beam.io.filesystems import FileSystems

        self.path = path
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.rows = 0
        self.stats = _GeoStats()
        self._stream = FileSystems.create(path, mime_type="application/vnd.apache.parquet")
        self._writer: Any = None

    def write(self, table: pa.Table, stats: _GeoStats) -> None:
        """Appends ``table`` (a :func:`geo_file_table` or a slice of one file's rows)."""
        import pyarrow.parquet as pq

        plain = table.replace_schema_metadata(_without_geo(table.schema.metadata))
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._stream,
                plain.schema,
                compression=COMPRESSION,
                write_statistics=True,
                store_schema=False,
            )
        self._writer.write_table(plain, row_group_size=self.row_group_rows)
        self.rows += len(table)
        self.stats.merge(stats)

    def commit(self, final: str | None = None) -> str:
        """Closes the file with its ``geo`` footer; renames it to ``final`` if given."""
        if self._writer is None:  # no rows: an empty file that still has the schema
            self.write(geo_file_table([], self.schema), _GeoStats())
        self._writer.add_key_value_metadata({"geo": self.stats.geo_json(self.schema).decode()})
        self._writer.close()
        self._stream.close()
        return self.path if final is None else _rename(self.path, final)


def _without_geo(metadata: Mapping[bytes, bytes] | None) -> dict[bytes, bytes]:
    return {k: v for k, v in (metadata or {}).items() if k != b"geo"}


def _temp_name(directory: str, prefix: str) -> str:
    # Hidden (pyarrow and geopandas skip it when reading the folder) and
    # matching ``files._TMP``, so a killed run's leftovers are recognised.
    return join(directory, f".{prefix}.tmp-{uuid.uuid4().hex}")


class _WriteBundleFiles(beam.DoFn):
    """Writes each bundle's rows to temporary GeoParquet files, a batch at a time.

    Rows are buffered up to ``row_group_rows``, sorted along a Hilbert curve
    over that batch's extent (:func:`geo_file_table`: each row group covers a
    compact area) and appended to the bundle's current file, a new one every
    ``rows_per_file`` rows. At the end of the bundle the files are closed and
    their ``(temporary path, rows)`` emitted; :func:`_place_files` names them.
    """

    def __init__(
        self,
        directory: str,
        prefix: str,
        schema: pa.Schema,
        row_group_rows: int,
        rows_per_file: int,
    ) -> None:
        self._directory = directory
        self._prefix = prefix
        self._schema = schema
        self._row_group_rows = row_group_rows
        self._rows_per_file = rows_per_file

    def start_bundle(self) -> None:
        """Starts with no rows and no file."""
        self._batch: list[Mapping[str, Any]] = []
        self._file: _GeoFile | None = None
        self._done: list[tuple[str, int]] = []

    def process(self, row: Mapping[str, Any]) -> None:
        """Buffers ``row``; writes the batch when it is full."""
        self._batch.append(row)
        if len(self._batch) >= self._row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        table = geo_file_table(self._batch, self._schema)
        self._batch = []
        if self._file is not None and self._file.rows >= self._rows_per_file:
            self._close()
        if self._file is None:
            self._file = _GeoFile(
                _temp_name(self._directory, self._prefix), self._schema, self._row_group_rows
            )
        self._file.write(table, _stats_of(table))

    def _close(self) -> None:
        assert self._file is not None
        self._done.append((self._file.commit(), self._file.rows))
        self._file = None

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """Writes the last batch, closes the files and emits their names and row counts."""
        from apache_beam.transforms.window import GlobalWindows

        self._flush()
        if self._file is not None:
            self._close()
        for done in self._done:
            yield GlobalWindows.windowed_value(done)
        self._done = []


def _stats_of(table: pa.Table) -> _GeoStats:
    """The :class:`_GeoStats` of a table read back from a file (geometry and bbox columns)."""
    import shapely

    meta = geo_metadata(table.schema)
    if meta:  # a fresh geo_file_table: its own metadata says it
        col = meta["columns"][meta["primary_column"]]
        stats = _GeoStats()
        stats.types = set(col["geometry_types"])
        if "bbox" in col:
            stats.bbox = list(col["bbox"])
        return stats
    stats = _GeoStats()
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    stats.add(geoms, shapely.bounds(geoms))
    return stats


def _place_files(
    files: list[tuple[str, int]],
    directory: str,
    prefix: str,
    schema: pa.Schema,
    num_shards: int,
    row_group_rows: int,
) -> list[str]:
    """Gives the bundles' temporary files their shard names; returns those names.

    With ``num_shards`` 0, or as many files as shards (the DirectRunner's one
    bundle with ``num_shards`` 1), each file is renamed as it is. Otherwise the
    files are read back a row group at a time and their rows, in order, are
    cut into ``num_shards`` files of near-equal row counts. Every shard is
    complete under a temporary name before its rename; the temporary files
    (and any a killed or retried attempt left) are deleted at the end.
    """
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from footprints.files import match_files

    files = sorted(files)
    if not files:
        files = [(_GeoFile(_temp_name(directory, prefix), schema, row_group_rows).commit(), 0)]
    shards = num_shards or len(files)

    def name(i: int) -> str:
        return join(directory, f"{prefix}-{i:05d}-of-{shards:05d}.parquet")

    if shards == len(files):
        written = [_rename(tmp, name(i)) for i, (tmp, _) in enumerate(files)]
    else:
        total = sum(n for _, n in files)
        ends = [(i + 1) * total // shards for i in range(shards)]
        written, shard, at = [], 0, 0
        out = _GeoFile(_temp_name(directory, prefix), schema, row_group_rows)
        for tmp, _ in files:
            with FileSystems.open(tmp) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=row_group_rows):
                    piece = pa.Table.from_batches([batch])
                    while len(piece):
                        take = min(len(piece), ends[shard] - at)
                        if take:
                            part = piece.slice(0, take)
                            out.write(part, _stats_of(part))
                            piece, at = piece.slice(take), at + take
                        if at == ends[shard] and shard < shards - 1:
                            written.append(out.commit(name(shard)))
                            shard += 1
                            out = _GeoFile(_temp_name(directory, prefix), schema, row_group_rows)
        while shard < shards:  # the last shard, and any left empty by a tiny table
            written.append(out.commit(name(shard)))
            shard += 1
            if shard < shards:
                out = _GeoFile(_temp_name(directory, prefix), schema, row_group_rows)
    leftovers = match_files(join(directory, f".{prefix}.tmp-*"))
    if leftovers:
        FileSystems.delete(leftovers)
    return written


def _rename(tmp: str, final: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(final):
        # Object stores' rename does not replace; locally this keeps one code path.
        FileSystems.delete([final])
    FileSystems.rename([tmp], [final])
    return final


@beam.typehints.with_input_types(dict[str, Any])
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

    def expand(self, rows: PCollection[dict[str, Any]]) -> PCollection[list[str]]:
        """Writes each bundle's rows as they come, then names the files as shards."""
        written = (
            rows
            | "WriteBundles"
            >> beam.ParDo(
                _WriteBundleFiles(
                    self.directory,
                    self.prefix,
                    self.schema,
                    self.row_group_rows,
                    self.rows_per_file,
                )
            )
            | "AllFiles" >> combiners.ToList()
            | "Place"
            >> beam.FlatMap(
                _place_files,
                self.directory,
                self.prefix,
                self.schema,
                self.num_shards,
                self.row_group_rows,
            )
        )
        result: PCollection[list[str]] = written | "Finish" >> _FinishTable(
            self.directory, self.prefix, self.schema
        )
        return result
