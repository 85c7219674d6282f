"""Export trained Keras models to the model contracts of ``footprints.contracts``.

Both exports wrap the Keras model in a small ``tf.Module`` whose
``tf.function`` is the ``serving_default`` signature, and save it with
``tf.saved_model.save``. Doing it by hand rather than with
``keras.Model.export`` keeps the signature's input and output names exactly
the contract's, and puts the preprocessing in the graph:

* **classifier** (``examples`` tf.string [None] -> ``score`` float32 [None]):
  parses chip records, decodes PNG or JPEG (RGB, grey or RGBA, 8- or 16-bit)
  with :func:`model_training.data.decode_resize`, the function training used,
  and runs the model, then applies the Platt calibration fitted on the
  validation split (:func:`model_training.evaluation.fit_platt`), so
  ``score`` is a calibrated probability. A record whose image bytes are not PNG or JPEG at all
  scores NaN instead of failing its batch; a record that is not a
  ``tf.train.Example``, or an image that is truncated after a valid header,
  still fails the batch, which is why the scoring pipeline decode-checks
  records before batching.
* **segmenter** (``images`` uint8 [None, H, W, C] -> ``mask`` float32
  [None, H, W]): takes pixels already scaled by
  :func:`footprints.contracts.scale_to_model_input`; pads H and W up to a
  multiple of the U-Net's downsampling factor by mirroring and crops the mask
  back, so any window size works. The assets JSON is written next to it.

Both graphs serve an empty batch (an empty output) on any CPU: TensorFlow's
oneDNN convolution, on by default on x86 hosts with AVX-512 (VNNI) or AMX
and off on AVX2-only ones, returns a batch of 0 with its *input's* shape
([0, 32, 32, 3] for 16 filters), and the next layer then fails with
``Incompatible shapes: [16] vs. [0,32,32,3]``. So the model never sees an
empty batch: :func:`_never_empty` adds one blank image when there is none,
and the output is cut back to the batch (no control flow, nothing added to a
non-empty batch; ``tests/test_serving_graph.py`` runs both settings of
``TF_ENABLE_ONEDNN_OPTS``).

Any Keras model with the right input and output can be exported this way,
which is how users plug in their own architectures (see docs/training.md).
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from footprints import contracts
from model_training import data, evaluation
from model_training.masking import fill_masked


def _never_empty(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(images, n)``: the batch with one blank image appended only when it is empty.

    The model's output for the first ``n`` rows is the batch's; see the module
    docstring for why an empty batch must not reach a convolution.
    """
    n = tf.shape(images)[0]
    blank = tf.zeros(
        tf.concat([[1 - tf.minimum(n, 1)], tf.shape(images)[1:]], axis=0), images.dtype
    )
    return tf.concat([images, blank], axis=0), n


class _ClassifierServing(tf.Module):
    """The classifier contract around a Keras model taking 0..255 float images."""

    def __init__(
        self, model: keras.Model, image_size: int, calibration: tuple[float, float] | None = None
    ):
        super().__init__()
        self.model = model
        self._image_size = image_size
        self._calibration = calibration
        # A valid one-pixel PNG stands in for undecodable images so the batch
        # decodes; their scores are replaced by NaN afterwards.
        self._placeholder = tf.constant(tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)).numpy())
        self.serve = tf.function(
            self._serve,
            input_signature=[tf.TensorSpec([None], tf.string, name=contracts.CLASSIFIER_INPUT)],
        )

    def _serve(self, examples):
        size = self._image_size
        parsed = data.parse_chips(examples)
        encoded = parsed[contracts.IMAGE_KEY]
        ok = data.is_decodable(encoded)
        safe = tf.where(ok, encoded, self._placeholder)
        images = tf.map_fn(  # masked pixels carry no signal (model_training.masking)
            lambda em: fill_masked(data.decode_resize(em[0], size), em[1]),
            (safe, parsed[contracts.MASK_KEY]),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        images, n = _never_empty(images)
        scores = tf.reshape(tf.cast(self.model(images, training=False), tf.float32), [-1])[:n]
        if self._calibration is not None:
            scores = _platt(scores, *self._calibration)
        nan = tf.fill(tf.shape(scores), tf.constant(float("nan"), tf.float32))
        return {contracts.CLASSIFIER_OUTPUT: tf.where(ok, scores, nan)}


def _platt(scores: tf.Tensor, a: float, b: float) -> tf.Tensor:
    """``sigmoid(a * logit(p) + b)`` in float64, as ``apply_platt`` in tests/oracles.py does."""
    p = tf.clip_by_value(
        tf.cast(scores, tf.float64), evaluation.LOGIT_EPS, 1.0 - evaluation.LOGIT_EPS
    )
    z = tf.math.log(p) - tf.math.log1p(-p)
    return tf.cast(tf.sigmoid(a * z + b), tf.float32)


class _SegmenterServing(tf.Module):
    """The segmenter contract around a Keras model taking 0..255 float images."""

    def __init__(self, model: keras.Model, bands: int, multiple: int):
        super().__init__()
        self.model = model
        self._multiple = multiple
        self.serve = tf.function(
            self._serve,
            input_signature=[
                tf.TensorSpec([None, None, None, bands], tf.uint8, name=contracts.SEGMENTER_INPUT)
            ],
        )

    def _serve(self, images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        pad_h = (-height) % self._multiple
        pad_w = (-width) % self._multiple
        x = tf.pad(
            tf.cast(images, tf.float32), [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC"
        )
        x, n = _never_empty(x)
        probs = tf.cast(self.model(x, training=False), tf.float32)
        return {contracts.SEGMENTER_OUTPUT: probs[:n, :height, :width, 0]}


def _save(module: tf.Module, model_dir: str) -> None:
    # Write to a temporary folder and rename, so a crash never leaves a
    # half-written model where the pipeline would load it.
    tmp = model_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(
        module, tmp, signatures={contracts.SIGNATURE: module.serve.get_concrete_function()}
    )
    os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)


def export_classifier(
    model: keras.Model,
    model_dir: str,
    image_size: int,
    calibration: tuple[float, float] | None = None,
) -> str:
    """Saves ``model`` as a classifier SavedModel at ``model_dir``.

    Args:
        model: Keras model mapping float32 ``[N, image_size, image_size, 3]``
            images with values 0..255 to probabilities ``[N, 1]`` (or ``[N]``).
        model_dir: Folder to write; replaced if it exists.
        image_size: The model's input height and width.
        calibration: Platt ``(a, b)`` baked into the graph after the model,
            or None to serve the model's own probabilities.

    Returns:
        ``model_dir``.
    """
    _save(_ClassifierServing(model, image_size, calibration), model_dir)
    return model_dir


def export_segmenter(
    model: keras.Model, model_dir: str, assets: contracts.SegmenterAssets, multiple: int = 1
) -> str:
    """Saves ``model`` as a segmenter SavedModel with ``assets/segmenter.json``.

    Args:
        model: Keras model mapping float32 ``[N, H, W, C]`` images with values
            0..255 to building probabilities ``[N, H, W, 1]``.
        model_dir: Folder to write; replaced if it exists.
        assets: Window size, bands and scaling the pipeline needs.
        multiple: H and W are padded up to a multiple of this (``2**depth``
            for a U-Net) before the model runs.

    Returns:
        ``model_dir``.
    """
    _save(_SegmenterServing(model, assets.band_count, multiple), model_dir)
    with open(
        os.path.join(model_dir, "assets", contracts.SEGMENTER_ASSETS), "w", encoding="utf-8"
    ) as f:
        f.write(assets.to_json())
    return model_dir


def load_serving(model_dir: str):
    """The ``serving_default`` function of a SavedModel (kept alive with its object)."""
    loaded = tf.saved_model.load(model_dir)
    fn = loaded.signatures[contracts.SIGNATURE]
    fn._loaded = loaded  # the signature needs its object's variables alive
    return fn
