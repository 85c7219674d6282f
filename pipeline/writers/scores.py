"""The outputs of a scoring run: ``scores/``, CSV, BigQuery and ``summary.json``.

* ``scores/`` is a Parquet table with the columns of
  ``footprints.contracts.SCORES_SCHEMA``. When the chips carry polygons,
  ``geometry`` is WKB in one CRS (chips in another CRS are reprojected),
  exterior rings counterclockwise, every row has ``centroid_lon``/
  ``centroid_lat`` in EPSG:4326, and the files are complete GeoParquet 1.1
  (:class:`pipeline.writers.tables.WriteGeoTable`), so geopandas, DuckDB
  and BigQuery read the column as geometry; ``scores.bigquery.json`` beside
  it is the table's BigQuery schema.
* ``--csv`` adds ``scores.csv`` (geometry as WKT) next to it.
* ``--bigquery-table`` loads the same rows into BigQuery, replacing the
  table; ``geometry`` becomes a ``GEOGRAPHY`` (WKT in WGS 84, as BigQuery
  requires). ``footprints segment`` writes its tables through the same
  :class:`WriteCsv` and :class:`WriteScoresBigQuery`.
* ``summary.json`` is written last, after every table is in place, so its
  presence means the run finished; the command deletes an older one before
  the run starts. Its layout is every job's (:func:`pipeline.summary.summary_head`)
  followed by ``regions``, ``all_regions_exact`` and ``duplicates``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import PCollection
from apache_beam.transforms import combiners

from footprints import contracts
from footprints.errors import ConfigError
from pipeline.counting import repeated_ids
from pipeline.ptransform import DataclassTransform
from pipeline.summary import SUMMARY_FILE, duplicate_report
from pipeline.thresholds import LabelledBatch
from pipeline.thresholds.fractions import RegionFractions
from pipeline.writers import geo
from pipeline.writers.files import WriteJson, join
from pipeline.writers.tables import (
    WriteErrors,
    WriteGeoTable,
    WriteTable,
    bigquery_schema,
    geoparquet_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from apache_beam.io.gcp.bigquery import WriteResult


#: A table row: column name -> value (``scores/``: the columns of ``SCORES_SCHEMA``).
Row = dict[str, Any]

SCORES_DIR = "scores"
ERRORS_DIR = "errors"
CSV_FILE = "scores.csv"
CSV_COLUMNS = [f.name for f in contracts.SCORES_SCHEMA]

_BQ_TABLE_RE = re.compile(r"^[A-Za-z0-9.:_-]+:[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$")


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def reproject_wkbs(wkbs: list[bytes], src: str, dst: str) -> list[bytes]:
    """WKB geometries from CRS ``src`` to ``dst`` (x/y order, as GIS software writes).

    Vectorized: one shapely parse, one pyproj call over every coordinate and
    one WKB write for the whole list.
    """
    import shapely

    if src == dst or not wkbs:
        return list(wkbs)
    transformer = geo.transformer(src, dst)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    moved = shapely.transform(shapely.from_wkb(wkbs), move)
    return list(shapely.to_wkb(moved))


def reproject_wkb(wkb: bytes, src: str, dst: str) -> bytes:
    """A WKB polygon from CRS ``src`` to ``dst`` (x/y order, as GIS software writes)."""
    return reproject_wkbs([wkb], src, dst)[0]


def score_rows(
    labelled: LabelledBatch, model_id: str, run_id: str, crs: str | None = None
) -> list[dict[str, Any]]:
    """The rows of ``scores/`` (``SCORES_SCHEMA``) of a labelled batch.

    Args:
        labelled: The chips with their labels and region thresholds.
        model_id: Identifies the model (model card id or directory and hash).
        run_id: Identifies this run.
        crs: The table's CRS; polygons in another CRS are reprojected to it
            (per batch and source CRS, in one call). None keeps the polygons
            as the chips carry them.
    """
    metas = labelled.metas
    geometries = [meta.wkb for meta in metas]
    if crs is not None:
        moved: dict[str, list[tuple[int, bytes]]] = {}
        for i, meta in enumerate(metas):
            if meta.wkb is not None and meta.crs and meta.crs != crs:
                moved.setdefault(meta.crs, []).append((i, meta.wkb))
        for src, items in moved.items():
            positions = [i for i, _ in items]
            for i, wkb in zip(
                positions, reproject_wkbs([w for _, w in items], src, crs), strict=True
            ):
                geometries[i] = wkb
    lon, lat, geometries = geometry_columns(geometries, crs)
    return [
        {
            "footprint_id": meta.footprint_id,
            "region": meta.region,
            "score": score,
            "percentile": pct,
            "is_residential": residential,
            "label": meta.label,
            "threshold": threshold,
            "target_fraction": target,
            "classifier_model_id": model_id,
            "run_id": run_id,
            "centroid_lon": x,
            "centroid_lat": y,
            "geometry": geometry,
        }
        for meta, score, pct, residential, threshold, target, x, y, geometry in zip(
            metas,
            labelled.scores.tolist(),
            labelled.percentiles.tolist(),
            labelled.is_residential.tolist(),
            labelled.thresholds.tolist(),
            labelled.targets.tolist(),
            lon,
            lat,
            geometries,
            strict=True,
        )
    ]


def geometry_columns(
    wkbs: list[bytes | None], crs: str | None
) -> tuple[list[float | None], list[float | None], list[bytes | None]]:
    """Centroid lon/lat (EPSG:4326) and counterclockwise WKB of polygons in ``crs``.

    One shapely parse and one pyproj call for the batch; missing geometries
    give None. Without a CRS (chips that carry none) nothing can be placed.
    """
    import shapely

    if crs is None or not any(w is not None for w in wkbs):
        return [None] * len(wkbs), [None] * len(wkbs), list(wkbs)
    geoms = geo.orient_ccw(shapely.from_wkb(np.array(wkbs, dtype=object)))
    lon, lat = geo.lonlat_centroids(geoms, crs)
    out = [None if g is None else shapely.to_wkb(g) for g in geoms]
    return (
        [None if np.isnan(v) else float(v) for v in lon],
        [None if np.isnan(v) else float(v) for v in lat],
        out,
    )


def scores_schema(crs: str | None) -> pa.Schema:
    """``SCORES_SCHEMA``, with GeoParquet metadata when the chips carry polygons in ``crs``.

    The geometry types are left to each file, which lists exactly those it holds.
    """
    if crs is None:
        return contracts.SCORES_SCHEMA
    return geoparquet_schema(contracts.SCORES_SCHEMA, crs)


def write_table(
    rows: PCollection[Row], label: str, directory: str, schema: pa.Schema, num_shards: int = 1
) -> PCollection[list[str]]:
    """``rows | label >> WriteGeoTable`` for a GeoParquet schema, else ``WriteTable``.

    A GeoParquet schema is one with ``geo`` metadata. Output: one element, the
    sorted list of the table's files.
    """
    files: PCollection[list[str]]
    if b"geo" in (schema.metadata or {}):
        files = rows | label >> WriteGeoTable(directory, schema, num_shards=num_shards)
    else:
        files = rows | label >> WriteTable(directory, schema, num_shards=num_shards)
    return files


#: The CSV record terminator while a row is quoted. The csv module quotes a field
#: when it holds a character of the terminator, so with both CR and LF here any
#: field holding either (an id with a line break) is quoted and stays one record;
#: the terminator itself is cut off, since WriteToText ends every line.
_QUOTING_TERMINATOR = "\r\n"


def csv_line(row: Mapping[str, Any], columns: list[str] = CSV_COLUMNS) -> str:
    r"""One CSV record of a table row (RFC 4180 quoting), without its line end; geometry as WKT.

    Example: ``{"footprint_id": 'a"b\nc', ...}`` -> ``"a""b\nc",...``: one record
    however the fields break lines.
    """
    import shapely

    values = dict(row)
    if values.get("geometry") is not None:
        values["geometry"] = shapely.from_wkb(values["geometry"]).wkt
    buf = io.StringIO()
    csv.writer(buf, lineterminator=_QUOTING_TERMINATOR).writerow(
        ["" if values.get(c) is None else values[c] for c in columns]
    )
    return buf.getvalue()[: -len(_QUOTING_TERMINATOR)]


@beam.typehints.with_input_types(dict[str, Any])
@beam.typehints.with_output_types(list[str])
@dataclasses.dataclass
class WriteCsv(DataclassTransform):
    """Writes table rows to one CSV file (header first, geometry as WKT).

    Returns a singleton PCollection (the list of files) once the file is in place.
    """

    path: str
    columns: list[str] = dataclasses.field(default_factory=lambda: list(CSV_COLUMNS))

    def expand(self, rows: PCollection[Row]) -> PCollection[list[str]]:
        """Writes the rows as CSV lines under a header; returns the list of files."""
        files: PCollection[list[str]] = (
            rows
            | "CsvLine" >> beam.Map(csv_line, self.columns)
            | "WriteCsv"
            >> beam.io.WriteToText(
                self.path, num_shards=1, shard_name_template="", header=",".join(self.columns)
            )
            | "CsvDone" >> combiners.ToList()
        )
        return files


# --------------------------------------------------------------------------
# BigQuery
# --------------------------------------------------------------------------


def bigquery_load_schema(schema: pa.Schema) -> dict[str, Any]:
    """The BigQuery schema of the rows :class:`WriteScoresBigQuery` loads from ``schema``.

    No ``bbox`` (BigQuery indexes GEOGRAPHY itself), and ``threshold``
    nullable: an infinite threshold (a region with k = 0) arrives as NULL,
    since BigQuery's JSON loads reject inf.
    """
    fields = bigquery_schema(geoparquet_schema(schema, None), covering=False)["fields"]
    return {
        "fields": [{**f, "mode": "NULLABLE"} if f["name"] == "threshold" else f for f in fields]
    }


BIGQUERY_SCHEMA = bigquery_load_schema(contracts.SCORES_SCHEMA)


def check_bigquery_table(table: str) -> str:
    """Validates ``PROJECT:DATASET.TABLE``; returns it."""
    if not _BQ_TABLE_RE.match(table):
        raise ConfigError(
            f"--bigquery-table {table!r} must be PROJECT:DATASET.TABLE, for example "
            "my-project:footprints.scores"
        )
    return table


def bigquery_row(row: Mapping[str, Any], crs: str | None) -> dict[str, Any]:
    """A scores row for BigQuery: geometry as WKT in WGS 84 (GEOGRAPHY), inf as NULL."""
    import shapely

    out = dict(row)
    if out.get("geometry") is not None:
        wkb = out["geometry"]
        if crs is not None:
            wkb = reproject_wkb(wkb, crs, geo.WGS84)
        out["geometry"] = geo.orient_ccw([shapely.from_wkb(wkb)])[0].wkt
    if out.get("imagery_date") is not None:
        out["imagery_date"] = out["imagery_date"].isoformat()
    if out.get("threshold") is not None and not math.isfinite(out["threshold"]):
        out["threshold"] = None  # BigQuery JSON loads reject inf
    return out


@beam.typehints.with_input_types(dict[str, Any])
@dataclasses.dataclass
class WriteScoresBigQuery(DataclassTransform):
    """Loads table rows into a BigQuery table, replacing its contents.

    Attributes:
        table: ``PROJECT:DATASET.TABLE``.
        crs: CRS of the rows' geometry (moved to WGS 84 for GEOGRAPHY).
        schema: BigQuery schema of the rows (default: that of ``scores/``).
    """

    table: str
    crs: str | None = None
    schema: dict[str, Any] = dataclasses.field(default_factory=lambda: BIGQUERY_SCHEMA)

    def expand(self, rows: PCollection[Row]) -> WriteResult:
        """Loads the rows into the table."""
        result: WriteResult = (
            rows
            | "ToBigQueryRow" >> beam.Map(bigquery_row, self.crs)
            | "WriteBigQuery"
            >> beam.io.WriteToBigQuery(
                self.table,
                schema=self.schema,
                method=beam.io.WriteToBigQuery.Method.FILE_LOADS,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                # A rerun replaces the table, like the Parquet outputs.
                write_disposition=beam.io.BigQueryDisposition.WRITE_TRUNCATE,
            )
        )
        return result


# --------------------------------------------------------------------------
# Every output of a run, the summary last
# --------------------------------------------------------------------------


@dataclasses.dataclass
class WriteScoreOutputs(DataclassTransform):
    """Writes ``scores/``, ``errors/``, optional CSV and BigQuery, then ``summary.json``.

    Attributes:
        output: The run's output folder.
        model_id: Recorded in the summary.
        run_id: Recorded in the summary.
        summarize: The job's summary function (``pipeline.score.build_summary``): called
            with the counts, the regions, residential rows per region, dead letters per
            reason, the duplicate report, the run facts, ``warnings`` and ``fractions``;
            returns the ``summary.json`` document.
        crs: CRS of the ``geometry`` column (None: no GeoParquet metadata).
        run_info: Extra facts for the summary (model, fractions, epsilon).
        csv: Also write ``scores.csv``.
        bigquery_table: Also load ``PROJECT:DATASET.TABLE``.
        num_shards: Files in ``scores/`` (0 lets the runner decide).
        warnings: Warnings for the summary known before the run (a weak model).
        fractions: The run's targets, to warn about region rows no chip matched.

    Input: a dict with ``scores`` (``SCORES_SCHEMA`` rows, as
    :func:`score_rows` makes them), ``regions`` (RegionResult),
    ``errors`` (ErrorRecord) and ``counts`` (a singleton dict with
    ``records_read``, ``read_errors``, ``scored``, ``errors``).
    """

    output: str
    model_id: str
    run_id: str
    summarize: Callable[..., dict[str, Any]]
    crs: str | None = None
    run_info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    csv: bool = False
    bigquery_table: str | None = None
    num_shards: int = 1
    warnings: Sequence[Mapping[str, str]] = ()
    fractions: RegionFractions | None = None

    def expand(self, inputs: Mapping[str, PCollection[Any]]) -> PCollection[str]:
        """Writes every output of a score run, the summary last."""
        rows = inputs["scores"]
        written = [
            write_table(
                rows,
                "Scores",
                join(self.output, SCORES_DIR),
                scores_schema(self.crs),
                self.num_shards,
            ),
            inputs["errors"] | "Errors" >> WriteErrors(join(self.output, ERRORS_DIR)),
        ]
        if self.csv:
            written.append(rows | "Csv" >> WriteCsv(join(self.output, CSV_FILE)))
        if self.bigquery_table:
            rows | "BigQuery" >> WriteScoresBigQuery(self.bigquery_table, self.crs)

        residential = (
            rows
            | "ResidentialRegion"
            >> beam.FlatMap(lambda r: [(r["region"], 1)] if r["is_residential"] else [])
            | "ResidentialCount" >> beam.CombinePerKey(sum)
        )
        reasons = (
            inputs["errors"]
            | "Reason" >> beam.Map(lambda e: (f"{e.stage}/{e.error}", 1))
            | "ReasonCount" >> beam.CombinePerKey(sum)
        )
        repeated = repeated_ids(rows | "Id" >> beam.Map(lambda r: r["footprint_id"]))
        # The summary waits on every write (side inputs), so it appears last.
        done = [beam.pvalue.AsList(w) for w in written]
        summary = inputs["counts"] | "Summary" >> beam.Map(
            lambda counts, regions, res, why, dups, run, *_: self.summarize(
                counts,
                regions,
                dict(res),
                dict(why),
                duplicate_report(dups),
                run,
                self.warnings,
                self.fractions,
            ),
            beam.pvalue.AsList(inputs["regions"]),
            beam.pvalue.AsList(residential),
            beam.pvalue.AsList(reasons),
            beam.pvalue.AsList(repeated),
            {**self.run_info, "run_id": self.run_id, "model_id": self.model_id},
            *done,
        )
        written_summary: PCollection[str] = summary | "WriteSummary" >> WriteJson(
            join(self.output, SUMMARY_FILE)
        )
        return written_summary
