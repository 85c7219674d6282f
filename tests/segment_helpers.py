"""Small, real segmenter models and GeoTIFF tiles for the segmentation tests.

The models meet the segmenter contract exactly (SavedModel, ``serving_default``
taking ``images`` uint8 [None, H, W, C] and returning ``mask`` float32
[None, H, W], with ``assets/segmenter.json``) and are fully convolutional, so
the same model runs on a window or on a whole tile in one pass -- which is
what the no-seam test compares. Their receptive field is known by
construction: 3x3 convolutions with dilations ``d`` see ``sum(d)`` pixels on
each side.

* :func:`save_conv_segmenter` -- seeded random dilated convolutions: a model
  whose output depends on context in a known radius (seams would show);
* :func:`save_bright_segmenter` -- a 3x3 box blur of the mean band,
  thresholded with a steep sigmoid: finds bright buildings on a dark ground,
  so pipeline outputs can be checked against drawn truth.

The scenes (:func:`bright_scene`) are arrays; tests write them with
:func:`raster_fixtures.write_geotiff`, the one GeoTIFF writer of the tests.
"""

from __future__ import annotations

import os

import numpy as np

from footprints.contracts import SEGMENTER_ASSETS, SegmenterAssets


def _save(model_dir: str, module, assets: SegmenterAssets) -> str:
    import tensorflow as tf

    tf.saved_model.save(module, model_dir, signatures={"serving_default": module.serve})
    os.makedirs(os.path.join(model_dir, "assets"), exist_ok=True)
    with open(os.path.join(model_dir, "assets", SEGMENTER_ASSETS), "w", encoding="utf-8") as f:
        f.write(assets.to_json())
    return model_dir


def _assets(window_size, bands, raw_dtype, receptive_halo, scale=None, offset=None):
    n = len(bands)
    if scale is None:
        scale = (1.0 if raw_dtype == "uint8" else 255.0 / 4095.0,) * n
    return SegmenterAssets(
        window_size=window_size,
        bands=tuple(bands),
        raw_dtype=raw_dtype,
        offset=tuple(offset or (0.0,) * n),
        scale=tuple(scale),
        receptive_halo=receptive_halo,
    )


def save_conv_segmenter(
    model_dir: str,
    *,
    bands=(1, 2, 3),
    window_size: int = 64,
    dilations=(1, 2, 4),
    width: int = 8,
    seed: int = 0,
    raw_dtype: str = "uint8",
    receptive_halo: int | None = None,
    brightness: float = 0.0,
) -> str:
    """Saves a random dilated-conv segmenter; its receptive radius is ``sum(dilations)``.

    With ``brightness`` > 0 the logits also get ``brightness * (mean band - 128)``, so
    the mask follows bright buildings (as a trained model's would) while the model
    still costs its convolutions: what the benchmark needs.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    channels = len(bands)
    kernels, biases = [], []
    c_in = channels
    for _ in dilations:
        kernels.append(rng.normal(0, np.sqrt(2.0 / (9 * c_in)), (3, 3, c_in, width)))
        biases.append(rng.normal(0, 0.1, (width,)))
        c_in = width
    head = rng.normal(0, 2.0 / np.sqrt(width), (1, 1, width, 1))
    radius = int(sum(dilations))

    class ConvSegmenter(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernels = [tf.Variable(k.astype(np.float32)) for k in kernels]
            self.biases = [tf.Variable(b.astype(np.float32)) for b in biases]
            self.head = tf.Variable(head.astype(np.float32))

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]
        )
        def serve(self, images):
            x = tf.cast(images, tf.float32) / 255.0 - 0.5
            for k, b, d in zip(self.kernels, self.biases, dilations, strict=True):
                x = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME", dilations=d) + b)
            logits = 4.0 * tf.nn.conv2d(x, self.head, 1, "SAME")
            if brightness:
                mean = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1, keepdims=True)
                logits = 0.1 * logits + brightness * (mean - 128.0)
            return {"mask": tf.sigmoid(logits)[..., 0]}

    assets = _assets(
        window_size, bands, raw_dtype, radius if receptive_halo is None else receptive_halo
    )
    return _save(model_dir, ConvSegmenter(), assets)


def save_bright_segmenter(
    model_dir: str,
    *,
    bands=(1, 2, 3),
    window_size: int = 64,
    raw_dtype: str = "uint8",
    level: float = 128.0,
    gain: float = 0.2,
    poison_value: int | None = None,
    scale=None,
) -> str:
    """Saves a segmenter that calls bright pixels buildings (receptive radius 1).

    ``p = sigmoid(gain * (box3x3(mean over bands) - level))`` on the uint8 model
    input. With ``poison_value``, a window whose pixels all equal it makes the
    model raise (to test dead letters).
    """
    import tensorflow as tf

    channels = len(bands)
    box = np.full((3, 3, channels, 1), 1.0 / (9 * channels), np.float32)

    class BrightSegmenter(tf.Module):
        def __init__(self):
            super().__init__()
            self.box = tf.Variable(box)

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]
        )
        def serve(self, images):
            if poison_value is not None:
                poisoned = tf.reduce_all(
                    tf.equal(images, tf.cast(poison_value, tf.uint8)), axis=[1, 2, 3]
                )
                tf.debugging.Assert(
                    tf.logical_not(tf.reduce_any(poisoned)),
                    ["a poisoned window reached the test model"],
                )
            mean = tf.nn.conv2d(tf.cast(images, tf.float32), self.box, 1, "SAME")
            return {"mask": tf.sigmoid(gain * (mean - level))[..., 0]}

    return _save(model_dir, BrightSegmenter(), _assets(window_size, bands, raw_dtype, 1, scale))


def run_whole(model_dir: str, image: np.ndarray) -> np.ndarray:
    """The model applied to a whole [H, W, C] uint8 image in one pass: float32 [H, W]."""
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    return fn(images=tf.constant(image[None]))["mask"].numpy()[0]


def bright_scene(
    height: int,
    width: int,
    rects,
    *,
    bands: int = 3,
    dtype="uint8",
    seed: int = 0,
    dark: int = 40,
    bright: int = 220,
) -> tuple[np.ndarray, np.ndarray]:
    """A dark, noisy ground with bright rectangles (row0, col0, row1, col1) as buildings.

    Returns:
        ``(data [bands, H, W], truth [H, W] bool)``; uint16 scenes hold
        12-bit values (x 4095/255).
    """
    rng = np.random.default_rng(seed)
    truth = np.zeros((height, width), bool)
    for r0, c0, r1, c1 in rects:
        truth[r0:r1, c0:c1] = True
    base = np.where(truth, bright, dark).astype(np.float32)
    data = base[None] + rng.normal(0, 8, (bands, height, width))
    data = np.clip(data, 0, 255)
    if dtype == "uint16":
        return np.rint(data * 4095.0 / 255.0).astype(np.uint16), truth
    return np.rint(data).astype(np.uint8), truth


def random_image(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 imagery [bands, H, W] (so convolutions see structure)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (bands, height // 4 + 2, width // 4 + 2)).astype(np.float32)
    fine = np.kron(coarse, np.ones((1, 4, 4), np.float32))[:, :height, :width]
    return np.clip(fine + rng.normal(0, 20, fine.shape), 0, 255).astype(np.uint8)
