"""Train the footprint classifier and export it to the classifier contract.

:func:`train_classifier` is the whole job, in the order it runs:

1. list the training and validation shards and read each split once to count
   its classes (stopping with a clear error on empty shards or a missing
   class) and fingerprint the files;
2. build the tf.data pipelines (:mod:`model_training.data`);
3. build the backbone, or load the last checkpoint when resuming;
4. train, in two phases when a pretrained base is frozen first and then
   fine-tuned at a lower rate (:mod:`model_training.fitting`);
5. restore the best epoch's weights, export the SavedModel contract and a
   ``.keras`` copy, score the validation records *through the exported
   model*, fit Platt calibration on those scores and export again with it
   in the graph (so ``score`` is a calibrated probability);
6. judge the model (:func:`model_training.evaluation.weak_reasons`: AUC,
   one predicted class, no spread), and write the model card with its
   ``quality`` and ``splits``, the reliability diagram and the curves.

The run is repeatable: :func:`model_training.fitting.seed_everything` seeds
every generator and turns on op determinism, and the input pipeline keeps a
fixed order, so the same chips and seed give the same weights and scores.

The command ``footprints train classifier`` is a thin layer over it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from footprints import contracts
from model_training import cards, classifier_models, data, evaluation, export, fitting
from model_training.configs import ClassifierConfig
from model_training.onnx_export import export_beside

log = logging.getLogger(__name__)


def compile_classifier(model: keras.Model, learning_rate: float, xla: bool = False) -> None:
    """Compiles with Adam, binary cross-entropy and the validation metrics."""
    model.compile(
        jit_compile=xla,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
        ],
    )


def _splits(config: ClassifierConfig) -> tuple[data.ChipSplit, data.ChipSplit]:
    train_files = data.list_shards(config.train)
    if config.val is None:
        return (
            data.ChipSplit(train_files, "train", config.val_fraction),
            data.ChipSplit(train_files, "val", config.val_fraction),
        )
    return data.ChipSplit(train_files), data.ChipSplit(data.list_shards(config.val))


def _phases(
    config: ClassifierConfig, model: keras.Model
) -> list[tuple[int, int, bool | None, float]]:
    """(start, end, backbone trainable or None, learning rate) per training phase."""
    if config.freeze_epochs and classifier_models.has_backbone(model):
        fine = config.fine_tune_learning_rate or config.learning_rate / 10.0
        return [
            (0, config.freeze_epochs, False, config.learning_rate),
            (config.freeze_epochs, config.epochs, True, fine),
        ]
    return [(0, config.epochs, None, config.learning_rate)]


def train_classifier(
    config: ClassifierConfig, model: keras.Model | None = None
) -> fitting.TrainResult:
    """Trains, exports and documents a classifier; see the module docstring.

    Args:
        config: The run's settings.
        model: Optional Keras model to train instead of ``config.backbone``:
            it must map float32 ``[N, S, S, 3]`` images (values 0..255, S =
            ``config.image_size``) to probabilities ``[N, 1]``.

    Returns:
        The exported paths and validation metrics.

    Raises:
        InputError: for unusable shards (empty, unreadable, a missing class).
        ConfigError: for invalid settings or a previous run in ``output``.
    """
    train_split, val_split = _splits(config)
    train_counts = data.count_labels(train_split)
    train_counts.check("training", train_split.files)
    val_counts = data.count_labels(val_split)
    val_counts.check("validation", val_split.files)
    log.info(
        "training examples %s, validation examples %s", train_counts.named(), val_counts.named()
    )

    run = fitting.RunDir(config.output)
    state = run.start(config.resume, config.overwrite)
    fitting.seed_everything(config.seed)
    options = data.InputOptions(
        image_size=config.image_size,
        batch_size=config.batch_size,
        augment=config.augment,
        cache=config.cache,
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
    )
    train_ds = data.classifier_dataset(train_split, options, training=True)
    val_ds = data.classifier_dataset(val_split, options, training=False, count=val_counts.usable)

    backbone = config.backbone if model is None else f"custom ({model.name})"
    if state is not None:
        model = keras.models.load_model(run.last)
    elif model is None:
        model = classifier_models.build_classifier(
            config.backbone,
            config.image_size,
            config.weights,
            config.filters,
            config.dropout,
            config.alpha,
        )
    fit_options = fitting.FitOptions(
        steps_per_epoch=max(1, math.ceil(train_counts.usable / config.batch_size)),
        monitor=config.monitor,
        mode="min" if config.monitor == "val_loss" else "max",
        patience=config.patience,
        tensorboard=config.tensorboard,
        verbose=config.verbose,
        class_weight=train_counts.class_weights() if config.class_weight == "balanced" else None,
    )

    _fit_phases(model, config, run, state, train_ds, val_ds, fit_options)
    fitting.restore_best(model, run)

    export.export_classifier(model, run.model_dir, config.image_size)
    model.save(run.keras_copy)
    labels, raw = score_exported(run.model_dir, val_split, config.batch_size)
    a, b = evaluation.fit_platt(labels, raw)
    export.export_classifier(model, run.model_dir, config.image_size, calibration=(a, b))
    labels, scores = score_exported(run.model_dir, val_split, config.batch_size)
    metrics = evaluation.binary_metrics(labels, scores)
    quality = classifier_quality(labels, raw, scores, (a, b))
    metrics["ece"] = quality["ece"]
    cards.plot_reliability(
        quality["reliability"],
        quality["reliability_uncalibrated"],
        cards.reliability_path(run.model_dir),
        f"validation split, {len(labels)} footprints",
    )
    card = cards.base_card("footprint-classifier", dataclasses.asdict(config))
    card.update(
        {
            "backbone": backbone,
            "weights": config.weights or "random initialization",
            "input": {
                "image_size": config.image_size,
                "channels": 3,
                "value_range": [0, 255],
                "encodings": ["PNG", "JPEG"],
                "serving": "serialized chip records; decode, resize and normalize in graph",
            },
            "class_mapping": {str(k): v for k, v in data.CLASS_NAMES.items()},
            "output": "score: probability that the footprint is residential (class 1)",
            "training_data": {
                "train": {
                    "fingerprint": cards.fingerprint(train_split.files),
                    "subset": train_split.subset,
                    "counts": train_counts.named(),
                    "unlabelled": train_counts.unlabelled,
                    "undecodable": train_counts.undecodable,
                },
                "validation": {
                    "fingerprint": cards.fingerprint(val_split.files),
                    "subset": val_split.subset,
                    "counts": val_counts.named(),
                },
                "val_fraction": config.val_fraction if config.val is None else None,
            },
            "class_weight": fit_options.class_weight,
            "calibration": {
                "method": "platt",
                "a": a,
                "b": b,
                "fitted_on": "validation",
                "formula": "score = sigmoid(a * logit(p) + b), p the network's "
                "output; in the exported graph",
            },
            "quality": quality,
            "splits": {
                "train": _split_counts(train_counts),
                "validation": _split_counts(val_counts),
            },
        }
    )
    card["onnx"] = export_beside(run.model_dir)  # for --runtime onnxruntime
    return fitting.finish(run, card, config.monitor, metrics, f"classifier ({backbone})")


def _fit_phases(
    model: keras.Model,
    config: ClassifierConfig,
    run: fitting.RunDir,
    state: dict | None,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    options: fitting.FitOptions,
) -> None:
    """Trains each phase (frozen base, then fine-tuning) still ahead of the run."""
    initial_epoch = state["epoch"] + 1 if state else 0
    resumed = state is not None
    for start, end, trainable, rate in _phases(config, model):
        if end <= initial_epoch:
            continue
        # A resumed model comes back compiled with its optimizer state: keep
        # it unless this phase changes what is trainable.
        needs_compile = not resumed
        if trainable is not None and classifier_models.backbone_trainable(model) != trainable:
            classifier_models.set_backbone_trainable(model, trainable)
            needs_compile = True
        if needs_compile:
            compile_classifier(model, rate, config.xla)
        fitting.fit(model, train_ds, val_ds, run, options, max(start, initial_epoch), end)
        resumed = False


def _split_counts(counts: data.LabelCounts) -> dict[str, object]:
    """The model card's per-split counts: chips per class (each chip one building)."""
    return {
        "buildings": counts.usable,
        "chips": counts.usable,
        "per_class": counts.named(),
        "unlabelled": counts.unlabelled,
        "undecodable": counts.undecodable,
    }


def classifier_quality(
    labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, calibration: tuple[float, float]
) -> dict[str, Any]:
    """The model card's ``quality``: the gate's verdict and the calibration measures.

    Args:
        labels: Validation labels.
        raw: The exported model's scores before calibration.
        calibrated: Its scores after (what ``score`` serves).
        calibration: Platt ``(a, b)``.

    Returns:
        ``weak`` and ``reasons`` (:func:`~model_training.evaluation.weak_reasons`),
        ``auc``, ``ece`` and ``ece_uncalibrated`` (15 bins), ``temperature``
        (``1 / a``), the score ``spread`` and the ``reliability`` bins before
        and after calibration.
    """
    reasons = evaluation.weak_reasons(labels, raw)
    auc = evaluation.binary_auc(labels[~np.isnan(calibrated)], calibrated[~np.isnan(calibrated)])
    return {
        "weak": bool(reasons),
        "reasons": reasons,
        "auc": None if math.isnan(auc) else auc,
        "ece": evaluation.expected_calibration_error(labels, calibrated),
        "ece_uncalibrated": evaluation.expected_calibration_error(labels, raw),
        "ece_bins": evaluation.ECE_BINS,
        "temperature": 1.0 / calibration[0],
        "spread": evaluation.score_spread(raw),
        "reliability": evaluation.reliability(labels, calibrated),
        "reliability_uncalibrated": evaluation.reliability(labels, raw),
    }


def score_exported(
    model_dir: str, split: data.ChipSplit, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, scores)`` of a split's labelled records, scored by the exported model."""
    serve = export.load_serving(model_dir)
    labels, scores = [], []
    ds = (
        split.parsed().map(lambda r: (r[data.SERIALIZED], r[contracts.LABEL_KEY])).batch(batch_size)
    )
    for serialized, label in ds:
        keep = label.numpy() >= 0
        if not keep.any():
            continue
        out = serve(examples=tf.boolean_mask(serialized, keep))
        scores.append(out["score"].numpy())
        labels.append(label.numpy()[keep])
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(labels), np.concatenate(scores)
