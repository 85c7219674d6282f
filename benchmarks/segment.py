"""Benchmark of ``footprints segment`` against a hand-written sliding-window TF loop.

Throughput: for each of ``--tile-sizes``, one RGB uint8 tile (bright
buildings on a noisy ground) is segmented twice with the same dilated-conv
segmenter (tests/segment_helpers, receptive radius 15, 256-pixel windows,
halo 16, so 224-pixel cores):

* **plain TF**: read the whole tile with rasterio, reflect-pad it, slide a
  256-pixel window with a 224-pixel stride, call ``serving_default`` on
  batches of ``--batch-size`` windows, paste each window's core into a
  uint8 mask -- the loop one would write by hand, with no outputs written;
* **plain ORT**: the same loop on the model's ONNX copy (``model.onnx``) in
  an ONNX Runtime session set up as a careful user would (intra-op threads
  = cores, spinning off, sequential, every graph optimization);
* **pipeline-tf** / **pipeline-ort**: the whole ``footprints segment`` job
  on the DirectRunner (validate, plan, reshuffle, block-aligned reads,
  RunInference, stitch, COG, mosaic, polygonize, GeoParquet, summary) with
  ``runtime`` ``tensorflow`` / ``onnxruntime``.

The modes run alternated ``--repeats`` times; each child reports its wall
seconds and CPU seconds (user + system of the process and its children,
from after the imports to the end), and the table gives medians and spreads
(min..max) of Mpx/s and CPU seconds per Mpx. ``--model-kind unet`` replaces
the dilated-conv segmenter by the default U-Net (random weights) to measure
the model rather than the pipeline.

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
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")]  # machine.py

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


def _cpu_s() -> float:
    import resource

    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _ort_model(model: str):
    """The plain ORT loop's model: a session tuned by hand, called like ``serving_default``."""
    from machine import tuned_ort_session

    session = tuned_ort_session(model)
    return lambda windows: session.run(None, {"images": windows})[0]


def plain_tf(raster: str, model: str, batch: int, runtime: str = "tensorflow") -> dict:
    import numpy as np
    import rasterio
    import tensorflow as tf

    start = time.perf_counter()
    cpu = _cpu_s()
    if runtime == "onnxruntime":
        predict = _ort_model(model)
    else:
        fn = tf.saved_model.load(model).signatures["serving_default"]
        predict = lambda windows: fn(images=tf.constant(windows))["mask"].numpy()  # noqa: E731
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
        probs = predict(windows)
        for (r, c), p in zip(chunk, probs, strict=True):
            mask[r : r + core, c : c + core] = np.rint(p[HALO:-HALO, HALO:-HALO] * 255)
    mask = mask[:height, :width]
    seconds = time.perf_counter() - start
    np.save(os.environ["BENCH_MASK_OUT"], mask) if os.environ.get("BENCH_MASK_OUT") else None
    return {
        "seconds": seconds,
        "cpu_s": _cpu_s() - cpu,
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


def pipeline(raster: str, model: str, batch: int, output: str, runtime: str = "tensorflow") -> dict:
    from pipeline.segment import SegmentConfig, run_config

    start = time.perf_counter()
    cpu = _cpu_s()
    config = SegmentConfig.create(
        raster=raster,
        model_dir=model,
        output=output,
        halo=HALO,
        batch_size=batch,
        check_model=False,
        runtime=runtime,
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
        "cpu_s": _cpu_s() - cpu,
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
    elif args.mode == "plain-ort":
        out = plain_tf(args.raster, args.model, args.batch_size, "onnxruntime")
    elif args.mode in ("pipeline-tf", "pipeline-ort"):
        runtime = "tensorflow" if args.mode == "pipeline-tf" else "onnxruntime"
        out = pipeline(args.raster, args.model, args.batch_size, args.output, runtime)
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
    env = dict(os.environ)
    if mode == "plain" and output:
        os.makedirs(output, exist_ok=True)
        env["BENCH_MASK_OUT"] = os.path.join(output, "mask.npy")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
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


MODES = ("plain", "plain-ort", "pipeline-tf", "pipeline-ort")


def _run_unet_export(path: str) -> None:
    import keras

    from footprints.contracts import SegmenterAssets
    from model_training import configs, export, unet

    keras.utils.set_random_seed(0)
    config = configs.UNetConfig()
    model = unet.build_unet(3, config)
    export.export_segmenter(model, path, SegmenterAssets.identity(WINDOW), config.multiple)


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}..{max(values):.2f}"


def throughput(args, model: str, tmp: str) -> None:
    """Alternates the modes ``--repeats`` times per tile size; medians and spreads."""
    import statistics

    modes = [m for m in args.modes.split(",") if m]
    print(
        f"throughput: RGB uint8 tiles, window {WINDOW}, halo {HALO}, batch {args.batch_size}, "
        f"{args.model_kind} segmenter, {args.repeats} alternated round(s), load {os.getloadavg()}"
    )
    print(
        "  tile px  mode          Mpx/s (spread)          CPU s/Mpx (spread)    "
        "x plain CPU  windows  peak RSS  max|mask diff| vs plain (vs pipeline-tf)"
    )
    for size in [int(s) for s in args.tile_sizes.split(",") if s]:
        raster = _write_tiles(os.path.join(tmp, f"speed-{size}"), size, 1)
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode in modes:  # alternated, so load from other processes hits all alike
                out = os.path.join(tmp, f"out-{size}-{mode}")
                runs[mode].append(_run(mode, raster, model, args.batch_size, out))
        cpu = {
            m: statistics.median(r["cpu_s"] / r["pixels"] * 1e6 for r in rs)
            for m, rs in runs.items()
        }
        base = cpu.get("plain")
        for mode, rs in runs.items():
            rates = [_rate(r) for r in rs]
            per = [r["cpu_s"] / r["pixels"] * 1e6 for r in rs]
            diff = _mask_diff(tmp, size, mode)
            if mode != "pipeline-tf" and mode.startswith("pipeline"):
                diff += f" ({_cog_diff(tmp, size, mode, 'pipeline-tf')})"
            print(
                f"  {size:5d}^2  {mode:12s} {statistics.median(rates):6.2f} ({_spread(rates):>13}) "
                f"{statistics.median(per):8.3f} ({_spread(per):>13})  "
                f"{cpu[mode] / base if base else float('nan'):9.2f}  {rs[0]['windows']:7d}  "
                f"{max(r['peak_mib'] for r in rs):6.0f} MiB  {diff}",
                flush=True,
            )


def _cog(tmp: str, size: int, mode: str):
    """The mask COG a pipeline mode wrote (int16), or None."""
    import numpy as np

    cogs = glob.glob(os.path.join(tmp, f"out-{size}-{mode}", "masks", "*.tif"))
    if not cogs:
        return None
    import rasterio

    with rasterio.open(cogs[0]) as src:
        return src.read(1).astype(np.int16)


def _cog_diff(tmp: str, size: int, mode: str, reference: str) -> str:
    """Largest |mask - reference mode's mask| (uint8 steps) between two pipeline runs."""
    import numpy as np

    ours, want = _cog(tmp, size, mode), _cog(tmp, size, reference)
    if ours is None or want is None:
        return "n/a"
    return str(int(np.max(np.abs(ours - want))))


def _mask_diff(tmp: str, size: int, mode: str) -> str:
    """Largest |mask - plain TF mask| (uint8 steps) for a pipeline mode's COG, else ''."""
    import numpy as np

    plain = os.path.join(tmp, f"out-{size}-plain", "mask.npy")
    ours = _cog(tmp, size, mode) if mode.startswith("pipeline") else None
    if ours is None or not os.path.exists(plain):
        return ""
    want = np.load(plain).astype(np.int16)
    return str(int(np.max(np.abs(ours - want))))


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
    parser.add_argument(
        "--model-kind",
        choices=["conv", "unet"],
        default="conv",
        help="throughput model: the small dilated-conv segmenter (the pipeline's cost) or the "
        "default U-Net with random weights (the model's)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"throughput modes, alternated (default: {','.join(MODES)})",
    )
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
        if args.model_kind == "unet":
            heavy = os.path.join(tmp, "unet")
            _run_unet_export(heavy)
        else:
            heavy = helpers.save_conv_segmenter(
                os.path.join(tmp, "conv"),
                window_size=WINDOW,
                dilations=(1, 2, 4, 8),
                width=16,
                brightness=0.2,
            )
        if args.tile_sizes:
            from model_training.onnx_export import export_beside

            export_beside(heavy)
        cheap = helpers.save_bright_segmenter(os.path.join(tmp, "bright"), window_size=WINDOW)
        throughput(args, heavy, tmp)

        sizes = [int(s) for s in args.memory_sizes.split(",") if s]
        if args.huge:
            sizes.append(20000)
        if sizes:
            memory(sizes, cheap, args.batch_size, tmp)


if __name__ == "__main__":
    main()
