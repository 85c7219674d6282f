"""Masked pixels carry no signal in the classifier's input (model_training.masking)."""

import numpy as np
import tensorflow as tf

from model_training.masking import fill_masked


def _png(array: np.ndarray) -> bytes:
    return tf.io.encode_png(array).numpy()


def test_masked_pixels_take_the_valid_mean_and_no_mask_changes_nothing():
    rng = np.random.default_rng(0)
    image = rng.uniform(50, 200, (8, 8, 3)).astype(np.float32)
    image[:, :4] = 0.0  # nodata read as black
    mask = np.full((8, 8, 1), 255, np.uint8)
    mask[:, :4] = 0
    out = fill_masked(tf.constant(image), tf.constant(_png(mask))).numpy()
    valid_mean = image[:, 4:].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(out[:, :4], np.broadcast_to(valid_mean, (8, 4, 3)), rtol=1e-5)
    np.testing.assert_array_equal(out[:, 4:], image[:, 4:])
    np.testing.assert_array_equal(fill_masked(tf.constant(image), tf.constant(b"")).numpy(),
                                  image)


def test_mask_of_another_size_is_resized_and_blended_pixels_count_as_masked():
    image = np.full((4, 4, 3), 100.0, np.float32)
    image[:, :2] = 0.0
    mask = np.full((8, 8, 1), 255, np.uint8)
    mask[:, :3] = 0  # the chip's mask at its native 8 px; image resized to 4 px
    out = fill_masked(tf.constant(image), tf.constant(_png(mask))).numpy()
    assert (out[:, :2] == 100.0).all()  # column 1 blends masked and valid: filled too
