"""Benchmark of ``footprints score`` against a hand-written tf.data loop.

For each input size N it writes N noisy RGB PNG chips into 4 shards and
scores them twice with the same small conv-net classifier (tests/score_helpers):

* **plain TF**: ``tf.data.TFRecordDataset(num_parallel_reads=AUTOTUNE)
  .batch(B).prefetch(AUTOTUNE)`` feeding the SavedModel's ``serving_default``,
  the loop one would write by hand;
* **pipeline**: the whole ``footprints score`` job on the DirectRunner
  (read, validate, RunInference, exact fraction, Parquet, summary).

Each run is a fresh subprocess (so peak RSS is its own); both times include
loading the model and exclude importing TensorFlow. Prints chips/s, the
ratio pipeline/plain, the mean batch size RunInference formed, peak RSS, and
the steady-state ratio: the slope between the two sizes, in which the fixed
costs of either side (Beam graph construction and per-stage set-up, about
9 s on the DirectRunner; model load) cancel.
``--readers`` also compares the framing reader with eager tf.data iteration.

Usage::

    python benchmarks/score.py --sizes 2000,8000 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_tf(chips: str, model: str, batch: int) -> dict:
    import tensorflow as tf

    start = time.perf_counter()
    fn = tf.saved_model.load(model).signatures["serving_default"]
    files = tf.io.gfile.glob(chips)
    ds = (tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
          .batch(batch).prefetch(tf.data.AUTOTUNE))
    n = 0
    for records in ds:
        n += int(fn(examples=records)["score"].shape[0])
    return {"n": n, "seconds": time.perf_counter() - start, "peak_mib": _peak_mib()}


def pipeline(chips: str, model: str, batch: int, output: str) -> dict:
    import tensorflow  # noqa: F401  (imported before timing, as for plain TF)
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.score import ScoreConfig, build_pipeline

    start = time.perf_counter()
    config = ScoreConfig.create(chips=chips, model_dir=model, residential_fraction="0.3",
                                output=output, batch_size=batch, check_model_dir=False)
    result = build_pipeline(config, PipelineOptions([])).run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    dist = result.metrics().query(MetricsFilter().with_name("batch_size"))["distributions"]
    total = sum(d.committed.sum for d in dist)
    count = sum(d.committed.count for d in dist)
    with open(os.path.join(output, "summary.json")) as f:
        scored = json.load(f)["totals"]["scored"]
    return {"n": scored, "seconds": seconds, "peak_mib": _peak_mib(),
            "mean_batch": total / count if count else 0.0, "batches": count}


def readers(chips: str) -> dict:
    import tensorflow as tf

    from pipeline.sources.chips import matched_shards, read_shard

    files = matched_shards(chips)
    start = time.perf_counter()
    ours = sum(1 for f in files for _ in read_shard(f))
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = sum(1 for _ in tf.data.TFRecordDataset(files))
    theirs_s = time.perf_counter() - start
    return {"framing_reader_rps": ours / ours_s, "tf_data_eager_rps": theirs / theirs_s}


def prepare(directory: str, n: int, size: int) -> str:
    from footprints import contracts
    from tests.score_helpers import png, write_shards

    records = [contracts.encode_chip(contracts.Chip(
        f"fp-{i:07d}", png(0, size=size, noise_seed=i), region=f"r{i % 3}"))
        for i in range(n)]
    write_shards(directory, records, 4)
    return os.path.join(directory, "*.tfrecord")


def _child(kind: str, args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,8000")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chip-size", type=int, default=64, help="PNG chip side, pixels")
    parser.add_argument("--model-size", type=int, default=96, help="model input side")
    parser.add_argument("--readers", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if kind == "plain":
            res = plain_tf(rest[0], rest[1], int(rest[2]))
        elif kind == "pipeline":
            res = pipeline(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            res = readers(rest[0])
        print(json.dumps(res))
        return 0

    from tests.score_helpers import save_classifier

    with tempfile.TemporaryDirectory() as tmp:
        model = save_classifier(os.path.join(tmp, "model"), kind="convnet", size=args.model_size)
        print(f"model: conv net at {args.model_size}px; chips: {args.chip_size}px noisy RGB PNG; "
              f"batch {args.batch_size}; DirectRunner in process; {os.cpu_count()} CPUs")
        print(f"{'N':>7} {'plain chips/s':>14} {'pipeline chips/s':>17} {'ratio':>6} "
              f"{'mean batch':>11} {'plain MiB':>10} {'pipeline MiB':>13}")
        runs = []
        for n in [int(x) for x in args.sizes.split(",")]:
            chips = prepare(os.path.join(tmp, f"chips-{n}"), n, args.chip_size)
            b = str(args.batch_size)
            plain = _child("plain", [chips, model, b])
            pipe = _child("pipeline", [chips, model, b, os.path.join(tmp, f"out-{n}")])
            assert plain["n"] == pipe["n"] == n, (plain, pipe)
            runs.append((n, plain["seconds"], pipe["seconds"]))
            p_rate, q_rate = n / plain["seconds"], n / pipe["seconds"]
            print(f"{n:>7} {p_rate:>14.1f} {q_rate:>17.1f} {q_rate / p_rate:>6.2f} "
                  f"{pipe['mean_batch']:>11.1f} {plain['peak_mib']:>10.0f} "
                  f"{pipe['peak_mib']:>13.0f}", flush=True)
            if args.readers:
                r = _child("readers", [chips])
                print(f"        readers: framing reader {r['framing_reader_rps']:.0f} records/s, "
                      f"tf.data eager {r['tf_data_eager_rps']:.0f} records/s")
        if len(runs) >= 2:
            # Fixed costs (graph construction, per-stage set-up, model load)
            # cancel in the slope between two sizes: the steady-state rate.
            (n1, p1, q1), (n2, p2, q2) = runs[0], runs[-1]
            plain_rate, pipe_rate = (n2 - n1) / (p2 - p1), (n2 - n1) / (q2 - q1)
            print(f"steady state ({n1}->{n2} chips): plain {plain_rate:.1f} chips/s, pipeline "
                  f"{pipe_rate:.1f} chips/s, ratio {pipe_rate / plain_rate:.2f}; fixed cost "
                  f"pipeline {q1 - n1 / pipe_rate:.1f} s, plain {p1 - n1 / plain_rate:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
