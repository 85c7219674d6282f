"""Prepare benchmark: ``footprints prepare`` against a plain rasterio loop, same run.

Inputs (seeded, generated once per size): a 4 x 4 grid of 1024 px 4-band
uint16 orthophoto tiles (NAIP-like: R, G, B, NIR, 0.5 m, UTM zone 18N,
tiled 256 px GeoTIFFs) and N building footprints (rotated rectangles of 6
to 24 m) in EPSG:4326, so every footprint is reprojected, in a GeoPackage
with id, class and region attributes. Footprints sit at least 40 m from
tile edges, so each chip window lies on one tile and both sides read the
very same pixels.

The two contenders, each a whole fresh process (interpreter, imports and
all), one after the other:

* **prepare**: ``footprints prepare --rasters ... --footprints ... --image-format jpeg
  --value-range 0,4000`` on the in-process DirectRunner, 4 uncompressed shards;
* **plain loop**: what a user would write by hand: geopandas reads and
  reprojects the footprints, then per footprint one ``rasterio`` windowed
  read of bands 1-3 of the chip square (the same window prepare cuts: the
  footprint's box with a 25% margin, at least 20 m, centred), the same
  linear 0..4000 -> 0..255 stretch, a PIL bilinear resize to 96 px, JPEG at
  quality 95, a ``tf.train.Example`` with the same features, written to 4
  TFRecord shards.

It prints, per N, chips/s of both and their ratio (the goal: prepare >= 0.9x
the loop), each process's peak RSS (its own ``ru_maxrss``, read in the
process itself, with any children's), and the RSS ratio between the largest
and smallest N (the goal: flat, within 1.2x), then the machine.

Usage::

    python benchmarks/prepare.py                      # 5,000 and 50,000 footprints
    python benchmarks/prepare.py --sizes 2000,20000 --repeats 2 --workdir /tmp/prep
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from machine import describe, run_child  # noqa: E402

GRID = 4
TILE = 1024
RES = 0.5
ORIGIN = (500_000.0, 4_500_000.0)  # upper left, EPSG:32618
TILE_CRS = "EPSG:32618"
VALUE_RANGE = (0.0, 4000.0)
EDGE = 40.0  # metres kept free at tile edges
SHARDS = 4
SIZE, MARGIN, MIN_EXTENT = 96, 0.25, 20.0
CLASSES = ("house", "garage", "shed", "apartments", "barn", "commercial")


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def write_tiles(directory: str) -> str:
    """The 4 x 4 grid of 4-band uint16 tiles (smooth fields plus noise), once."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE
    for row in range(GRID):
        for col in range(GRID):
            path = os.path.join(directory, f"tile_{row}_{col}.tif")
            if os.path.exists(path):
                continue
            base = 1200 + 800 * np.sin(6 * xx + col) * np.cos(5 * yy + row)
            data = np.stack(
                [base * f + rng.normal(0, 120, base.shape) for f in (1.0, 0.9, 0.8, 1.4)]
            )
            data = np.clip(data, 1, 4095).astype(np.uint16)
            transform = from_origin(
                ORIGIN[0] + col * TILE * RES, ORIGIN[1] - row * TILE * RES, RES, RES
            )
            with rasterio.open(
                path + ".tmp",
                "w",
                driver="GTiff",
                width=TILE,
                height=TILE,
                count=4,
                dtype="uint16",
                crs=TILE_CRS,
                transform=transform,
                tiled=True,
                blockxsize=256,
                blockysize=256,
                photometric="MINISBLACK",
            ) as dst:
                dst.write(data)
            os.replace(path + ".tmp", path)
    return os.path.join(directory, "*.tif")


def write_footprints(path: str, n: int, seed: int = 0) -> str:
    """N rotated rectangles in EPSG:4326, each well inside one tile, as a GeoPackage."""
    import geopandas as gpd
    import numpy as np
    import shapely
    from shapely import affinity

    if os.path.exists(path):
        return path
    rng = np.random.default_rng(seed)
    side = TILE * RES
    tiles = rng.integers(0, GRID, size=(n, 2))
    cx = ORIGIN[0] + tiles[:, 1] * side + rng.uniform(EDGE, side - EDGE, n)
    cy = ORIGIN[1] - tiles[:, 0] * side - rng.uniform(EDGE, side - EDGE, n)
    length, width = rng.uniform(8, 24, n), rng.uniform(6, 14, n)
    angle = rng.uniform(0, 180, n)
    geoms = [
        affinity.rotate(shapely.box(x - a / 2, y - b / 2, x + a / 2, y + b / 2), t)
        for x, y, a, b, t in zip(cx, cy, length, width, angle, strict=True)
    ]
    frame = gpd.GeoDataFrame(
        {
            "id": [f"b{i:07d}" for i in range(n)],
            "building": [CLASSES[i % len(CLASSES)] for i in range(n)],
            "county": ["north" if i % 3 else "south" for i in range(n)],
        },
        geometry=geoms,
        crs=TILE_CRS,
    ).to_crs("EPSG:4326")
    frame.to_file(path + ".tmp.gpkg", driver="GPKG")
    os.replace(path + ".tmp.gpkg", path)
    return path


# --------------------------------------------------------------------------
# The contenders (each runs in its own process: see --child)
# --------------------------------------------------------------------------


def run_prepare(tiles: str, footprints: str, output: str) -> int:
    """``footprints prepare``, as the command line runs it; returns the chips written."""
    from footprints_app import cli

    code = cli.main(
        [
            "prepare",
            "--rasters",
            tiles,
            "--footprints",
            footprints,
            "--id-field",
            "id",
            "--class-field",
            "building",
            "--region-field",
            "county",
            "--image-format",
            "jpeg",
            "--value-range",
            f"{VALUE_RANGE[0]:g},{VALUE_RANGE[1]:g}",
            "--num-shards",
            str(SHARDS),
            "--output",
            output,
        ]
    )
    if code != 0:
        raise RuntimeError(f"footprints prepare exited {code}")
    with open(f"{output}-summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    counts = summary["counts"]
    if not summary["reconciles"] or counts["errors"]:
        raise RuntimeError(f"prepare dead-lettered footprints: {summary['errors_by_reason']}")
    return int(counts["chips"])


def run_loop(tiles: str, footprints: str, output: str) -> int:
    """The plain loop a user would write: read, cut, stretch, resize, JPEG, TFRecord."""
    import glob
    import io

    import geopandas as gpd
    import numpy as np
    import rasterio
    import tensorflow as tf
    from PIL import Image
    from rasterio.windows import Window

    datasets = [rasterio.open(p) for p in sorted(glob.glob(tiles))]
    crs = datasets[0].crs
    frame = gpd.read_file(footprints)
    wkbs = frame.geometry.to_wkb()
    local = frame.to_crs(crs)
    low, high = VALUE_RANGE
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    writers = [
        tf.io.TFRecordWriter(f"{output}-{i:05d}-of-{SHARDS:05d}.tfrecord") for i in range(SHARDS)
    ]

    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    written = 0
    for i, geom in enumerate(local.geometry):
        minx, miny, maxx, maxy = geom.bounds
        ds = next(
            d
            for d in datasets
            if d.bounds.left <= minx
            and maxx <= d.bounds.right
            and d.bounds.bottom <= miny
            and maxy <= d.bounds.top
        )
        side = max(MIN_EXTENT, max(maxx - minx, maxy - miny) * (1 + 2 * MARGIN))
        cols = max(1, math.ceil(side / ds.res[0]))
        rows = max(1, math.ceil(side / ds.res[1]))
        col_c, row_c = ~ds.transform * ((minx + maxx) / 2, (miny + maxy) / 2)
        window = Window(round(col_c - cols / 2), round(row_c - rows / 2), cols, rows)
        pixels = ds.read([1, 2, 3], window=window)
        scaled = (pixels.astype(np.float32) - low) * (255.0 / (high - low))
        rgb = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(np.moveaxis(rgb, 0, -1)))
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=95)
        label = 1 if frame["building"].iat[i] in ("house", "apartments") else 0
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image/encoded": feature(buf.getvalue()),
                    "footprint_id": feature(frame["id"].iat[i].encode()),
                    "region": feature(frame["county"].iat[i].encode()),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    "geometry/wkb": feature(wkbs.iat[i]),
                    "geometry/crs": feature(b"EPSG:4326"),
                }
            )
        )
        writers[i % SHARDS].write(example.SerializeToString())
        written += 1
    for w in writers:
        w.close()
    return written


def child(spec: str) -> dict:
    """Runs one contender in this process; its wall time and this process's peak RSS."""
    import resource

    which, tiles, footprints, output = json.loads(spec)
    start = time.perf_counter()
    chips = (run_prepare if which == "prepare" else run_loop)(tiles, footprints, output)
    seconds = time.perf_counter() - start
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {"which": which, "chips": chips, "seconds": seconds, "peak_mib": peak / 1024}


def measure(which: str, tiles: str, footprints: str, output: str) -> dict:
    """One contender in a fresh process; wall time from the parent includes start-up."""
    spec = json.dumps([which, tiles, footprints, output])
    start = time.perf_counter()
    result = run_child(__file__, spec, which, {"PYTHONPATH": ROOT})
    wall = time.perf_counter() - start
    result["wall"] = wall
    result["per_s"] = result["chips"] / wall
    return result


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def main(argv=None) -> int:
    """Generates the inputs, runs both contenders per size, prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,50000", help="footprint counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each contender per size")
    parser.add_argument("--workdir", help="where inputs go and stay (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or scratch
        tiles = write_tiles(os.path.join(work, "tiles"))
        print(f"machine: {describe()}", flush=True)
        peaks: dict[int, float] = {}
        for n in sizes:
            footprints = write_footprints(os.path.join(work, f"footprints-{n}.gpkg"), n)
            runs: dict[str, list[dict]] = {"prepare": [], "loop": []}
            for r in range(args.repeats):
                for which in ("loop", "prepare"):
                    out = os.path.join(scratch, f"{which}-{n}-{r}", "chips")
                    result = measure(which, tiles, footprints, out)
                    if result["chips"] != n:
                        raise RuntimeError(f"{which} wrote {result['chips']} chips of {n}")
                    runs[which].append(result)
                    print(
                        f"N={n:>7,} {which:8s} {result['wall']:7.1f} s  "
                        f"{result['per_s']:7.1f} chips/s  peak {result['peak_mib']:6.0f} MiB",
                        flush=True,
                    )
            best = {w: max(x["per_s"] for x in rs) for w, rs in runs.items()}
            peaks[n] = max(x["peak_mib"] for x in runs["prepare"])
            spread = {
                w: f"{min(x['per_s'] for x in rs):.1f}-{max(x['per_s'] for x in rs):.1f}"
                for w, rs in runs.items()
            }
            print(
                f"N={n:>7,} prepare / plain loop: {best['prepare'] / best['loop']:.2f}x "
                f"(best of {args.repeats}; chips/s spread prepare {spread['prepare']}, "
                f"loop {spread['loop']}; goal >= 0.9x); prepare peak RSS "
                f"{peaks[n]:.0f} MiB, loop {max(x['peak_mib'] for x in runs['loop']):.0f} MiB",
                flush=True,
            )
        if len(sizes) > 1:
            lo, hi = sizes[0], sizes[-1]
            ratio = peaks[hi] / peaks[lo]
            print(
                f"prepare peak RSS x{ratio:.2f} from N={lo:,} to N={hi:,} footprints "
                f"({'flat: within' if ratio <= 1.2 else 'OVER'} the 1.2x goal)"
            )
        print(f"machine at the end: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
