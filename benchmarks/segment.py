"""Benchmark of ``footprints segment`` against a hand-written sliding-window TF loop.

Throughput: for each of ``--tile-sizes``, one RGB uint8 tile (bright
buildings on a noisy ground) is segmented twice with the same dilated-conv
segmenter (tests/segment_helpers, receptive radius 15, 256-pixel windows,
halo 16, so 224-pixel cores):

* **plain TF**: read the whole tile with rasterio, reflect-pad it, slide a
  256-pixel window with a 224-pixel stride, call ``serving_default`` on
  batches of ``--batch-size`` windows, paste each window's core into a
  uint8 mask -- the loop one would write by hand, with no outputs written;
* **pipeline**: the whole ``footprints segment`` job on the DirectRunner
  (validate, plan, reshuffle, block-aligned reads, RunInference, stitch, COG,
  mosaic, polygonize, GeoParquet, summary).

Memory: the pipeline runs over one tile of each of ``--memory-sizes`` and
over ``--tile-counts`` tiles of the smallest size, with a cheap segmenter
(so the figures are the pipeline's, not the model's), and reports the peak
RSS above a baseline process that has imported the same libraries and loaded
the model, next to the tile's stitch buffer (one uint8 probability and one
bool validity plane).

Each run is a fresh subprocess (so peak RSS is its own); times include
loading the model and exclude importing TensorFlow and Beam. Prints pixels/s
and the ratio pipeline/plain per tile size, the steady-state ratio (the
slope between the smallest and the largest tile, which removes the
pipeline's fixed start-up: graph construction, DirectRunner stages, model
load) and the memory table.

Usage::

    python benchmarks/segment.py --tile-sizes 1024,4096 --memory-sizes 512,1024,2048,4096
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

WINDOW, HALO = 256, 16


def _peak_mib() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so
    # a child would report the parent's peak (the parent builds large tiles).
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_tf(raster: str, model: str, batch: int) -> dict:
    import numpy as np
    import rasterio
    import tensorflow as tf

    start = time.perf_counter()
    fn = tf.saved_model.load(model).signatures["serving_default"]
    (path,) = glob.glob(raster)
    with rasterio.open(path) as src:
        image = np.moveaxis(src.read(), 0, -1)
    height, width, _ = image.shape
    core = WINDOW - 2 * HALO
    rows, cols = -(-height // core), -(-width // core)
    padded = np.pad(
        image,
        ((HALO, rows * core - height + HALO), (HALO, cols * core - width + HALO), (0, 0)),
        mode="reflect",
    )
    mask = np.zeros((rows * core, cols * core), np.uint8)
    origins = [(r * core, c * core) for r in range(rows) for c in range(cols)]
    for i in range(0, len(origins), batch):
        chunk = origins[i : i + batch]
        windows = np.stack([padded[r : r + WINDOW, c : c + WINDOW] for r, c in chunk])
        probs = fn(images=tf.constant(windows))["mask"].numpy()
        for (r, c), p in zip(chunk, probs, strict=True):
            mask[r : r + core, c : c + core] = np.rint(p[HALO:-HALO, HALO:-HALO] * 255)
    mask = mask[:height, :width]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "pixels": height * width,
        "windows": len(origins),
        "peak_mib": _peak_mib(),
    }


def pipeline(raster: str, model: str, batch: int, output: str) -> dict:
    from pipeline.segment import SegmentConfig, run_config

    start = time.perf_counter()
    config = SegmentConfig.create(
        raster=raster,
        model_dir=model,
        output=output,
        halo=HALO,
        batch_size=batch,
        check_model=False,
    )
    summary = run_config(config, ["--runner", "DirectRunner"])
    seconds = time.perf_counter() - start
    pixels = 0
    import rasterio

    for path in glob.glob(raster):
        with rasterio.open(path) as src:
            pixels += src.width * src.height
    return {
        "seconds": seconds,
        "pixels": pixels,
        "windows": summary["counts"]["windows"]["planned"],
        "tiles": summary["counts"]["tiles"]["written"],
        "footprints": summary["counts"]["footprints"],
        "peak_mib": _peak_mib(),
    }


def baseline(model: str) -> dict:
    import apache_beam  # noqa: F401
    import tensorflow as tf

    import pipeline.segment  # noqa: F401

    tf.saved_model.load(model)
    return {"peak_mib": _peak_mib()}


def _child(args) -> None:
    # Import the heavy libraries before the clock starts, as a long-lived worker would have.
    import apache_beam  # noqa: F401
    import tensorflow  # noqa: F401

    if args.mode == "plain":
        out = plain_tf(args.raster, args.model, args.batch_size)
    elif args.mode == "pipeline":
        out = pipeline(args.raster, args.model, args.batch_size, args.output)
    else:
        out = baseline(args.model)
    print("RESULT " + json.dumps(out))


def _run(mode: str, raster: str, model: str, batch: int, output: str = "") -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        "--raster",
        raster,
        "--model",
        model,
        "--batch-size",
        str(batch),
        "--output",
        output,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _write_tiles(folder: str, size: int, count: int) -> str:
    import numpy as np
    import segment_helpers as helpers
    from raster_fixtures import X0, Y0, write_geotiff

    for i in range(count):
        # Buildings every 40 m on a noisy ground: masks with realistic
        # polygon counts, so polygonizing costs what it would on real data.
        rng = np.random.default_rng(i)
        rects = [
            (
                r + int(rng.integers(0, 20)),
                c + int(rng.integers(0, 20)),
                r + 30 + int(rng.integers(0, 30)),
                c + 30 + int(rng.integers(0, 30)),
            )
            for r in range(0, size - 60, 80)
            for c in range(0, size - 60, 80)
        ]
        data, _ = helpers.bright_scene(size, size, rects, seed=i)
        write_geotiff(
            os.path.join(folder, f"t{i}.tif"),
            data,
            blocksize=256,
            compress="deflate",
            origin=(X0 + i * size * 0.5, Y0),
        )
    return os.path.join(folder, "*.tif")


def _rate(got: dict) -> float:
    return got["pixels"] / got["seconds"] / 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tile-sizes",
        default="1024,4096",
        help="tiles for throughput; the smallest and largest also give the "
        "steady-state ratio (start-up cost removed)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--memory-sizes", default="512,1024,2048,4096")
    parser.add_argument("--tile-counts", default="1,4")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        _child(args)
        return

    import segment_helpers as helpers

    with tempfile.TemporaryDirectory(prefix="bench-segment-") as tmp:
        heavy = helpers.save_conv_segmenter(
            os.path.join(tmp, "conv"),
            window_size=WINDOW,
            dilations=(1, 2, 4, 8),
            width=16,
            brightness=0.2,
        )
        cheap = helpers.save_bright_segmenter(os.path.join(tmp, "bright"), window_size=WINDOW)
        print(
            f"throughput: RGB uint8 tiles, window {WINDOW}, halo {HALO}, batch "
            f"{args.batch_size}, conv segmenter (4 dilated 3x3 layers, 16 channels)"
        )
        print("  tile px   mode       seconds   Mpx/s  windows  peak RSS")
        results = {}
        for size in [int(s) for s in args.tile_sizes.split(",") if s]:
            raster = _write_tiles(os.path.join(tmp, f"speed-{size}"), size, 1)
            best: dict = {}
            for _ in range(args.repeats):
                # Alternated, so that load from other processes hits both alike.
                for mode in ("plain", "pipeline"):
                    got = _run(
                        mode, raster, heavy, args.batch_size, os.path.join(tmp, f"out-{size}")
                    )
                    if mode not in best or got["seconds"] < best[mode]["seconds"]:
                        best[mode] = got
            for mode, got in best.items():
                print(
                    f"  {size:5d}^2  {mode:9s} {got['seconds']:8.1f}  {_rate(got):6.2f}  "
                    f"{got['windows']:7d}  {got['peak_mib']:6.0f} MiB"
                )
            print(
                f"  {size:5d}^2  ratio pipeline / plain TF: "
                f"{_rate(best['pipeline']) / _rate(best['plain']):.2f} (goal >= 0.9)"
            )
            results[size] = best
        if len(results) > 1:
            small, large = results[min(results)], results[max(results)]
            extra_px = large["plain"]["pixels"] - small["plain"]["pixels"]
            plain = extra_px / (large["plain"]["seconds"] - small["plain"]["seconds"])
            piped = extra_px / (large["pipeline"]["seconds"] - small["pipeline"]["seconds"])
            fixed = small["pipeline"]["seconds"] - small["pipeline"]["pixels"] / piped
            print(
                f"  steady state (from {min(results)}^2 to {max(results)}^2): pipeline "
                f"{piped / 1e6:.2f} Mpx/s, plain {plain / 1e6:.2f} Mpx/s, ratio "
                f"{piped / plain:.2f}; pipeline start-up about {fixed:.1f} s"
            )

        sizes = [int(s) for s in args.memory_sizes.split(",") if s]
        if not sizes:
            return
        base = _run("baseline", os.path.join(tmp, "speed-*", "*.tif"), cheap, args.batch_size)[
            "peak_mib"
        ]
        print(f"\nmemory: cheap segmenter; baseline (libraries + model loaded) {base:.0f} MiB")
        print("  tiles  tile px    stitch buffer  peak RSS  above baseline  seconds")
        counts = [int(c) for c in args.tile_counts.split(",") if c]
        cases = [(s, 1) for s in sizes] + [(min(sizes), c) for c in counts if c != 1]
        for size, count in cases:
            folder = os.path.join(tmp, f"mem-{size}-{count}")
            got = _run(
                "pipeline",
                _write_tiles(folder, size, count),
                cheap,
                args.batch_size,
                os.path.join(folder, "out"),
            )
            stitch = size * size * 2 / 2**20  # uint8 probability + bool validity
            print(
                f"  {count:5d}  {size:5d}^2  {stitch:10.1f} MiB  {got['peak_mib']:6.0f} MiB"
                f"  {got['peak_mib'] - base:10.0f} MiB  {got['seconds']:7.1f}"
            )


if __name__ == "__main__":
    main()
