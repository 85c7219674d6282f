"""Peak memory of the GeoParquet writer alone against N rows.

``benchmarks/scale.py`` scores chips without polygons, so its ``scores/``
table goes through Beam's ``WriteToParquet``, never through
:class:`pipeline.writers.tables.WriteGeoTable`, the writer of every table
with geometry (``scores/`` of chips with polygons, ``footprints/``,
``classified/``). This measures that writer on its own: for each N a fresh
process on the in-process DirectRunner generates N scores-like rows (a 12 x 9 m
building in UTM 15N, its lon/lat centroid, an id and a score; seeded) inside
the pipeline, so nothing but the writer holds them, writes them with
``WriteGeoTable(num_shards=0)`` and reports wall time and peak RSS
(``ru_maxrss``). The generator alone (the same rows counted, not written) is
the baseline. ``--code DIR`` measures the ``pipeline`` package of another
checkout (an export of an older commit, for a before/after in one run).

Usage::

    python benchmarks/geotable_scale.py --sizes 100000,300000,1000000
    git archive int | tar -x -C /tmp/before
    python benchmarks/geotable_scale.py --code /tmp/before --sizes 100000,300000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from machine import describe, run_child  # noqa: E402


def _rows(seed_and_n):
    """N scores-like rows with a UTM polygon, made lazily (a generator, 1,000 at a time)."""
    import numpy as np
    import shapely

    from pipeline.writers import geo

    seed, n = seed_and_n
    rng = np.random.default_rng(seed)
    for start in range(0, n, 1000):
        m = min(1000, n - start)
        x = rng.uniform(500_000, 540_000, m)
        y = rng.uniform(4_200_000, 4_240_000, m)
        geoms = shapely.box(x, y, x + 12, y + 9)
        lon, lat = geo.lonlat_centroids(geoms, "EPSG:32615")
        wkbs = shapely.to_wkb(geo.orient_ccw(geoms))
        scores = rng.random(m)
        for i in range(m):
            yield {
                "footprint_id": f"fp-{start + i:08d}",
                "score": float(scores[i]),
                "centroid_lon": float(lon[i]),
                "centroid_lat": float(lat[i]),
                "geometry": wkbs[i],
            }


def run_one(code: str, n: int, output: str, write: bool) -> dict:
    """Writes (or only counts) N generated rows in this process; returns time and peak RSS."""
    import resource

    sys.path.insert(0, code)
    import apache_beam as beam
    import pyarrow as pa

    from pipeline.writers.tables import WriteGeoTable, geoparquet_schema

    schema = geoparquet_schema(
        pa.schema(
            [
                pa.field("footprint_id", pa.string(), nullable=False),
                pa.field("score", pa.float64()),
                pa.field("centroid_lon", pa.float64()),
                pa.field("centroid_lat", pa.float64()),
                pa.field("geometry", pa.binary()),
            ]
        ),
        "EPSG:32615",
    )
    start = time.perf_counter()
    with beam.Pipeline() as p:
        rows = p | beam.Create([(0, n)]) | beam.FlatMap(_rows)
        if write:
            _ = rows | WriteGeoTable(output, schema, num_shards=0)
        else:
            _ = rows | beam.combiners.Count.Globally()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "seconds": time.perf_counter() - start, "peak_mib": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000", help="row counts, comma-separated")
    parser.add_argument("--code", default=ROOT, help="checkout whose pipeline package is measured")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(*json.loads(args.child))))
        return 0
    print(f"machine: {describe()}\ncode: {os.path.abspath(args.code)}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        for n in sorted(int(s) for s in args.sizes.split(",") if s.strip()):
            for write in (False, True):
                spec = json.dumps([args.code, n, os.path.join(workdir, f"t{n}"), write])
                r = run_child(__file__, spec, f"N={n}")
                what = "WriteGeoTable" if write else "rows only    "
                print(
                    f"{what} N={n:>9,}  {r['seconds']:7.1f} s  peak {r['peak_mib']:7,.0f} MiB",
                    flush=True,
                )
    print(f"machine at the end: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
