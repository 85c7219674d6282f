"""Masked pixels in the classifier's input: nodata is never data.

A chip record may carry ``image/mask`` (see :mod:`footprints.contracts`): a
one-band PNG, 255 where the pixel holds data, 0 where the orthophoto had
nodata or an internal mask. Fed as they are, masked pixels (0) would read as
black roofs or shadows. :func:`fill_masked` replaces them with the chip's
mean over its valid pixels, after the image is resized to the model's size
and before the model normalizes it, so a masked pixel carries no signal.
The exported serving graph and the training input pipeline both call it, so
training and scoring see the same pixels.

A pixel counts as valid only if its whole footprint in the original chip
was valid (the mask is resized with antialiasing and must stay at 1), so the
resized image's pixels that blend a valid and a masked pixel are filled too.
"""

from __future__ import annotations

import tensorflow as tf

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fill_masked(image: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``image`` with masked pixels set to the mean of its valid pixels.

    Args:
        image: float32 ``[H, W, C]``, the decoded and resized chip.
        mask: Scalar tf.string: the chip's ``image/mask`` PNG, or "" (or
            anything that is not a PNG) when every pixel holds data.

    Returns:
        float32 ``[H, W, C]``; ``image`` itself when there is no mask or no
        valid pixel.
    """
    has_mask = tf.equal(tf.strings.substr(mask, 0, len(_PNG_MAGIC)), _PNG_MAGIC)

    def fill():
        raw = tf.io.decode_png(mask, channels=1)
        weight = tf.image.resize(
            tf.cast(raw, tf.float32) / 255.0, tf.shape(image)[:2], antialias=True
        )
        valid = tf.cast(weight > 0.999, tf.float32)
        count = tf.reduce_sum(valid)
        mean = tf.reduce_sum(image * valid, axis=[0, 1]) / tf.maximum(count, 1.0)
        filled = image * valid + mean * (1.0 - valid)
        return tf.cond(count > 0, lambda: filled, lambda: image)

    return tf.cond(has_mask, fill, lambda: image)
