"""CPU time per chip of a classifier's ``serving_default`` by batch size, in one process.

What ``benchmarks/score.py`` cannot separate: the cost of the serving graph
itself (parse, in-graph JPEG decode and resize, the model) per chip, at a
given batch size, with or without XLA auto-clustering. Used to choose the
default batch size and to decide about XLA (see benchmarks/README.md).
It reads the first ``batch * batches`` records of the shards, calls the
signature once to warm it up (graph optimization, XLA compilation), then
times ``batches`` calls; CPU seconds are the whole process's (all threads).

Usage (XLA: set ``TF_XLA_FLAGS='--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit'``)::

    python benchmarks/serving_batch.py --model DIR --chips 'chips/*.tfrecord' \\
        --batch-size 64 --batches 8
"""

from __future__ import annotations

import argparse
import glob
import os
import time


def main(argv: list[str] | None = None) -> int:
    """Prints wall and CPU milliseconds per chip for one batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--chips", required=True, help="glob of chip shards")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args(argv)
    import tensorflow as tf

    files = sorted(glob.glob(args.chips))
    n = args.batch_size * args.batches
    records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]
    fn = tf.saved_model.load(args.model).signatures["serving_default"]
    batches = [
        tf.constant(records[i : i + args.batch_size])
        for i in range(0, len(records), args.batch_size)
    ]
    fn(examples=batches[0])  # warm-up: graph optimization, XLA compilation
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        fn(examples=batch)["score"].numpy()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{os.path.basename(os.path.normpath(args.model))} batch {args.batch_size}: "
        f"{wall / len(records) * 1e3:.2f} ms wall, {cpu / len(records) * 1e3:.2f} ms CPU per "
        f"chip over {len(records)} chips; TF_XLA_FLAGS={os.environ.get('TF_XLA_FLAGS', '')!r}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
