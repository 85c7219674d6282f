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

Memory: one RGB uint8 tile of each of ``--memory-sizes`` (default 2048 and
8192; ``--huge`` adds 20000 x 20000) is segmented with a cheap segmenter (a
3x3 box filter and a sigmoid, so the figures are the pipeline's, not the
model's), twice, each in a fresh process:

* **plain windows**: a plain rasterio loop -- windowed (boundless) reads of
  the same 256-pixel windows, the model on batches of them, the cores
  written by windows into a tiled GeoTIFF -- the loop one would write by
  hand for a tile that does not fit in memory;
* **pipeline**: the whole ``footprints segment`` job on the DirectRunner.

It prints each run's whole-process peak RSS (VmHWM), the pipeline/plain
ratio, and for both the **bytes per extra tile pixel** between the smallest
and the largest tile, ``(RSS_big - RSS_small) / (pixels_big - pixels_small)``
(goal for the pipeline: at most 4). Tiles are written by strips, so even
the 20000 x 20000 one is never one array in memory.

Each run is a fresh subprocess (so peak RSS is its own); times include
loading the model and exclude importing TensorFlow and Beam. Prints pixels/s
and the ratio pipeline/plain per tile size, the steady-state ratio (the
slope between the smallest and the largest tile, which removes the
pipeline's fixed start-up: graph construction, DirectRunner stages, model
load) and the memory table.

Usage::

    python benchmarks/segment.py --tile-sizes 1024,4096 --memory-sizes 2048,8192
    python benchmarks/segment.py --tile-sizes '' --memory-sizes 2048,8192 --huge
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
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


def plain_windows(raster: str, model: str, batch: int, output: str) -> dict:
    import numpy as np
    import rasterio
    import tensorflow as tf
    from rasterio.windows import Window

    start = time.perf_counter()
    fn = tf.saved_model.load(model).signatures["serving_default"]
    (path,) = glob.glob(raster)
    core = WINDOW - 2 * HALO
    with rasterio.open(path) as src:
        height, width = src.height, src.width
        profile = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            crs=src.crs,
            transform=src.transform,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
        )
        origins = [(r, c) for r in range(0, height, core) for c in range(0, width, core)]
        with rasterio.open(os.path.join(output, "mask.tif"), "w", **profile) as dst:
            for i in range(0, len(origins), batch):
                chunk = origins[i : i + batch]
                windows = np.stack(
                    [
                        np.moveaxis(
                            src.read(
                                window=Window(c - HALO, r - HALO, WINDOW, WINDOW), boundless=True
                            ),
                            0,
                            -1,
                        )
                        for r, c in chunk
                    ]
                )
                probs = fn(images=tf.constant(windows))["mask"].numpy()
                for (r, c), p in zip(chunk, probs, strict=True):
                    h, w = min(core, height - r), min(core, width - c)
                    out = np.rint(p[HALO : HALO + h, HALO : HALO + w] * 255).astype(np.uint8)
                    dst.write(out[None], window=Window(c, r, w, h))
    return {
        "seconds": time.perf_counter() - start,
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


def _child(args) -> None:
    # Import the heavy libraries before the clock starts, as a long-lived worker would have.
    import apache_beam  # noqa: F401
    import tensorflow  # noqa: F401

    if args.mode == "plain":
        out = plain_tf(args.raster, args.model, args.batch_size)
    elif args.mode == "plain_windows":
        out = plain_windows(args.raster, args.model, args.batch_size, args.output)
    elif args.mode == "pipeline":
        out = pipeline(args.raster, args.model, args.batch_size, args.output)
    else:
        sys.exit(f"unknown mode {args.mode!r}")
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


STRIP = 512
CELL = 80


def _write_large_tile(folder: str, size: int, seed: int = 0) -> str:
    """One ``size`` x ``size`` RGB uint8 tile (UTM, 0.5 m, tiled, DEFLATE), written by strips.

    The scene of :func:`_write_tiles` (a bright building of 30 to 60 pixels in
    each 80-pixel cell, on a noisy dark ground), drawn strip by strip: each
    cell row's buildings come from a generator seeded by ``(seed, row)``, so
    buildings crossing strips are drawn whole, and no array larger than a
    strip is ever built.
    """
    import numpy as np
    import rasterio
    from raster_fixtures import UTM, X0, Y0
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "t0.tif")
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs=UTM,
        transform=from_origin(X0, Y0, 0.5, 0.5),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        zlevel=1,  # noise hardly compresses: level 1 writes the 20k tile in a minute
        bigtiff="IF_SAFER",
    )
    cells = range(0, size - 60, CELL)
    # One strip of ground noise, shifted for each strip: drawing 1.2 billion
    # normal samples would cost more than segmenting the tile.
    noise = np.random.default_rng((seed, 1)).normal(0, 8, (3, STRIP, size)).astype(np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, STRIP):
            rows = min(STRIP, size - top)
            truth = np.zeros((rows, size), bool)
            for k in range(max(0, top // CELL - 1), (top + rows) // CELL + 1):
                if k * CELL >= size - 60:
                    break
                rng = np.random.default_rng((seed, k))
                offsets = rng.integers(0, [20, 20, 30, 30], (len(cells), 4))
                for c, (dr, dc, hr, hc) in zip(cells, offsets, strict=True):
                    r0 = k * CELL + dr - top
                    r1 = k * CELL + 30 + hr - top
                    truth[max(r0, 0) : max(r1, 0), c + dc : c + 30 + hc] = True
            base = np.where(truth, 220, 40).astype(np.float32)[None]
            shifted = np.roll(noise[:, :rows], 37 * (top // STRIP), axis=2)
            strip = np.rint(np.clip(base + shifted, 0, 255)).astype(np.uint8)
            dst.write(strip, window=Window(0, top, size, rows))
    return os.path.join(folder, "*.tif")


def _machine() -> str:
    import apache_beam
    import rasterio
    import tensorflow as tf

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load}; Python "
        f"{platform.python_version()}, Beam {apache_beam.__version__}, TensorFlow "
        f"{tf.__version__}, rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})"
    )


def memory(sizes: list[int], model: str, batch: int, tmp: str) -> None:
    """Peak RSS of the pipeline and the plain windowed loop per tile size; bytes per extra pixel."""
    print(f"\nmemory: cheap segmenter, one RGB uint8 tile per size; {_machine()}")
    print("  tile px      mode           peak RSS  pipeline/plain  seconds")
    results: dict[int, dict] = {}
    for size in sizes:
        folder = os.path.join(tmp, f"mem-{size}")
        raster = _write_large_tile(folder, size)
        got = {}
        for mode in ("plain_windows", "pipeline"):
            out = os.path.join(folder, f"out-{mode}")
            os.makedirs(out, exist_ok=True)
            got[mode] = _run(mode, raster, model, batch, out)
        results[size] = got
        ratio = got["pipeline"]["peak_mib"] / got["plain_windows"]["peak_mib"]
        for mode, r in got.items():
            extra = f"{ratio:14.2f}" if mode == "pipeline" else " " * 14
            # The pipeline's summary: the tile it wrote and the footprints it found.
            done = f"  {r['tiles']} tile, {r['footprints']:,} footprints" if "tiles" in r else ""
            print(
                f"  {size:6d}^2  {mode:14s} {r['peak_mib']:7.0f} MiB  {extra}  "
                f"{r['seconds']:7.1f}{done}"
            )
        # The tile and the outputs of the largest sizes are large: free the disk.
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    if len(results) > 1:
        small, big = min(results), max(results)
        extra_px = big * big - small * small
        for mode in ("plain_windows", "pipeline"):
            grown = (results[big][mode]["peak_mib"] - results[small][mode]["peak_mib"]) * 2**20
            goal = " (goal <= 4)" if mode == "pipeline" else ""
            print(
                f"  {mode}: {grown / extra_px:.2f} bytes per extra tile pixel "
                f"({small}^2 -> {big}^2){goal}"
            )
    print(f"  after: load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


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
    parser.add_argument(
        "--memory-sizes",
        default="2048,8192",
        help="tile sizes for peak memory; the smallest and largest give bytes per extra pixel",
    )
    parser.add_argument("--huge", action="store_true", help="also a 20000 x 20000 tile")
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
        if args.huge:
            sizes.append(20000)
        if sizes:
            memory(sizes, cheap, args.batch_size, tmp)


if __name__ == "__main__":
    main()
