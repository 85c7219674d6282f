"""Tests of the classifier's input pipeline: shards, splits, counts and decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from footprints import contracts
from footprints.errors import InputError
from model_training import data, synthetic


def _png(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_resize_handles_rgb_grey_rgba_16bit_and_jpeg():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    grey = np.full((20, 30), 100, np.uint8)
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    deep = np.full((20, 30), 65535, np.uint16)
    cases = {
        "rgb": (_png(rgb), [200, 0, 0]),
        "grey": (_png(grey), [100, 100, 100]),
        "rgba": (_png(rgba), [200, 0, 0]),
        "16-bit": (_png(deep), [255, 255, 255]),
        "jpeg": (synthetic.encode_image(rgb, "jpeg"), [200, 0, 0]),
    }
    for name, (encoded, colour) in cases.items():
        out = data.decode_resize(tf.constant(encoded), 16).numpy()
        assert out.shape == (16, 16, 3) and out.dtype == np.float32, name
        np.testing.assert_allclose(out.mean(axis=(0, 1)), colour, atol=3, err_msg=name)
        assert bool(data.is_decodable(tf.constant(encoded)))


def test_is_decodable_rejects_non_images():
    values = tf.constant([b"", b"GIF89a....", b"\x89PN", b"not an image at all"])
    assert not data.is_decodable(values).numpy().any()


def _write(tmp_path, chips, name="chips", index=0, shards=1, compression="none"):
    path = tmp_path / contracts.shard_name(name, index, shards, compression)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for chip in chips:
            writer.write(contracts.encode_chip(chip))
    return str(path)


def _chip(i, label, image=None):
    image = image or _png(np.full((8, 8, 3), 50 * (label or 0), np.uint8))
    return contracts.Chip(footprint_id=f"id-{i}", image=image, label=label)


def test_counts_mix_plain_and_gzip_shards_and_skip_unlabelled_and_bad_images(tmp_path):
    _write(tmp_path, [_chip(0, 0), _chip(1, 1), _chip(2, None)], index=0, shards=2)
    _write(
        tmp_path,
        [_chip(3, 1), _chip(4, 1, image=b"garbage")],
        index=1,
        shards=2,
        compression="gzip",
    )
    split = data.ChipSplit(data.list_shards(str(tmp_path / "chips-*")))
    counts = data.count_labels(split)
    assert counts.records == 5 and counts.per_class == {0: 1, 1: 2}
    assert counts.unlabelled == 1 and counts.undecodable == 1
    assert counts.class_weights() == {0: pytest.approx(1.5), 1: pytest.approx(0.75)}
    ds = data.classifier_dataset(
        split, data.InputOptions(image_size=8, batch_size=8), training=False
    )
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert sorted(labels.tolist()) == [0.0, 1.0, 1.0]


def test_empty_shards_and_missing_classes_are_clear_errors(tmp_path):
    empty = _write(tmp_path, [], name="empty")
    with pytest.raises(InputError, match="empty"):
        data.count_labels(data.ChipSplit((empty,))).check("training", (empty,))
    one_class = _write(tmp_path, [_chip(i, 1) for i in range(5)], name="ones")
    with pytest.raises(InputError, match="no non-residential examples"):
        data.count_labels(data.ChipSplit((one_class,))).check("training", (one_class,))
    with pytest.raises(InputError, match="no chip shards match"):
        data.list_shards(str(tmp_path / "nothing-*.tfrecord"))


def test_unreadable_shards_are_input_errors(tmp_path):
    path = tmp_path / contracts.shard_name("bad", 0, 1)
    path.write_bytes(b"this is not a tfrecord file, just some bytes")
    with pytest.raises(InputError, match="cannot read chip records"):
        data.count_labels(data.ChipSplit((str(path),)))


def test_train_and_val_splits_are_disjoint_stable_and_near_the_fraction(tmp_path):
    paths = synthetic.write_chip_shards(str(tmp_path), 400, seed=5, size=8, num_shards=3)
    ids = {}
    for subset in ("train", "val"):
        split = data.ChipSplit(tuple(paths), subset, 0.25)
        ids[subset] = {r[contracts.ID_KEY] for r in split.parsed().as_numpy_iterator()}
    assert not ids["train"] & ids["val"]
    assert len(ids["train"]) + len(ids["val"]) == 400
    assert 60 <= len(ids["val"]) <= 140
    again = data.ChipSplit(tuple(paths), "val", 0.25)
    assert {r[contracts.ID_KEY] for r in again.parsed().as_numpy_iterator()} == ids["val"]


def test_training_dataset_repeats_augments_and_caches(tmp_path):
    paths = synthetic.write_chip_shards(str(tmp_path), 20, seed=1, size=12)
    options = data.InputOptions(image_size=12, batch_size=8, cache=str(tmp_path / "cache"), seed=1)
    ds = data.classifier_dataset(data.ChipSplit(tuple(paths)), options, training=True)
    batches = list(ds.take(5))  # 40 examples from 20: it repeats
    assert all(x.shape == (8, 12, 12, 3) for x, _ in batches)
    assert all(float(tf.reduce_min(x)) >= 0 and float(tf.reduce_max(x)) <= 255 for x, _ in batches)
    assert list(tmp_path.glob("cache*"))  # the on-disk cache was written
