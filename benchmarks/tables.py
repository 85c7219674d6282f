"""Benchmark of the GeoParquet layout: size, full read and a bbox-filtered DuckDB query.

The same N footprint rows (seeded: 12 x 9 m boxes scattered over a
10 x 10 km UTM area, the ``scores/`` columns) are written twice with
pyarrow, as one file each:

* **plain** (the baseline, what ``scores/`` was before issue 12): Beam's
  ``WriteToParquet`` defaults, i.e. no compression, rows in input order,
  no ``bbox`` column, one row group per 64 MB (one here);
* **geoparquet**: what :class:`pipeline.writers.tables.WriteGeoTable`
  writes per shard (:func:`geo_file_table` + :func:`parquet_bytes`): zstd,
  Hilbert order, a ``bbox`` covering column, 20,000-row row groups.

Then, ``--repeat`` times each, alternating: the full read time
(``pyarrow.parquet.read_table``), and a DuckDB query counting the rows in
a 500 x 500 m window (0.25 % of the area). The plain file can only be
filtered on its geometry (``ST_Intersects_Extent``, DuckDB's native
GEOMETRY); the GeoParquet file adds the ``bbox`` predicate that DuckDB
pushes down to the row-group statistics. Both queries must return the same
count. It prints the median and the min-max spread of each time, the
ratios geoparquet / plain, and the share of row groups the window's bbox
statistics let a reader skip.

Usage::

    python benchmarks/tables.py --rows 200000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

UTM = "EPSG:32615"


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """N scores rows with UTM boxes, in random (input) order."""
    import shapely

    from pipeline.writers.scores import geometry_columns

    rng = np.random.default_rng(seed)
    x = rng.uniform(500_000, 510_000, n)
    y = rng.uniform(4_600_000, 4_610_000, n)
    wkbs = list(shapely.to_wkb(shapely.box(x, y, x + 12, y + 9)))
    lon, lat, wkbs = geometry_columns(wkbs, UTM)
    score = rng.random(n).astype(np.float32)
    return [
        {
            "footprint_id": f"fp-{i:07d}",
            "region": "all",
            "score": float(score[i]),
            "percentile": float(score[i] * 100),
            "is_residential": bool(score[i] > 0.6),
            "label": None,
            "threshold": 0.6,
            "target_fraction": 0.4,
            "classifier_model_id": "m",
            "run_id": "bench",
            "centroid_lon": lon[i],
            "centroid_lat": lat[i],
            "geometry": wkbs[i],
        }
        for i in range(n)
    ]


def write_both(rows: list[dict], folder: str) -> dict[str, str]:
    import pyarrow.parquet as pq

    from footprints import contracts
    from pipeline.writers.scores import scores_schema
    from pipeline.writers.tables import geo_file_table, parquet_bytes

    schema = scores_schema(UTM)
    plain = os.path.join(folder, "plain.parquet")
    pq.write_table(
        contracts.validate_rows(rows, schema), plain, compression="none", row_group_size=len(rows)
    )
    geo = os.path.join(folder, "geoparquet.parquet")
    with open(geo, "wb") as f:
        f.write(parquet_bytes(geo_file_table(rows, schema)))
    return {"plain": plain, "geoparquet": geo}


def window_query(path: str, window: tuple[float, float, float, float], use_bbox: bool) -> str:
    xmin, ymin, xmax, ymax = window
    wkt = f"POLYGON(({xmin} {ymin}, {xmax} {ymin}, {xmax} {ymax}, {xmin} {ymax}, {xmin} {ymin}))"
    where = (
        f"bbox.xmax >= {xmin} AND bbox.xmin <= {xmax} AND bbox.ymax >= {ymin} "
        f"AND bbox.ymin <= {ymax} AND "
        if use_bbox
        else ""
    )
    return (
        f"SELECT count(*) FROM read_parquet('{path}') WHERE {where}"
        f"ST_Intersects_Extent(geometry, ST_GeomFromWKB(ST_AsWKB('{wkt}'::GEOMETRY)))"
    )


def skippable(path: str, window) -> float:
    """Share of row groups whose bbox statistics lie outside ``window``."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    idx = {k: names.index(f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")}
    xmin, ymin, xmax, ymax = window
    skip = 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        s = {k: rg.column(i).statistics for k, i in idx.items()}
        if (
            s["xmin"].min > xmax
            or s["xmax"].max < xmin
            or s["ymin"].min > ymax
            or s["ymax"].max < ymin
        ):
            skip += 1
    return skip / meta.num_row_groups


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import duckdb
    import pyarrow.parquet as pq

    rows = make_rows(args.rows, args.seed)
    window = (504_000.0, 4_604_000.0, 504_500.0, 4_604_500.0)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_both(rows, folder)
        del rows
        con = duckdb.connect()
        times = {name: {"read": [], "query": []} for name in paths}
        counts = {}
        for _ in range(args.repeat):
            for name, path in paths.items():
                t, _ = timed(lambda path=path: pq.read_table(path))
                times[name]["read"].append(t)
                sql = window_query(path, window, use_bbox=name == "geoparquet")
                t, [(count,)] = timed(lambda sql=sql: con.sql(sql).fetchall())
                times[name]["query"].append(t)
                counts[name] = count
        if counts["plain"] != counts["geoparquet"]:
            raise SystemExit(f"the two queries disagree: {counts}")
        sizes = {name: os.path.getsize(path) for name, path in paths.items()}
        print(
            f"{args.rows} rows, seed {args.seed}, {args.repeat} repeats; window holds "
            f"{counts['plain']} rows; geoparquet row groups skippable by bbox statistics: "
            f"{skippable(paths['geoparquet'], window):.1%} of "
            f"{pq.ParquetFile(paths['geoparquet']).metadata.num_row_groups}"
        )
        for name in paths:
            line = [f"{name:>11}: size {sizes[name] / 1e6:7.2f} MB"]
            for what in ("read", "query"):
                ts = times[name][what]
                line.append(
                    f"{what} {statistics.median(ts) * 1e3:7.1f} ms "
                    f"[{min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}]"
                )
            print(", ".join(line))
        ratio = {
            what: statistics.median(times["geoparquet"][what])
            / statistics.median(times["plain"][what])
            for what in ("read", "query")
        }
        print(
            f"geoparquet / plain: size {sizes['geoparquet'] / sizes['plain']:.2f}, "
            f"read {ratio['read']:.2f}, filtered query {ratio['query']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
