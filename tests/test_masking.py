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
    np.testing.assert_array_equal(fill_masked(tf.constant(image), tf.constant(b"")).numpy(), image)


def test_mask_of_another_size_is_resized_and_blended_pixels_count_as_masked():
    image = np.full((4, 4, 3), 100.0, np.float32)
    image[:, :2] = 0.0
    mask = np.full((8, 8, 1), 255, np.uint8)
    mask[:, :3] = 0  # the chip's mask at its native 8 px; image resized to 4 px
    out = fill_masked(tf.constant(image), tf.constant(_png(mask))).numpy()
    assert (out[:, :2] == 100.0).all()  # column 1 blends masked and valid: filled too


def test_exported_classifier_ignores_masked_pixels(tmp_path):
    """The serving graph fills masked pixels before the model sees them (issue 11 case 3)."""
    import keras

    from footprints import contracts
    from model_training.export import export_classifier, load_serving

    # A "model" that reports the darkest pixel (0..1): black nodata would dominate it.
    inputs = keras.Input((16, 16, 3))
    darkest = keras.layers.Lambda(
        lambda x: (
            keras.ops.min(keras.ops.reshape(x, (-1, 16 * 16 * 3)), axis=1, keepdims=True) / 255.0
        )
    )(inputs)
    fn = load_serving(export_classifier(keras.Model(inputs, darkest), str(tmp_path / "m"), 16))
    image = np.full((16, 16, 3), 200, np.uint8)
    image[:, :6] = 0  # nodata
    mask = np.full((16, 16, 1), 255, np.uint8)
    mask[:, :6] = 0
    masked = contracts.encode_chip(contracts.Chip("a", _png(image), mask=_png(mask)))
    unmasked = contracts.encode_chip(contracts.Chip("b", _png(image)))
    scores = fn(examples=tf.constant([masked, unmasked]))[contracts.CLASSIFIER_OUTPUT].numpy()
    np.testing.assert_allclose(scores, [200 / 255, 0.0], atol=1e-5)
