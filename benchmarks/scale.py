"""Scaling study: the score and segment jobs on growing inputs.

For each size N it generates the input, runs the whole job on the
DirectRunner in a fresh subprocess (so peak RSS is that run's own) and
records wall time, throughput and peak memory:

* **score**: N chip records (8 px noisy RGB PNGs, ids and two regions) in 8
  shards, scored by the tiny ``brightness`` classifier of
  ``tests/score_helpers.py`` (decode and mean in the graph), so the pipeline
  itself -- read, validate, batch, exact fraction, Parquet -- is measured,
  not a model;
* **segment**: N tiles of 256 x 256 px (RGB, UTM, a row of adjacent tiles)
  through the tiny ``bright`` segmenter of ``tests/segment_helpers.py``
  (64 px windows, halo 8): window planning, reads, inference, stitching,
  COG writing, polygonizing.

The goal (issue 6): peak memory flat in N (the largest N within 1.2x of the
one before) and time linear in N (constant throughput once fixed costs are
amortized). Writes ``docs/scale.md`` (table and verdict) and
``docs/scale.png`` (throughput and peak memory against N).

Usage::

    python benchmarks/scale.py                          # defaults: a few minutes on 2 cores
    python benchmarks/scale.py --score-sizes 10000,100000,1000000 --segment-sizes 16,64,256
    python benchmarks/scale.py --runner-args "--direct_running_mode=multi_processing \\
        --direct_num_workers=4"
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from machine import describe, run_child  # noqa: E402

DEFAULT_SCORE_SIZES = "10000,30000,100000"
DEFAULT_SEGMENT_SIZES = "4,16,48"
TILE = 256


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def write_chips(directory: str, n: int, shards: int = 8) -> str:
    """N chip records in ``shards`` shards; 256 distinct PNGs reused (encoding is not measured)."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from footprints import contracts

    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(256):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    os.makedirs(directory, exist_ok=True)
    writers = [
        tf.io.TFRecordWriter(
            os.path.join(directory, os.path.basename(contracts.shard_name("chips", i, shards)))
        )
        for i in range(shards)
    ]
    for i in range(n):
        chip = contracts.Chip(
            footprint_id=f"fp-{i:08d}", image=pngs[i % 256], region="north" if i % 3 else "south"
        )
        writers[i % shards].write(contracts.encode_chip(chip))
    for w in writers:
        w.close()
    return os.path.join(directory, "*.tfrecord")


def write_tiles(directory: str, n: int) -> str:
    """N adjacent 256 px RGB tiles in one UTM row, each with a few bright buildings."""
    import segment_helpers
    from raster_fixtures import X0, Y0, write_geotiff

    for i in range(n):
        rects = [(20 + 30 * k, 16 + 50 * k, 50 + 30 * k, 60 + 50 * k) for k in range(4)]
        data, _ = segment_helpers.bright_scene(TILE, TILE, rects, seed=i)
        origin = (X0 + i * TILE * 0.5, Y0)
        write_geotiff(
            os.path.join(directory, f"t{i:05d}.tif"),
            data,
            origin=origin,
            blocksize=256,
            compress="deflate",
        )
    return os.path.join(directory, "*.tif")


# --------------------------------------------------------------------------
# One measured run (in a subprocess)
# --------------------------------------------------------------------------


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(job: str, inputs: str, model: str, output: str, runner_args: list[str]) -> dict:
    """Runs the job once; wall time covers config checks, graph construction and the run."""
    import tensorflow  # noqa: F401  (imported before timing: not part of the job)

    start = time.perf_counter()
    if job == "score":
        from pipeline.score import ScoreConfig, run_config

        config = ScoreConfig.create(
            chips=inputs,
            model_dir=model,
            residential_fraction="0.3",
            output=output,
            batch_size=256,
            num_shards=0,
            run_id="scale",
        )
        summary = run_config(config, runner_args)
        n = summary["counts"]["scored"]
    else:
        from pipeline.segment import SegmentConfig, run_config

        config = SegmentConfig.create(
            raster=inputs, model_dir=model, output=output, halo=8, batch_size=16, run_id="scale"
        )
        summary = run_config(config, runner_args)
        n = summary["counts"]["tiles"]["written"]
    return {"n": n, "seconds": time.perf_counter() - start, "peak_mib": _peak_mib()}


def measure(job: str, n: int, workdir: str, runner_args: list[str]) -> dict:
    """Generates the input for N and runs the job on it in a fresh subprocess."""
    base = os.path.join(workdir, f"{job}-{n}")
    if job == "score":
        from tests.score_helpers import save_classifier

        inputs = write_chips(os.path.join(base, "chips"), n)
        model = os.path.join(workdir, "classifier")
        if not os.path.exists(model):
            save_classifier(model, kind="brightness")
    else:
        import segment_helpers

        inputs = write_tiles(os.path.join(base, "tiles"), n)
        model = os.path.join(workdir, "segmenter")
        if not os.path.exists(model):
            segment_helpers.save_bright_segmenter(model, window_size=64)
    spec = json.dumps([job, inputs, model, os.path.join(base, "out"), runner_args])
    result = run_child(__file__, spec, f"{job} N={n}")
    if result["n"] != n:
        raise RuntimeError(f"{job} N={n}: the job processed {result['n']}")
    result.update(job=job, per_s=n / result["seconds"])
    return result


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

UNITS = {"score": "chips", "segment": "tiles"}


def verdict(rows: list[dict]) -> str:
    """Memory ratio of the two largest N and the marginal throughput between them."""
    if len(rows) < 2:
        return "one size only"
    a, b = rows[-2], rows[-1]
    mem = b["peak_mib"] / a["peak_mib"]
    if b["seconds"] <= a["seconds"] * 1.1:
        return (
            f"peak memory x{mem:.2f} from N={a['n']:,} to N={b['n']:,}; fixed costs "
            "dominate the wall time at these sizes, run larger N to see the slope"
        )
    marginal = (b["n"] - a["n"]) / max(b["seconds"] - a["seconds"], 1e-9)
    return (
        f"peak memory x{mem:.2f} from N={a['n']:,} to N={b['n']:,} "
        f"({'within' if mem <= 1.2 else 'OVER'} the 1.2x goal); marginal throughput "
        f"between them {marginal:,.0f} {UNITS[b['job']]}/s vs {b['per_s']:,.0f} overall "
        f"({'linear' if marginal >= 0.8 * a['per_s'] else 'slower than linear'})"
    )


def write_report(results: dict[str, list[dict]], runner_args: list[str], md: str, png: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [j for j in ("score", "segment") if results.get(j)]
    fig, axes = plt.subplots(len(jobs), 2, figsize=(10, 3.6 * len(jobs)), squeeze=False)
    for row, job in enumerate(jobs):
        rows = results[job]
        ns = [r["n"] for r in rows]
        axes[row][0].plot(ns, [r["per_s"] for r in rows], "o-")
        axes[row][0].set(
            xscale="log",
            xlabel=f"N ({UNITS[job]})",
            ylabel=f"{UNITS[job]}/s",
            title=f"{job}: throughput",
        )
        axes[row][1].plot(ns, [r["peak_mib"] for r in rows], "o-", color="tab:red")
        axes[row][1].set(
            xscale="log",
            xlabel=f"N ({UNITS[job]})",
            ylabel="peak RSS (MiB)",
            title=f"{job}: peak memory",
            ylim=(0, None),
        )
        for ax in axes[row]:
            ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)

    lines = [
        "# Scaling study",
        "",
        "Generated by `benchmarks/scale.py` (see its docstring for the inputs and models: tiny",
        "models, so the pipeline is measured, not the model). Each N is a fresh process on the",
        f"DirectRunner (`{shlex.join(runner_args) or 'in process'}`); wall time includes",
        "config checks, graph construction and Beam's fixed start-up cost (several seconds),",
        "which is why throughput rises with N before it settles.",
        "",
        f"Machine: {describe()}. Measured {time.strftime('%Y-%m-%d')}.",
        "",
        "Goal (issue 6): peak memory flat in N (the largest N within 1.2x of the previous), "
        "time linear in N.",
        "",
        f"![throughput and memory]({os.path.basename(png)})",
    ]
    for job in jobs:
        lines += [
            "",
            f"## {job}",
            "",
            f"| N ({UNITS[job]}) | wall time (s) | {UNITS[job]}/s | peak RSS (MiB) |",
            "|---:|---:|---:|---:|",
        ]
        for r in results[job]:
            lines.append(
                f"| {r['n']:,} | {r['seconds']:.1f} | {r['per_s']:,.1f} | {r['peak_mib']:,.0f} |"
            )
        lines += ["", f"Verdict: {verdict(results[job])}."]
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--score-sizes",
        default=DEFAULT_SCORE_SIZES,
        help="chip counts, comma-separated (empty: skip score)",
    )
    parser.add_argument(
        "--segment-sizes",
        default=DEFAULT_SEGMENT_SIZES,
        help="tile counts, comma-separated (empty: skip segment)",
    )
    parser.add_argument("--runner-args", default="", help="Beam options for every run")
    parser.add_argument("--markdown", default=os.path.join(ROOT, "docs", "scale.md"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "scale.png"))
    parser.add_argument("--workdir", help="where inputs go (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(*json.loads(args.child))))
        return 0
    runner_args = shlex.split(args.runner_args)
    sizes = {"score": args.score_sizes, "segment": args.segment_sizes}
    results: dict[str, list[dict]] = {}
    print(f"machine: {describe()}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for job, text in sizes.items():
            for n in sorted(int(s) for s in text.split(",") if s.strip()):
                r = measure(job, n, workdir, runner_args)
                results.setdefault(job, []).append(r)
                print(
                    f"{job:8s} N={n:>9,}  {r['seconds']:8.1f} s  {r['per_s']:10,.1f}/s  "
                    f"peak {r['peak_mib']:8,.0f} MiB",
                    flush=True,
                )
    for job, rows in results.items():
        print(f"{job}: {verdict(rows)}")
    print(f"machine at the end: {describe()}")
    write_report(results, runner_args, args.markdown, args.plot)
    print(f"wrote {args.markdown} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
