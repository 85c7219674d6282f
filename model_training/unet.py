"""A configurable U-Net for building segmentation, as in the segmentation study.

The encoder has ``depth`` levels of two 3x3 convolutions (or a residual block
of them) followed by 2x2 max pooling, doubling the filters at each level; the
decoder mirrors it with 2x2 transposed convolutions and skip connections. The
centre, at the lowest resolution, is one of:

* ``plain``: a conv block, as in the original U-Net;
* ``serial-dilated``: 3x3 convolutions with dilation 1, 2, 4, 8 in sequence,
  their outputs summed (D-LinkNet's centre): a large receptive field, so a
  roof is seen with its surroundings, at no loss of resolution;
* ``parallel-dilated``: the same dilations side by side, concatenated and
  fused by a 1x1 convolution (ASPP-like).

The model takes float32 ``[N, H, W, C]`` with values 0..255 (the contract's
uint8 input, cast), H and W multiples of ``2**depth``, and returns building
probabilities ``[N, H, W, 1]``. :func:`receptive_field` computes how far a
pixel's prediction can look, which sets the halo the pipeline reads around
each window (:func:`receptive_halo`).
"""

from __future__ import annotations

import keras
from keras import layers

from model_training.configs import CENTRES, UNetConfig, receptive_field, receptive_halo

__all__ = ["CENTRES", "UNetConfig", "build_unet", "receptive_field", "receptive_halo"]


def _conv(x, filters: int, name: str, dilation: int = 1):
    x = layers.Conv2D(
        filters, 3, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv"
    )(x)
    # momentum 0.9: few steps per epoch on small areas (see classifier_models).
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _block(x, filters: int, name: str, residual: bool):
    if not residual:
        return _conv(_conv(x, filters, f"{name}_a"), filters, f"{name}_b")
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
    y = _conv(x, filters, f"{name}_a")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_b_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _centre(x, filters: int, config: UNetConfig):
    if config.centre == "plain":
        return _block(x, filters, "centre", config.residual)
    if config.centre == "serial-dilated":
        outputs, y = [], x
        for d in config.dilations:
            y = _conv(y, filters, f"centre_d{d}", dilation=d)
            outputs.append(y)
        return layers.Add(name="centre_sum")(outputs)
    branches = [_conv(x, filters, f"centre_p{d}", dilation=d) for d in config.dilations]
    y = layers.Concatenate(name="centre_concat")(branches)
    y = layers.Conv2D(filters, 1, use_bias=False, name="centre_fuse_conv")(y)
    y = layers.BatchNormalization(momentum=0.9, name="centre_fuse_bn")(y)
    return layers.ReLU(name="centre_fuse_relu")(y)


def build_unet(bands: int, config: UNetConfig = UNetConfig()) -> keras.Model:
    """Builds the U-Net for ``bands`` input channels; see the module docstring."""
    inputs = keras.Input((None, None, bands), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    skips = []
    for level in range(config.depth):
        x = _block(x, config.filters * 2**level, f"enc{level}", config.residual)
        skips.append(x)
        x = layers.MaxPooling2D(name=f"pool{level}")(x)
    x = _centre(x, config.filters * 2**config.depth, config)
    if config.dropout:
        x = layers.SpatialDropout2D(config.dropout, name="centre_dropout")(x)
    for level in reversed(range(config.depth)):
        filters = config.filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _block(x, filters, f"dec{level}", config.residual)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name="unet")
