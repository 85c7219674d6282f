"""Unit tests of the training building blocks: losses, metrics, schedules, U-Net,
augmentation and model cards. Fast: no training beyond a few steps."""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from footprints.errors import ConfigError
from model_training import augment, cards, evaluation, losses, schedules, unet
from model_training.configs import UNetConfig, parse_loss, receptive_field, receptive_halo

# ------------------------------------------------------------------ losses


def test_parse_loss_weights_and_errors():
    assert parse_loss("0.5*bce+jaccard") == ((0.5, "bce"), (1.0, "jaccard"))
    assert parse_loss("Focal") == ((1.0, "focal"),)
    for bad in ("mse", "x*bce", "-1*bce", "bce+"):
        with pytest.raises(ConfigError):
            parse_loss(bad)


def _masks(seed=0, shape=(3, 16, 16, 1)):
    rng = np.random.default_rng(seed)
    truth = (rng.random(shape) < 0.3).astype("float32")
    return truth, rng.random(shape).astype("float32")


def test_losses_are_near_zero_for_perfect_predictions_and_positive_otherwise():
    truth, noise = _masks()
    perfect = np.clip(truth, 1e-6, 1 - 1e-6)
    for fn in (losses.bce, losses.focal, losses.jaccard, losses.dice):
        good = keras.ops.convert_to_numpy(fn(truth, perfect))
        bad = keras.ops.convert_to_numpy(fn(truth, noise))
        assert good.shape == (3,)
        assert np.all(good < 1e-3), fn.__name__
        assert np.all(bad > 0.05), fn.__name__


def test_focal_down_weights_easy_pixels_relative_to_bce():
    truth = np.ones((1, 4, 4, 1), "float32")
    easy = np.full_like(truth, 0.9)
    hard = np.full_like(truth, 0.1)
    ratio_easy = float(losses.focal(truth, easy)[0] / losses.bce(truth, easy)[0])
    ratio_hard = float(losses.focal(truth, hard)[0] / losses.bce(truth, hard)[0])
    assert ratio_easy < ratio_hard / 10


def test_combined_loss_is_the_weighted_sum_and_serializes():
    truth, pred = _masks(1)
    loss = losses.SegmentationLoss("0.5*bce+jaccard")
    expected = np.mean(0.5 * losses.bce(truth, pred) + losses.jaccard(truth, pred))
    assert float(loss(truth, pred)) == pytest.approx(float(expected), rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(clone(truth, pred)) == pytest.approx(float(loss(truth, pred)), rel=1e-6)


def test_building_iou_docstring_example():
    metric = losses.BuildingIoU()
    metric.update_state(np.array([1, 1, 0, 0], "float32"), np.array([0.9, 0.2, 0.7, 0.1]))
    assert float(metric.result()) == pytest.approx(1 / 3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.floats(0.1, 0.9))
def test_building_iou_accumulates_like_numpy_over_batches(seed, threshold):
    truth, pred = _masks(seed, (4, 8, 8, 1))
    metric = losses.BuildingIoU(threshold)
    metric.update_state(truth[:2], pred[:2])
    metric.update_state(truth[2:], pred[2:])
    expected = evaluation.mask_metrics(truth, pred, threshold)["iou"]
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_building_iou_is_one_when_nothing_to_find_and_nothing_found():
    metric = losses.BuildingIoU()
    metric.update_state(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))
    assert float(metric.result()) == 1.0


# ------------------------------------------------------------------ metrics


def test_binary_metrics_docstring_example():
    m = evaluation.binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    assert m["accuracy"] == 0.75
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]


def test_binary_metrics_leave_out_nan_scores():
    m = evaluation.binary_metrics([0, 1, 1], [0.2, float("nan"), 0.8])
    assert m["examples"] == 2 and m["unscored"] == 1 and m["accuracy"] == 1.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_auc_matches_pairwise_definition_with_ties(pairs):
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], float)
    pos, neg = scores[labels], scores[~labels]
    auc = evaluation.binary_auc(labels, scores)
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(auc)
        return
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc == pytest.approx(wins / (len(pos) * len(neg)))


# ------------------------------------------------------------------ schedules


def test_one_cycle_rises_to_peak_then_anneals():
    sched = schedules.OneCycle(
        0.01, total_steps=100, pct_start=0.3, div_factor=25, final_div_factor=1e3
    )
    rates = np.array([float(sched(s)) for s in range(0, 101)])
    assert rates[0] == pytest.approx(0.01 / 25, rel=1e-5)
    assert rates.max() == pytest.approx(0.01, rel=1e-5)
    assert int(rates.argmax()) == 30
    assert np.all(np.diff(rates[:31]) >= 0) and np.all(np.diff(rates[30:]) <= 0)
    assert rates[100] == pytest.approx(0.01 / 25 / 1e3, rel=1e-3)
    assert float(sched(1000)) == pytest.approx(rates[100], rel=1e-3)
    restored = schedules.OneCycle.from_config(sched.get_config())
    assert float(restored(42)) == pytest.approx(float(sched(42)), rel=1e-6)


def test_suggest_lr_picks_the_steepest_descent_before_the_minimum():
    rates = np.geomspace(1e-5, 1, 60)
    x = np.log10(rates)
    # Flat, a steep fall centred at 1e-3, a minimum near 1e-1, then divergence.
    curve = 1.0 - 0.8 / (1 + np.exp(-(x + 3) * 4)) + np.where(x > -1, (x + 1) ** 2 * 5, 0)
    assert 3e-4 < schedules.suggest_lr(rates, curve) < 3e-3


def test_smooth_is_bias_corrected():
    assert schedules.smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])


@pytest.mark.slow
def test_lr_find_sweeps_and_stops_on_divergence(tmp_path):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="binary_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
    result = schedules.lr_find(model, ds, min_lr=1e-4, max_lr=1e4, steps=60)
    assert 10 < len(result.losses) <= 60
    assert list(result.learning_rates) == sorted(result.learning_rates)
    assert 1e-4 <= result.suggestion <= 1e4
    path = schedules.plot_lr_find(result, str(tmp_path / "lr.png"))
    assert os.path.getsize(path) > 1000
    with pytest.raises(ConfigError):
        schedules.lr_find(model, ds, min_lr=1.0, max_lr=0.1)


# ------------------------------------------------------------------ U-Net


def test_receptive_field_docstring_example_and_halo():
    assert receptive_field(UNetConfig(depth=3)) == 96
    assert receptive_field(UNetConfig(depth=3, centre="serial-dilated")) > 96
    assert receptive_halo(UNetConfig(depth=3), 256) == 48
    assert receptive_halo(UNetConfig(depth=4), 128) == 32  # capped at a quarter window


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(depth=2, filters=4),
        UNetConfig(depth=2, filters=4, residual=True, centre="serial-dilated", dilations=(1, 2)),
        UNetConfig(depth=2, filters=4, residual=True, centre="parallel-dilated", dilations=(1, 2)),
    ],
    ids=["plain", "residual-serial", "residual-parallel"],
)
def test_unet_variants_map_images_to_masks_within_their_receptive_field(config):
    keras.utils.set_random_seed(0)
    model = unet.build_unet(2, config)
    size = 64
    base = np.random.default_rng(0).uniform(0, 255, (1, size, size, 2)).astype("float32")
    poked = base.copy()
    poked[0, size // 2, size // 2, :] += 200.0
    out = model(base, training=False).numpy()
    assert out.shape == (1, size, size, 1)
    assert np.all((out >= 0) & (out <= 1))
    changed = np.argwhere(np.abs(model(poked, training=False).numpy() - out)[0, ..., 0] > 1e-7)
    reach = np.abs(changed - size // 2).max()
    radius = receptive_field(config) // 2
    # The theoretical receptive field bounds how far one pixel's change travels.
    assert 0 < reach <= radius


# ------------------------------------------------------------------ augmentation


def test_random_spatial_moves_image_and_mask_together():
    tf.random.set_seed(1)
    image = tf.reshape(tf.range(2 * 5 * 5, dtype=tf.float32), (5, 5, 2))
    seen = set()
    for _ in range(30):
        a, b = augment.random_spatial([image, image[..., :1]])
        np.testing.assert_array_equal(a.numpy()[..., :1], b.numpy())
        seen.add(a.numpy().tobytes())
        assert sorted(a.numpy().ravel()) == sorted(image.numpy().ravel())
    assert len(seen) >= 6  # most of the eight symmetries of the square show up


def test_random_colour_stays_in_range():
    tf.random.set_seed(2)
    image = tf.random.uniform((8, 8, 4), 0, 255)
    out = augment.random_colour(image, brightness=0.5, contrast=0.9).numpy()
    assert out.min() >= 0 and out.max() <= 255 and out.shape == (8, 8, 4)


def test_apply_sensor_gamma_blur_and_noise_against_numpy():
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (2, 6, 6, 1)).astype(np.float32)
    none = augment.apply_sensor(batch, tf.ones(2), tf.zeros(2), tf.zeros(2), tf.constant([1, 2]))
    np.testing.assert_allclose(none.numpy(), batch, rtol=1e-5)
    # gamma 2 on 0..255: (x / 255) ** 2 * 255.
    squared = augment.apply_sensor(
        batch, tf.constant([2.0, 2.0]), tf.zeros(2), tf.zeros(2), tf.constant([1, 2])
    )
    np.testing.assert_allclose(squared.numpy(), (batch / 255) ** 2 * 255, rtol=1e-4)
    # Full blur of an impulse in a flat patch: the sampled Gaussian's taps.
    flat = np.zeros((1, 5, 5, 1), np.float32)
    flat[0, 2, 2, 0] = 100.0
    blurred = augment.apply_sensor(flat, tf.ones(1), tf.ones(1), tf.zeros(1), tf.constant([1, 2]))
    taps = np.array([0.274, 0.452, 0.274])
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 100 * np.outer(taps, taps)
    np.testing.assert_allclose(blurred.numpy()[0, ..., 0], expected, atol=1e-3)
    # Noise: mid-grey patches keep their mean and gain the asked spread; seeded.
    grey = np.full((1, 64, 64, 1), 128.0, np.float32)
    noisy = augment.apply_sensor(grey, tf.ones(1), tf.zeros(1), tf.constant([5.0]), [3, 4])
    again = augment.apply_sensor(grey, tf.ones(1), tf.zeros(1), tf.constant([5.0]), [3, 4])
    np.testing.assert_array_equal(noisy.numpy(), again.numpy())
    assert abs(noisy.numpy().std() - 5.0) < 0.3 and abs(noisy.numpy().mean() - 128) < 0.5


def test_choose_mask_threshold_docstring_example_and_ties():
    chosen, tried = evaluation.choose_mask_threshold(
        np.array([1, 1, 0, 0]), np.array([0.45, 0.35, 0.2, 0.1])
    )
    assert chosen == 0.3 and tried["0.30"] == 1.0 and tried["0.50"] == 0.0
    # A perfect separation at every threshold: the tie goes to 0.5.
    assert evaluation.choose_mask_threshold(np.array([1, 0]), np.array([0.99, 0.01]))[0] == 0.5
    # Nothing to find: nothing to choose.
    assert evaluation.choose_mask_threshold(np.zeros(3), np.array([0.9, 0.1, 0.5])) == (0.5, {})


# ------------------------------------------------------------------ cards


def test_fingerprint_follows_content_not_location(tmp_path):
    a = tmp_path / "a" / "x.bin"
    b = tmp_path / "b" / "x.bin"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"chips")
    assert cards.fingerprint([str(a)])["sha256"] == cards.fingerprint([str(b)])["sha256"]
    b.write_bytes(b"chipz")
    assert cards.fingerprint([str(a)])["sha256"] != cards.fingerprint([str(b)])["sha256"]


def test_read_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9,1.0\n1,0.8,0.95\n2,0.7,0.9\n")
    history = cards.read_history(str(path))
    assert history["loss"] == [1.0, 0.8, 0.7] and history["epoch"] == [0, 1, 2]
    png = cards.plot_history(history, str(tmp_path / "c.png"), "t")
    assert os.path.getsize(png) > 1000


def test_segmenter_quality_gate_flags_masks_that_miss_the_buildings():
    from model_training.evaluation import mask_metrics, segmenter_weak_reasons

    truth = np.zeros((4, 32, 32), bool)
    truth[:, 8:20, 8:20] = True
    good = truth.astype(np.float32) * 0.9
    assert segmenter_weak_reasons(mask_metrics(truth, good)) == []
    shifted = np.roll(good, 10, axis=2)  # overlaps the buildings by 2 of 12 columns
    (low,) = segmenter_weak_reasons(mask_metrics(truth, shifted))
    assert "below 0.3" in low
    nothing = segmenter_weak_reasons(mask_metrics(truth, np.zeros_like(good)))
    assert len(nothing) == 2 and "no validation pixel" in nothing[1]
