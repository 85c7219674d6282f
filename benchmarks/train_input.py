"""Is classifier training input-bound? tf.data images/s against the model's step rate.

Writes generated chip shards, then measures, on this machine:

1. the input pipeline alone (read, parse, decode, resize, augment, batch),
   without a cache and with a memory cache (measured after the first pass
   has filled it);
2. the model's training step alone, on batches already in memory;
3. ``model.fit`` fed by each pipeline (what training really gets).

It prints images/s for each and the ratios. input/model above 1 means the
pipeline alone outruns the model; fit/model step near 1 means training
really gets that speed (on CPU-only machines decoding competes with the
training step for the cores, so the two can disagree).

Usage:
    python benchmarks/train_input.py [--chips 512] [--chip-size 96] [--image-size 64]
        [--backbone small-cnn] [--batch-size 32] [--batches 20]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from model_training import classifier_models, data, synthetic
from model_training.classifier import compile_classifier


def input_rate(split: data.ChipSplit, options: data.InputOptions, batches: int) -> float:
    """Images/s of the training pipeline, after one full pass (fills a cache)."""
    ds = iter(data.classifier_dataset(split, options, training=True))
    for _ in range(math.ceil(_count(split) / options.batch_size) + 1):
        next(ds)
    start = time.perf_counter()
    for _ in range(batches):
        next(ds)
    return batches * options.batch_size / (time.perf_counter() - start)


def _count(split: data.ChipSplit) -> int:
    return data.count_labels(split).usable


def model_rate(model: keras.Model, options: data.InputOptions, batches: int) -> float:
    """Images/s of the training step alone, on one batch held in memory."""
    x = tf.random.uniform((options.batch_size, options.image_size, options.image_size, 3), 0, 255)
    y = tf.cast(tf.random.uniform((options.batch_size,)) < 0.5, tf.float32)
    model.train_on_batch(x, y)  # trace
    start = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(x, y)
    return batches * options.batch_size / (time.perf_counter() - start)


def fit_rate(
    model: keras.Model, split: data.ChipSplit, options: data.InputOptions, batches: int
) -> float:
    """Images/s of model.fit fed by the pipeline (after a warm-up epoch)."""
    ds = data.classifier_dataset(split, options, training=True)
    warm = math.ceil(_count(split) / options.batch_size) + 1
    model.fit(ds, epochs=1, steps_per_epoch=warm, verbose=0)
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=batches, verbose=0)
    return batches * options.batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=512)
    parser.add_argument(
        "--chip-size",
        type=int,
        default=96,
        help="stored chip size; chips are resized to --image-size",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="small-cnn", choices=classifier_models.BACKBONES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = synthetic.write_chip_shards(
            folder, args.chips, size=args.chip_size, num_shards=4, formats=("png", "jpeg")
        )
        split = data.ChipSplit(tuple(paths))
        figures: dict[str, float] = {}
        for cache in ("none", "memory"):
            options = data.InputOptions(
                image_size=args.image_size, batch_size=args.batch_size, cache=cache
            )
            # The pipeline alone is fast: time ten times more batches for a stable figure.
            figures[f"input_{cache}"] = input_rate(split, options, 10 * args.batches)
        options = data.InputOptions(image_size=args.image_size, batch_size=args.batch_size)
        model = classifier_models.build_classifier(args.backbone, args.image_size)
        compile_classifier(model, 1e-3)
        figures["model_step"] = model_rate(model, options, args.batches)
        for cache in ("none", "memory"):
            options = data.InputOptions(
                image_size=args.image_size, batch_size=args.batch_size, cache=cache
            )
            figures[f"fit_{cache}"] = fit_rate(model, split, options, args.batches)

    print(
        f"classifier input benchmark: {args.chips} chips of {args.chip_size} px "
        f"(PNG/JPEG) -> {args.image_size} px, batch {args.batch_size}, "
        f"{args.backbone}, {args.batches} batches, TF {tf.__version__}"
    )
    print(f"{'measure':<34}{'images/s':>12}")
    labels = {
        "input_none": "tf.data input, no cache",
        "input_memory": "tf.data input, memory cache",
        "model_step": "model train step (in-memory batch)",
        "fit_none": "model.fit, no cache",
        "fit_memory": "model.fit, memory cache",
    }
    for key, label in labels.items():
        print(f"{label:<34}{figures[key]:>12.0f}")
    ratios = {
        "cache speed-up of input (memory/none)": figures["input_memory"] / figures["input_none"],
        "input/model, no cache": figures["input_none"] / figures["model_step"],
        "input/model, memory cache": figures["input_memory"] / figures["model_step"],
        "fit/model step, no cache": figures["fit_none"] / figures["model_step"],
        "fit/model step, memory cache": figures["fit_memory"] / figures["model_step"],
    }
    for label, value in ratios.items():
        print(f"{label:<40}{value:>6.2f}x")
    for cache in ("none", "memory"):
        # The pipeline alone may outrun the model and still slow training down:
        # on a CPU-only machine its decode threads compete with the training step
        # for the same cores, which only the fit-to-step ratio shows.
        share = figures[f"fit_{cache}"] / figures["model_step"]
        verdict = "input-bound" if share < 0.8 else "not input-bound"
        print(
            f"cache {cache}: model.fit runs at {share:.0%} of the bare step rate -> "
            f"training is {verdict} on this machine"
        )
    return {**figures, **{k: float(np.round(v, 3)) for k, v in ratios.items()}}


if __name__ == "__main__":
    main()
