"""Augmentations shared by the classifier and the segmenter input pipelines.

Footprints seen from above have no "up": a roof is a roof after any flip or
90-degree rotation, so the spatial augmentations are the eight symmetries of
the square (dihedral group D4) and never interpolate. The segmenter must move
its mask with its image, so :func:`random_spatial` draws one transform and
applies it to every tensor it is given. Colour augmentations change the image
only, never a mask (:func:`random_colour`).

All functions work on single examples shaped ``[H, W, C]`` inside a
``tf.data`` map, with TensorFlow's stateful random ops (seeded through
``tf.random.set_seed`` by the trainers).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def random_spatial(tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Applies one random flip and 90-degree rotation to each tensor.

    Args:
        tensors: Tensors shaped ``[H, W, C]`` with the same (square) H and W,
            for example an image and its mask.

    Returns:
        The transformed tensors, in the same order. Every tensor gets the same
        transform, so masks stay aligned with their images.
    """
    flip = tf.random.uniform([]) < 0.5
    k = tf.random.uniform([], minval=0, maxval=4, dtype=tf.int32)
    out = []
    for tensor in tensors:
        # A left-right flip plus the four rotations gives all eight symmetries;
        # an up-down flip would only repeat one of them.
        flipped = tf.cond(flip, lambda t=tensor: tf.reverse(t, axis=[1]), lambda t=tensor: t)
        out.append(tf.image.rot90(flipped, k))
    return out


def random_colour(
    image: tf.Tensor, brightness: float = 0.1, contrast: float = 0.2, max_value: float = 255.0
) -> tf.Tensor:
    """Random brightness and contrast for a float image in ``[0, max_value]``.

    Args:
        image: Float tensor ``[H, W, C]``; any number of bands.
        brightness: Largest brightness shift, as a fraction of ``max_value``.
        contrast: Contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        max_value: The top of the image's value range (255 for uint8 input).

    Returns:
        The adjusted image, clipped back to ``[0, max_value]`` so the model
        never sees values it cannot get at serving time.
    """
    if brightness > 0:
        image = tf.image.random_brightness(image, brightness * max_value)
    if contrast > 0:
        image = tf.image.random_contrast(image, 1.0 - contrast, 1.0 + contrast)
    return tf.clip_by_value(image, 0.0, max_value)


def apply_spatial(batch: tf.Tensor, flip: tf.Tensor, rot: tf.Tensor) -> tf.Tensor:
    """Applies given flips and rotations to a batch of square patches.

    The seeded counterpart of :func:`random_spatial`: the decisions come in
    as data (drawn by the caller's seeded generator), so the result does not
    depend on op-level random state.

    Args:
        batch: ``[B, P, P, C]``; image and mask channels together, so they move as one.
        flip: ``[B]`` bool, left-right flip first.
        rot: ``[B]`` int, number of 90-degree counterclockwise turns (0..3).
    """
    out = tf.where(flip[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
    turned = out
    for k in (1, 2, 3):
        turned = tf.where((rot == k)[:, None, None, None], tf.image.rot90(out, k), turned)
    return turned


def apply_colour(
    batch: tf.Tensor, brightness: tf.Tensor, contrast: tf.Tensor, max_value: float = 255.0
) -> tf.Tensor:
    """Given per-patch brightness shifts and contrast factors, clipped to range.

    Contrast scales each patch around its own mean, as
    ``tf.image.adjust_contrast`` does.

    Args:
        batch: Float ``[B, H, W, C]`` in ``[0, max_value]``.
        brightness: ``[B]`` shifts in the image's units.
        contrast: ``[B]`` factors (1 is no change).
        max_value: The top of the image's value range.
    """
    mean = tf.reduce_mean(batch, axis=[1, 2, 3], keepdims=True)
    out = (batch - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return tf.clip_by_value(out, 0.0, max_value)


def apply_sensor(
    batch: tf.Tensor,
    gamma: tf.Tensor,
    blur: tf.Tensor,
    noise: tf.Tensor,
    seed: tf.Tensor,
    max_value: float = 255.0,
) -> tf.Tensor:
    """Given per-patch gamma, blur and noise: the look of another sensor or day.

    ``(x / max) ** gamma * max`` bends the radiometry as another stretch of
    11- or 12-bit data would; the patch is then blended ``blur`` of the way
    towards its 1-pixel Gaussian blur; Gaussian noise of standard deviation
    ``noise`` (the image's units) is added from a stateless generator seeded
    by ``seed``, and the result clipped to range.

    Args:
        batch: Float ``[B, H, W, C]`` in ``[0, max_value]``.
        gamma: ``[B]`` exponents (1 is no change).
        blur: ``[B]`` blend factors in ``[0, 1]`` (0 is no change).
        noise: ``[B]`` standard deviations.
        seed: ``[2]`` int seed of the noise.
        max_value: The top of the image's value range.
    """
    out = (batch / max_value) ** gamma[:, None, None, None] * max_value
    taps = tf.constant([0.274, 0.452, 0.274])  # a Gaussian of sigma 1, sampled
    kernel = (taps[:, None] * taps[None, :])[:, :, None, None]
    channels = batch.shape[-1]
    kernel = tf.tile(kernel, [1, 1, channels, 1])
    padded = tf.pad(out, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    soft = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
    out += blur[:, None, None, None] * (soft - out)
    grain = tf.random.stateless_normal(tf.shape(out), tf.cast(seed, tf.int32))
    out += noise[:, None, None, None] * grain
    return tf.clip_by_value(out, 0.0, max_value)
