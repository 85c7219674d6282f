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
   model*, and write the model card and the training curves.

The command ``footprints train classifier`` is a thin layer over it.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from footprints import contracts
from model_training import cards, classifier_models, data, evaluation, export, fitting
from model_training.configs import ClassifierConfig

log = logging.getLogger(__name__)


def compile_classifier(model: keras.Model, learning_rate: float, xla: bool = False) -> None:
    """Compiles with Adam, binary cross-entropy and the validation metrics."""
    model.compile(
        jit_compile=xla,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                 keras.metrics.Precision(name="precision"),
                 keras.metrics.Recall(name="recall"),
                 keras.metrics.AUC(name="auc")])


def _splits(config: ClassifierConfig) -> tuple[data.ChipSplit, data.ChipSplit]:
    train_files = data.list_shards(config.train)
    if config.val is None:
        return (data.ChipSplit(train_files, "train", config.val_fraction),
                data.ChipSplit(train_files, "val", config.val_fraction))
    return data.ChipSplit(train_files), data.ChipSplit(data.list_shards(config.val))


def _phases(config: ClassifierConfig, model: keras.Model) -> list[tuple[int, int, bool | None,
                                                                          float]]:
    """(start, end, backbone trainable or None, learning rate) per training phase."""
    if config.freeze_epochs and classifier_models.has_backbone(model):
        fine = config.fine_tune_learning_rate or config.learning_rate / 10.0
        return [(0, config.freeze_epochs, False, config.learning_rate),
                (config.freeze_epochs, config.epochs, True, fine)]
    return [(0, config.epochs, None, config.learning_rate)]


def train_classifier(config: ClassifierConfig,
                     model: keras.Model | None = None) -> fitting.TrainResult:
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
    log.info("training examples %s, validation examples %s",
             train_counts.named(), val_counts.named())

    run = fitting.RunDir(config.output)
    state = run.start(config.resume, config.overwrite)
    keras.utils.set_random_seed(config.seed)
    options = data.InputOptions(image_size=config.image_size, batch_size=config.batch_size,
                                augment=config.augment, cache=config.cache,
                                shuffle_buffer=config.shuffle_buffer, seed=config.seed)
    train_ds = data.classifier_dataset(train_split, options, training=True)
    val_ds = data.classifier_dataset(val_split, options, training=False,
                                     count=val_counts.usable)

    backbone = config.backbone if model is None else f"custom ({model.name})"
    if state is not None:
        model = keras.models.load_model(run.last)
    elif model is None:
        model = classifier_models.build_classifier(
            config.backbone, config.image_size, config.weights, config.filters,
            config.dropout, config.alpha)
    fit_options = fitting.FitOptions(
        steps_per_epoch=max(1, math.ceil(train_counts.usable / config.batch_size)),
        monitor=config.monitor, mode="min" if config.monitor == "val_loss" else "max",
        patience=config.patience, tensorboard=config.tensorboard, verbose=config.verbose,
        class_weight=train_counts.class_weights() if config.class_weight == "balanced"
        else None)

    _fit_phases(model, config, run, state, train_ds, val_ds, fit_options)
    fitting.restore_best(model, run)

    export.export_classifier(model, run.model_dir, config.image_size)
    model.save(run.keras_copy)
    metrics = evaluate_exported(run.model_dir, val_split, config.batch_size)
    card = cards.base_card("footprint-classifier", dataclasses.asdict(config))
    card.update({
        "backbone": backbone,
        "weights": config.weights or "random initialization",
        "input": {"image_size": config.image_size, "channels": 3, "value_range": [0, 255],
                  "encodings": ["PNG", "JPEG"],
                  "serving": "serialized chip records; decode, resize and normalize in graph"},
        "class_mapping": {str(k): v for k, v in data.CLASS_NAMES.items()},
        "output": "score: probability that the footprint is residential (class 1)",
        "training_data": {
            "train": {"fingerprint": cards.fingerprint(train_split.files),
                      "subset": train_split.subset, "counts": train_counts.named(),
                      "unlabelled": train_counts.unlabelled,
                      "undecodable": train_counts.undecodable},
            "validation": {"fingerprint": cards.fingerprint(val_split.files),
                           "subset": val_split.subset, "counts": val_counts.named()},
            "val_fraction": config.val_fraction if config.val is None else None,
        },
        "class_weight": fit_options.class_weight,
    })
    return fitting.finish(run, card, config.monitor, metrics, f"classifier ({backbone})")


def _fit_phases(model: keras.Model, config: ClassifierConfig, run: fitting.RunDir,
                state: dict | None, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset,
                options: fitting.FitOptions) -> None:
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


def evaluate_exported(model_dir: str, split: data.ChipSplit,
                      batch_size: int = 64) -> dict[str, object]:
    """Scores a split's labelled records with the exported model; see evaluation."""
    serve = export.load_serving(model_dir)
    labels, scores = [], []
    ds = split.parsed().map(
        lambda r: (r[data.SERIALIZED], r[contracts.LABEL_KEY])).batch(batch_size)
    for serialized, label in ds:
        keep = label.numpy() >= 0
        if not keep.any():
            continue
        out = serve(examples=tf.boolean_mask(serialized, keep))
        scores.append(out["score"].numpy())
        labels.append(label.numpy()[keep])
    return evaluation.binary_metrics(np.concatenate(labels), np.concatenate(scores))
