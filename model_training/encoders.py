"""Pretrained encoders for the segmenter: a U-Net decoder on a Keras application.

``footprints train segmenter --encoder NAME --encoder-weights FILE`` builds
the Keras application ``NAME`` without its top (:data:`ENCODERS`), with
``weights=None``, and loads ``FILE``, a local weights file of that network
without its top (nothing is downloaded). Its feature maps at 1/2, 1/4, 1/8
and 1/16 of the input resolution are the skips of a U-Net decoder (2x
upsampling, concatenation, two 3x3 convolutions per level, ``filters *
2**level`` filters), ending at full resolution in a sigmoid.

**Bands.** ImageNet encoders read three channels, red, green, blue. A 1x1
convolution in front (``band_adapter``, trained with the rest) maps the
tile's bands onto them; it starts as:

* 1 band (panchromatic): the band on all three channels (grey);
* 2 bands: red = band 1, green = band 2, blue = their mean;
* 3 bands: band 1, 2, 3 as red, green, blue (select and order them with
  ``--bands``, e.g. ``--bands 3,2,1`` for BGR files);
* 4 or more bands (e.g. NAIP's RGB + NIR): the first three as red, green,
  blue; each further band starts with zero weight, so training begins from
  what ImageNet taught and learns how much the extra band adds.

The adapter also applies each network's own input normalisation (MobileNetV2:
``x / 127.5 - 1``; ResNet50: BGR order minus the ImageNet channel means;
EfficientNetB0: none, it normalises inside), so the model still takes the
segmenter contract's 0..255 input.

Inputs must be multiples of 32 (five halvings).
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
from keras import layers

from footprints.errors import ConfigError
from model_training.configs import ENCODER_MULTIPLE

#: Encoders and, per encoder, the layers whose outputs are the skips at 1/2,
#: 1/4, 1/8 and 1/16 of the input, and the bottom at 1/32.
SKIPS = {
    "mobilenetv2": (
        "block_1_expand_relu",
        "block_3_expand_relu",
        "block_6_expand_relu",
        "block_13_expand_relu",
        "out_relu",
    ),
    "resnet50": (
        "conv1_relu",
        "conv2_block3_out",
        "conv3_block4_out",
        "conv4_block6_out",
        "conv5_block3_out",
    ),
    "efficientnetb0": (
        "block2a_expand_activation",
        "block3a_expand_activation",
        "block4a_expand_activation",
        "block6a_expand_activation",
        "top_activation",
    ),
}
ENCODERS = tuple(SKIPS)
#: Inputs of an encoder U-Net must be multiples of this.
MULTIPLE = ENCODER_MULTIPLE
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def band_mapping(bands: int) -> np.ndarray:
    """``[bands, 3]`` start weights mapping the tile's bands onto red, green, blue.

    Example:
        1 band -> [[1, 1, 1]]; 2 -> [[1, 0, .5], [0, 1, .5]]; 4 -> identity
        on the first three rows, a zero fourth row.
    """
    if bands < 1:
        raise ConfigError(f"an encoder needs at least one band, got {bands}")
    mapping = np.zeros((bands, 3), np.float32)
    for channel in range(3):
        if channel < bands:
            mapping[channel, channel] = 1.0
        else:
            mapping[: min(bands, 3), channel] = 1.0 / min(bands, 3)
    return mapping


def _adapter_init(encoder: str, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ``[1, 1, bands, 3]`` and bias ``[3]`` of the band adapter."""
    mapping = band_mapping(bands)
    if encoder == "mobilenetv2":
        kernel, bias = mapping / 127.5, np.full(3, -1.0, np.float32)
    elif encoder == "resnet50":
        kernel = mapping[:, ::-1]  # RGB -> BGR, as Keras' "caffe" preprocessing
        bias = -np.array(_IMAGENET_BGR_MEAN, np.float32)
    else:
        kernel, bias = mapping, np.zeros(3, np.float32)
    return kernel[None, None].astype(np.float32), bias.astype(np.float32)


def _application(encoder: str):
    return {
        "mobilenetv2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
        "efficientnetb0": keras.applications.EfficientNetB0,
    }[encoder]


def build_encoder_base(encoder: str) -> keras.Model:
    """The Keras application ``encoder`` without its top and with random weights."""
    if encoder not in SKIPS:
        raise ConfigError(f"--encoder {encoder!r} must be one of none, {', '.join(ENCODERS)}")
    return _application(encoder)(input_shape=(None, None, 3), include_top=False, weights=None)


def load_encoder_weights(base: keras.Model, encoder: str, weights: str) -> None:
    """Loads a local no-top weights file into ``base``.

    Raises:
        ConfigError: the file is missing or holds another network.
    """
    if not os.path.exists(weights):
        raise ConfigError(
            f"--encoder-weights {weights!r} does not exist; copy a {encoder} weights file "
            "without its top (include_top=False) onto this machine; nothing is downloaded"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping nested container")
            base.load_weights(weights)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(
            f"cannot load {encoder} weights from {weights!r}: {exc}; the file must hold a "
            f"{encoder} without its top (keras.applications, include_top=False)"
        ) from exc


def _decode(x, filters: int, name: str):
    for part in ("a", "b"):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_{part}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_{part}_bn")(x)
        x = layers.ReLU(name=f"{name}_{part}_relu")(x)
    return x


def build_encoder_unet(
    bands: int,
    encoder: str,
    weights: str | None = None,
    filters: int = 16,
    dropout: float = 0.1,
) -> keras.Model:
    """A U-Net on the pretrained ``encoder``; see the module docstring.

    Args:
        bands: Input bands of the tiles.
        encoder: One of :data:`ENCODERS`.
        weights: Local no-top weights file of the encoder, or None (random).
        filters: Decoder filters at full resolution, doubled per level below.
        dropout: Spatial dropout on the encoder's bottom features.
    """
    base = build_encoder_base(encoder)
    if weights is not None:
        load_encoder_weights(base, encoder, weights)
    features = keras.Model(
        base.input, [base.get_layer(n).output for n in SKIPS[encoder]], name=f"{encoder}_encoder"
    )
    inputs = keras.Input((None, None, bands), name="image")
    adapter = layers.Conv2D(3, 1, name="band_adapter")
    x = adapter(inputs)
    kernel, bias = _adapter_init(encoder, bands)
    adapter.set_weights([kernel, bias])
    *skips, x = features(x)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="bottom_dropout")(x)
    for level in reversed(range(len(skips) + 1)):
        x = layers.UpSampling2D(name=f"up{level}")(x)
        if level > 0:
            x = layers.Concatenate(name=f"skip{level}")([x, skips[level - 1]])
        x = _decode(x, filters * 2**level, f"dec{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=f"{encoder}_unet")
