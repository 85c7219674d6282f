"""Parquet tables: the ``errors/`` dead letters and any row table of a run.

Rows are plain dicts that fit a schema from :mod:`footprints.contracts`.
Tables are written as ``DIR/part-00000-of-0000N.parquet`` with Beam's
``WriteToParquet`` (so every runner writes them in parallel and renames them
into place only when complete), then older shards are removed, so a rerun
replaces rather than adds. An empty PCollection still gives one valid, empty
file with the schema, so readers never meet a missing table.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
import pyarrow as pa

from footprints import contracts
from pipeline.writers.files import RemoveStaleShards, join

SHARD_TEMPLATE = contracts.SHARD_TEMPLATE


def table_pattern(directory: str, prefix: str = "part") -> str:
    """The glob that matches every shard of a table written by :class:`WriteTable`."""
    return join(directory, f"{prefix}-*-of-*.parquet")


@dataclasses.dataclass
class WriteTable(beam.PTransform):
    """Writes dict rows to a sharded Parquet table that replaces earlier runs.

    Attributes:
        directory: Folder of the table (created if needed).
        schema: Arrow schema of the rows, with any file metadata (GeoParquet).
        num_shards: Number of files; 1 keeps small tables in one file.
        prefix: File name prefix inside ``directory``.

    Returns:
        A PCollection with one element: the sorted list of files written.
    """

    directory: str
    schema: pa.Schema
    num_shards: int = 1
    prefix: str = "part"

    def __post_init__(self):
        super().__init__()

    def expand(self, rows):
        written = rows | "WriteParquet" >> beam.io.WriteToParquet(
            join(self.directory, self.prefix), self.schema, num_shards=self.num_shards,
            shard_name_template=SHARD_TEMPLATE, file_name_suffix=".parquet")
        return written | "ReplaceOlder" >> RemoveStaleShards(
            table_pattern(self.directory, self.prefix))


@dataclasses.dataclass
class WriteErrors(beam.PTransform):
    """Writes :class:`footprints.contracts.ErrorRecord` dead letters to ``DIR``."""

    directory: str

    def __post_init__(self):
        super().__init__()

    def expand(self, errors):
        return (errors
                | "ToRow" >> beam.Map(contracts.ErrorRecord.to_row)
                | "Table" >> WriteTable(self.directory, contracts.ERRORS_SCHEMA))


def geoparquet_schema(schema: pa.Schema, crs: str | None, geometry_types: list[str],
                      column: str = "geometry") -> pa.Schema:
    """Adds GeoParquet 1.1 ``geo`` metadata for a WKB column to ``schema``.

    Args:
        schema: The table schema, holding a binary ``column``.
        crs: Any CRS pyproj understands (``EPSG:32615``); stored as PROJJSON so
            geopandas, DuckDB and GDAL read it without a lookup. None leaves
            the CRS unset, which GeoParquet reads as OGC:CRS84.
        geometry_types: GeoParquet geometry type names, e.g. ``["Polygon"]``.
        column: Name of the WKB column.
    """
    meta: dict = {"encoding": "WKB", "geometry_types": list(geometry_types)}
    if crs is not None:
        import pyproj

        meta["crs"] = pyproj.CRS.from_user_input(crs).to_json_dict()
    geo = {"version": "1.1.0", "primary_column": column, "columns": {column: meta}}
    return schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(geo).encode()})
