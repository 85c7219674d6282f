"""Does the demo's classifier work out of sample, is it calibrated, is it repeatable?

For each seed, the script does what ``footprints demo`` does for the
classifier: it generates the training areas and cuts their chips with the
demo's own :func:`footprints_app.commands.demo.training_chips` (``--train-areas``
areas of 4x4 tiles, seeds seed + 10000, ...), generates the demo area (the
seed, ``--tiles``, density 4) and cuts its chips, trains the classifier on
the training areas only, and scores the demo area's chips with the exported
model.
It prints, per seed and as min / mean / max over the seeds:

* **accuracy at the target fraction** on the held-out demo area: per region
  the ``k = floor(p * N + 1/2)`` highest scores are labelled residential,
  with ``p`` the area's true residential share rounded to 0.01 (the demo's
  default target), and compared with the true labels (the selection of
  ``footprints score`` in numpy; ties, if any, are broken by order here
  and by an id hash there);
* **ECE** (15 equal-width bins) of the served, calibrated scores on the
  held-out area, and of the network's own scores before calibration
  (recovered from the served ones by inverting the card's Platt map);
* **determinism**: the first seed's training is run a second time on the
  same chips; the largest absolute difference in held-out score and in any
  weight (0.0 means bit-identical).

Usage:
    python benchmarks/model_quality.py [--seeds 0,1,2] [--train-areas 6]
        [--tiles 4x4] [--epochs 6] [--work DIR]

It trains ``len(seeds) + 1`` classifiers; on 2 CPU cores allow about 3
minutes per seed. The machine, TensorFlow build and thread count are printed
with the figures, because bit-identity holds only on the same ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def _tiles(text: str) -> tuple[int, int]:
    cols, rows = (int(v) for v in text.lower().split("x"))
    return cols, rows


def make_chips(root: str, seed: int, tiles: tuple[int, int], density: float) -> tuple[str, float]:
    """Generates an area and cuts its chips; returns the shard glob and its true share."""
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area, is_residential
    from pipeline import prepare

    area = generate_sample_area(
        os.path.join(root, "area"),
        SampleAreaConfig(seed=seed, tiles_x=tiles[0], tiles_y=tiles[1], density=density),
    )
    residential = sum(n for k, n in area.counts.items() if k != "total" and is_residential(k))
    prefix = os.path.join(root, "chips", "chips")
    prepare.run_config(
        prepare.PrepareConfig.create(
            output=prefix,
            rasters=os.path.join(area.root, "tiles", "*.tif"),
            footprints=area.footprints,
            id_field="id",
            class_field="building",
            region_field="region",
            num_shards=4,
        ),
        ["--runner", "DirectRunner"],
    )
    return f"{prefix}-*-of-*.tfrecord", round(residential / max(area.counts["total"], 1), 2)


def held_out_scores(model_dir: str, chips: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels, served scores and regions of every labelled chip, in shard order."""
    import tensorflow as tf

    from footprints import contracts
    from model_training import data, export

    serve = export.load_serving(model_dir)
    features = {
        contracts.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        contracts.REGION_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    labels, scores, regions = [], [], []
    for batch in data.record_dataset(data.list_shards(chips)).batch(256):
        parsed = tf.io.parse_example(batch, features)
        labels.append(parsed[contracts.LABEL_KEY].numpy())
        regions += [r.decode() for r in parsed[contracts.REGION_KEY].numpy()]
        scores.append(serve(examples=batch)["score"].numpy())
    return np.concatenate(labels), np.concatenate(scores).astype(np.float64), regions


def accuracy_at_fraction(
    labels: np.ndarray, scores: np.ndarray, regions: list[str], fraction: float
) -> float:
    """Share of chips labelled right when the top ``floor(p N + 1/2)`` are residential.

    The top is taken per region, as ``footprints score`` labels.
    """
    chosen = np.zeros(len(labels), bool)
    regions_arr = np.asarray(regions)
    for region in sorted(set(regions)):
        idx = np.flatnonzero(regions_arr == region)
        k = int(np.floor(fraction * len(idx) + 0.5))
        top = idx[np.argsort(-scores[idx], kind="stable")[:k]]
        chosen[top] = True
    return float(np.mean(chosen == (labels == 1)))


def train(chips: str, output: str, seed: int, epochs: int):
    from model_training.classifier import train_classifier
    from model_training.configs import ClassifierConfig

    return train_classifier(
        ClassifierConfig(
            train=chips,
            output=output,
            epochs=epochs,
            seed=seed,
            overwrite=True,
            verbose=0,
            tensorboard=False,
        )
    )


def evaluate(result, chips: str, fraction: float) -> dict:
    """The held-out figures of one trained classifier."""
    from footprints import contracts
    from model_training import evaluation

    labels, scores, regions = held_out_scores(result.model_dir, chips)
    keep = labels >= 0
    labels, scores = labels[keep], scores[keep]
    regions = [r for r, k in zip(regions, keep, strict=True) if k]
    card = contracts.read_model_card(result.model_dir)
    a, b = card["calibration"]["a"], card["calibration"]["b"]
    raw = 1.0 / (1.0 + np.exp(-(evaluation.logit(scores) - b) / a))
    return {
        "footprints": int(labels.size),
        "accuracy": accuracy_at_fraction(labels, scores, regions, fraction),
        "ece": evaluation.expected_calibration_error(labels, scores),
        "ece_uncalibrated": evaluation.expected_calibration_error(labels, raw),
        "auc": evaluation.binary_auc(labels, scores),
        "weak": card["quality"]["weak"],
        "scores": scores,
    }


def machine() -> str:
    import tensorflow as tf

    threads = (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )
    return (
        f"{platform.machine()} {platform.processor() or platform.platform()}, "
        f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__} "
        f"(intra/inter-op threads {threads[0] or 'auto'}/{threads[1] or 'auto'}), "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-areas", type=int, default=6)
    parser.add_argument("--tiles", default="4x4")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", default=None, help="folder to work in (default: a temp dir)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work or tempfile.mkdtemp(prefix="model-quality-")

    rows = []
    first = None
    for seed in seeds:
        started = time.perf_counter()
        root = os.path.join(work, f"seed-{seed}")
        from footprints_app.commands.demo import training_chips

        train_chips = training_chips(
            os.path.join(root, "train"),
            os.path.join(root, "chips"),
            seed,
            args.train_areas,
            ["--runner", "DirectRunner"],
        )["glob"]
        demo_chips, fraction = make_chips(os.path.join(root, "demo"), seed, _tiles(args.tiles), 4.0)
        result = train(train_chips, os.path.join(root, "classifier"), seed, args.epochs)
        row = evaluate(result, demo_chips, fraction)
        row.update(seed=seed, fraction=fraction, seconds=time.perf_counter() - started)
        rows.append(row)
        if first is None:
            first = (train_chips, demo_chips, fraction, root, result, row)
        print(
            f"seed {seed}: held-out accuracy at target {fraction:.0%}: {row['accuracy']:.3f}, "
            f"ECE {row['ece']:.3f} (uncalibrated {row['ece_uncalibrated']:.3f}), "
            f"AUC {row['auc']:.3f}, {row['footprints']} footprints, weak={row['weak']}, "
            f"{row['seconds']:.0f} s",
            flush=True,
        )

    import keras

    train_chips, demo_chips, fraction, root, result, row = first
    again = train(train_chips, os.path.join(root, "classifier-again"), seeds[0], args.epochs)
    repeat = evaluate(again, demo_chips, fraction)
    weights = [keras.models.load_model(r.keras_path).get_weights() for r in (result, again)]
    weight_diff = max(float(np.max(np.abs(x - y))) for x, y in zip(*weights, strict=True))
    score_diff = float(np.max(np.abs(repeat["scores"] - row["scores"])))

    def spread(key: str) -> str:
        values = [r[key] for r in rows]
        return f"min {min(values):.3f}, mean {np.mean(values):.3f}, max {max(values):.3f}"

    print(f"\nmachine: {machine()}")
    print(f"held-out accuracy at the target fraction over seeds {seeds}: {spread('accuracy')}")
    print(f"held-out ECE (15 bins), calibrated: {spread('ece')}")
    print(f"held-out ECE (15 bins), uncalibrated: {spread('ece_uncalibrated')}")
    print(
        f"determinism (seed {seeds[0]}, trained twice): max |score difference| "
        f"{score_diff:.3g}, max |weight difference| {weight_diff:.3g}"
    )


if __name__ == "__main__":
    main()
