"""Segmentation losses and the building-IoU metric.

Buildings are a minority of pixels, so plain cross-entropy is easily
satisfied by predicting background. The losses here can be combined:

* ``bce``: binary cross-entropy;
* ``focal``: focal loss (Lin et al. 2017), cross-entropy scaled by
  ``(1 - p_t) ** gamma`` so easy background pixels count less;
* ``jaccard``: soft IoU loss ``1 - (|y p| + s) / (|y| + |p| - |y p| + s)``
  over the batch, which optimizes the overlap the metric measures;
* ``dice``: soft Dice loss, a close relative of Jaccard.

A loss spec is terms joined by ``+``, each optionally weighted:
``bce+jaccard``, ``focal``, ``0.5*bce+jaccard`` (:func:`parse_loss`).

**Pixel weights.** The target may carry a second channel, a 0/1 weight per
pixel (``[B, H, W, 2]``: mask, weight): a pixel of weight 0 (nodata, or
outside the training area) adds nothing to any term nor to the metric, so
the model is never taught what lies under a nodata collar. A one-channel
target weighs every pixel 1.

:class:`BuildingIoU` is the metric the model card reports: intersection over
union of *thresholded* predictions and the building class, accumulated over
all pixels of an epoch (not Keras' MeanIoU, which averages over both
classes, nor a soft IoU of probabilities).
"""

from __future__ import annotations

import keras
from keras import ops

from model_training.configs import TERMS, parse_loss

__all__ = [
    "TERMS",
    "BuildingIoU",
    "SegmentationLoss",
    "bce",
    "dice",
    "focal",
    "jaccard",
    "parse_loss",
]
_EPS = 1e-7


def split_target(y_true, y_pred):
    """``(mask, weight)`` from a target with an optional weight channel."""
    y_true = ops.cast(y_true, y_pred.dtype)
    if y_true.shape[-1] == 2:
        return y_true[..., :1], y_true[..., 1:]
    return y_true, ops.ones_like(y_true)


def _per_image(x, weight):
    flat = (ops.shape(x)[0], -1)
    total = ops.sum(ops.reshape(x * weight, flat), axis=-1)
    return total / ops.maximum(ops.sum(ops.reshape(weight, flat), axis=-1), 1.0)


def bce(y_true, y_pred, weight=1.0):
    """Per-image weighted mean binary cross-entropy."""
    p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
    return _per_image(
        -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)), weight * ops.ones_like(p)
    )


def focal(y_true, y_pred, gamma: float = 2.0, alpha: float = 0.25, weight=1.0):
    """Per-image weighted mean focal loss; ``alpha`` weighs the building class."""
    p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
    p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
    alpha_t = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
    return _per_image(
        -alpha_t * ops.power(1.0 - p_t, gamma) * ops.log(p_t), weight * ops.ones_like(p)
    )


def _overlaps(y_true, y_pred, weight=1.0):
    # Sums over the whole batch, not per image: most patches of a sparse scene
    # hold no building, and a per-image soft IoU of an empty patch is
    # 1 - 1 / (1 + sum(p)), which punishes a faint haze of probability as
    # hard as a missed house and drowns the gradient of the real buildings.
    t, p = y_true * weight, y_pred * weight
    return ops.sum(t * y_pred), ops.sum(t), ops.sum(p)


def _per_sample(value, y_true):
    # Keras losses return one value per example; the batch value for each.
    return ops.ones((ops.shape(y_true)[0],), dtype=value.dtype) * value


def jaccard(y_true, y_pred, smooth: float = 1.0, weight=1.0):
    """Soft Jaccard (IoU) loss over the batch, repeated per example."""
    inter, t, p = _overlaps(y_true, y_pred, weight)
    return _per_sample(1.0 - (inter + smooth) / (t + p - inter + smooth), y_true)


def dice(y_true, y_pred, smooth: float = 1.0, weight=1.0):
    """Soft Dice loss over the batch, repeated per example."""
    inter, t, p = _overlaps(y_true, y_pred, weight)
    return _per_sample(1.0 - (2.0 * inter + smooth) / (t + p + smooth), y_true)


@keras.saving.register_keras_serializable(package="footprints")
class SegmentationLoss(keras.losses.Loss):
    """A weighted sum of the terms of a loss spec (see :func:`parse_loss`)."""

    def __init__(
        self,
        spec: str = "bce+jaccard",
        gamma: float = 2.0,
        alpha: float = 0.25,
        name: str = "segmentation_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.spec = spec
        self.gamma = gamma
        self.alpha = alpha
        self._terms = parse_loss(spec)

    def call(self, y_true, y_pred):
        """The weighted sum of the spec's loss terms, each with the pixel weights."""
        y_true, pixel_weight = split_target(y_true, y_pred)
        total = 0.0
        for weight, name in self._terms:
            if name == "bce":
                value = bce(y_true, y_pred, pixel_weight)
            elif name == "focal":
                value = focal(y_true, y_pred, self.gamma, self.alpha, pixel_weight)
            elif name == "jaccard":
                value = jaccard(y_true, y_pred, weight=pixel_weight)
            else:
                value = dice(y_true, y_pred, weight=pixel_weight)
            total = total + weight * value
        return total

    def get_config(self):
        """The spec, gamma and alpha, so a saved model reloads with this loss."""
        return {**super().get_config(), "spec": self.spec, "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="footprints")
class BuildingIoU(keras.metrics.Metric):
    """IoU of the building class from thresholded predictions, over all pixels seen.

    Pixels of weight 0 are left out.

    Example:
        truth [1, 1, 0, 0], probabilities [0.9, 0.2, 0.7, 0.1], threshold 0.5
        -> intersection 1, union 3, IoU 1/3.
    """

    def __init__(self, threshold: float = 0.5, name: str = "building_iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.union = self.add_variable(shape=(), initializer="zeros", name="union")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch's building intersection and union to the totals."""
        y_true, weight = split_target(y_true, ops.cast(y_pred, "float32"))
        truth = ops.cast(y_true > 0.5, "float32") * weight
        pred = ops.cast(y_pred > self.threshold, "float32") * weight
        inter = ops.sum(truth * pred)
        self.intersection.assign_add(inter)
        self.union.assign_add(ops.sum(truth) + ops.sum(pred) - inter)

    def result(self):
        """IoU over all pixels seen so far (1.0 where no truth or prediction has buildings)."""
        # No building predicted or present anywhere counts as a perfect match.
        return ops.where(self.union > 0, self.intersection / ops.maximum(self.union, 1.0), 1.0)

    def reset_state(self):
        """Zeroes the totals for the next epoch."""
        self.intersection.assign(0.0)
        self.union.assign(0.0)

    def get_config(self):
        """The threshold, so a saved model reloads with this metric."""
        return {**super().get_config(), "threshold": self.threshold}
