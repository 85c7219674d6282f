"""Classifier architectures: a small CNN and MobileNetV2 with local weights.

Every model here takes float32 RGB images ``[N, S, S, 3]`` with values
0..255 and returns the probability that the footprint is residential,
``[N, 1]``. Normalization is the model's first layer, so the ``.keras`` copy
of a trained model can be fed decoded chips as they are.

* ``small-cnn``: Conv-BatchNorm-ReLU-MaxPool-Dropout stacks as in the
  original notebooks, then global average pooling and a dense head. Trains
  from scratch in a minute or two on a laptop CPU.
* ``mobilenetv2``: the Keras application without its top, for transfer
  learning. Its weights come from a local file (``weights=PATH``, for example
  the Keras ``..._no_top.h5`` file copied onto the machine, or a
  ``.weights.h5`` saved from a MobileNetV2 of the same alpha), or from random
  initialization (``weights=None``); nothing is ever downloaded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import keras
from keras import layers

from footprints.errors import ConfigError
from model_training.configs import BACKBONES

#: Name of the pretrained base inside a mobilenetv2 classifier (see set_backbone_trainable).
BASE_NAME = "backbone"


def small_cnn(
    image_size: int, filters: Sequence[int] = (16, 32, 64), dropout: float = 0.25
) -> keras.Model:
    """Conv-BatchNorm-Pool-Dropout stacks with a sigmoid head.

    Args:
        image_size: Input height and width.
        filters: Filters of each stack; each stack halves the resolution.
        dropout: Dropout rate after each stack and before the head.
    """
    if image_size < 2 ** len(filters):
        raise ConfigError(
            f"image size {image_size} is too small for {len(filters)} pooling stages; "
            f"use at least {2 ** len(filters)} or fewer --filters"
        )
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    for i, n in enumerate(filters):
        for j in range(2):
            x = layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            # momentum 0.9, not 0.99: small sets give few steps per epoch and the
            # moving statistics used at validation must keep up with training.
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}_{j}")(x)
            x = layers.ReLU(name=f"relu{i}_{j}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def mobilenetv2(
    image_size: int, weights: str | None = None, alpha: float = 1.0, dropout: float = 0.2
) -> keras.Model:
    """MobileNetV2 without its top, plus a sigmoid head.

    Args:
        image_size: Input height and width (at least 32).
        weights: Path to a local weights file for the base, or None for random
            initialization. Never downloads anything.
        alpha: Width multiplier; must match the weights file.
        dropout: Dropout rate before the head.

    Raises:
        ConfigError: if the weights file is missing or does not fit the base.
    """
    if image_size < 32:
        raise ConfigError(f"mobilenetv2 needs --image-size of at least 32, got {image_size}")
    if weights is not None and not os.path.exists(weights):
        raise ConfigError(
            f"weights file {weights!r} does not exist; copy a MobileNetV2 no-top weights "
            "file (.h5 or .weights.h5) onto this machine, or pass --weights none"
        )
    try:
        with warnings.catch_warnings():
            # Keras 3.15 warns about MobileNetV2's weightless op containers when
            # loading a .weights.h5 file; every real weight does load (the tests
            # compare them one by one).
            warnings.filterwarnings("ignore", message="Skipping nested container")
            base = keras.applications.MobileNetV2(
                input_shape=(image_size, image_size, 3),
                include_top=False,
                weights=weights,
                alpha=alpha,
                pooling="avg",
            )
    except ValueError as exc:
        raise ConfigError(
            f"cannot load MobileNetV2 (alpha={alpha}) weights from {weights!r}: {exc}; the "
            "file must hold a no-top MobileNetV2 of the same alpha"
        ) from exc
    base.name = BASE_NAME
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # MobileNetV2 was trained on inputs in [-1, 1].
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    x = base(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2_classifier")


def build_classifier(
    backbone: str,
    image_size: int,
    weights: str | None = None,
    filters: Sequence[int] = (16, 32, 64),
    dropout: float = 0.25,
    alpha: float = 1.0,
) -> keras.Model:
    """Builds the named backbone (one of :data:`BACKBONES`)."""
    if backbone == "small-cnn":
        if weights is not None:
            raise ConfigError("--weights applies to --backbone mobilenetv2 only")
        return small_cnn(image_size, filters, dropout)
    if backbone == "mobilenetv2":
        return mobilenetv2(image_size, weights, alpha, dropout)
    raise ConfigError(f"backbone {backbone!r} is not one of {BACKBONES}")


def has_backbone(model: keras.Model) -> bool:
    """True if the model has a separately freezable pretrained base."""
    return any(layer.name == BASE_NAME for layer in model.layers)


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freezes or unfreezes the pretrained base of a mobilenetv2 classifier.

    A frozen base also runs its BatchNormalization layers in inference mode
    (Keras does this for non-trainable layers), so fine-tuning starts from the
    statistics the weights were trained with.
    """
    model.get_layer(BASE_NAME).trainable = trainable


def backbone_trainable(model: keras.Model) -> bool:
    """Whether the model's pretrained backbone is being trained (not frozen)."""
    return model.get_layer(BASE_NAME).trainable
