"""Pretrained encoders of the segmenter: local weights files, the band adapter,
and the checks on the flags. Fast: models are built and called, never fitted."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from footprints.errors import ConfigError
from model_training import cards, encoders
from model_training.configs import SegmenterConfig


def _adapter(model: keras.Model) -> keras.Model:
    return keras.Model(model.input, model.get_layer("band_adapter").output)


def test_band_mapping_worked_examples():
    np.testing.assert_array_equal(encoders.band_mapping(1), [[1, 1, 1]])
    np.testing.assert_array_equal(encoders.band_mapping(2), [[1, 0, 0.5], [0, 1, 0.5]])
    np.testing.assert_array_equal(encoders.band_mapping(3), np.eye(3))
    np.testing.assert_array_equal(encoders.band_mapping(4), np.vstack([np.eye(3), np.zeros(3)]))
    with pytest.raises(ConfigError):
        encoders.band_mapping(0)


def test_local_weights_load_into_the_encoder_and_are_hashed(tmp_path):
    keras.utils.set_random_seed(0)
    base = encoders.build_encoder_base("mobilenetv2")
    path = str(tmp_path / "mobilenet_v2_no_top.weights.h5")
    base.save_weights(path)
    keras.utils.set_random_seed(1)  # the model's own random start differs
    model = encoders.build_encoder_unet(1, "mobilenetv2", path, filters=4)
    loaded = model.get_layer("mobilenetv2_encoder")
    assert len(loaded.weights) == len(base.weights)
    for ours, theirs in zip(loaded.weights, base.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with open(path, "rb") as f:
        assert cards.file_sha256(path) == hashlib.sha256(f.read()).hexdigest()
    out = model(np.full((2, 64, 96, 1), 100, np.float32))
    assert out.shape == (2, 64, 96, 1)


def test_weights_of_another_network_or_no_file_are_refused(tmp_path):
    other = encoders.build_encoder_base("efficientnetb0")
    path = str(tmp_path / "efficientnet.weights.h5")
    other.save_weights(path)
    with pytest.raises(ConfigError, match="mobilenetv2 without its top"):
        encoders.build_encoder_unet(3, "mobilenetv2", path)
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        encoders.build_encoder_unet(3, "mobilenetv2", str(tmp_path / "missing.h5"))


@pytest.mark.parametrize(
    "encoder, preprocess",
    [
        ("mobilenetv2", keras.applications.mobilenet_v2.preprocess_input),
        ("resnet50", keras.applications.resnet50.preprocess_input),
    ],
)
def test_adapter_starts_as_the_networks_own_preprocessing(encoder, preprocess):
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    # 3 bands: red, green, blue as they are.
    three = _adapter(encoders.build_encoder_unet(3, encoder, filters=2))
    np.testing.assert_allclose(three(rgb), preprocess(rgb.copy()), atol=1e-3)
    # 1 band: grey on all three channels.
    grey = rgb[..., :1]
    one = _adapter(encoders.build_encoder_unet(1, encoder, filters=2))
    np.testing.assert_allclose(one(grey), preprocess(np.repeat(grey, 3, -1)), atol=1e-3)
    # 4 bands: the fourth (NIR) starts with no weight.
    nir = np.concatenate([rgb, rng.uniform(0, 255, (1, 32, 32, 1)).astype(np.float32)], -1)
    four = _adapter(encoders.build_encoder_unet(4, encoder, filters=2))
    np.testing.assert_allclose(four(nir), preprocess(rgb.copy()), atol=1e-3)


def test_encoder_settings_are_checked():
    common = {"images": "t.tif", "footprints": "f.gpkg", "output": "o"}
    with pytest.raises(ConfigError, match="needs a pretrained --encoder"):
        SegmenterConfig(**common, encoder_weights="w.h5")
    with pytest.raises(ConfigError, match="multiple of 32"):
        SegmenterConfig(**common, encoder="resnet50", patch_size=48)
    with pytest.raises(ConfigError, match="must be one of"):
        SegmenterConfig(**common, encoder="vgg16")
    config = SegmenterConfig(**common, encoder="efficientnetb0", patch_size=128)
    assert config.multiple == 32 and config.halo == 64
