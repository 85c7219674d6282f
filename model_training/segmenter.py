"""Train the U-Net building segmenter and export it to the segmenter contract.

:func:`train_segmenter` is the whole job:

1. read and label the tiles, split each into a training part and a
   validation strip, fit the per-band scaling on the training parts and cut
   patches (:func:`prepare_data`, over :mod:`model_training.segmentation_data`);
   every input problem is reported here, before any training;
2. build the U-Net (:mod:`model_training.unet`), or load the last checkpoint
   when resuming, with the chosen loss (:mod:`model_training.losses`) and
   learning-rate schedule (:mod:`model_training.schedules`);
3. train with checkpoints (:mod:`model_training.fitting`), monitoring the
   validation building IoU;
4. restore the best epoch, export the SavedModel with its
   ``assets/segmenter.json`` (window size, bands, scaling, halo), a ``.keras``
   copy, measure the exported model on the validation patches, and write the
   model card and curves.

:func:`find_learning_rate` runs the learning-rate finder on the same data.
The command ``footprints train segmenter`` is a thin layer over these.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

import keras
import numpy as np

from footprints import contracts
from footprints.errors import InputError
from model_training import cards, configs, evaluation, export, fitting, losses, schedules, unet
from model_training import segmentation_data as sd
from model_training.configs import SegmenterConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SegmentationData:
    """Patches and what describes them, ready for training."""

    train: sd.Patches
    val: sd.Patches
    assets: contracts.SegmenterAssets
    tiles: tuple[str, ...]
    building_fraction: float


def prepare_data(config: SegmenterConfig) -> SegmentationData:
    """Reads, labels, splits, scales and cuts the training data.

    Raises:
        InputError: for unusable tiles or labels, or no patches to train on.
    """
    tiles, info = sd.load_tiles(config.images, config.footprints, config.masks, config.bands)
    cuts = [sd.split_rows(t.image.shape[0], config.patch_size, config.val_fraction)
            for t in tiles]
    offset, scale = sd.fit_scaling(tiles, info, cuts, config.scaling)
    assets = contracts.SegmenterAssets(
        window_size=config.window, bands=info.bands, raw_dtype=info.dtype, offset=offset,
        scale=scale, band_names=info.band_names,
        receptive_halo=configs.receptive_halo(config.unet, config.window))
    stride = config.stride or config.patch_size
    train = sd.make_patches(tiles, assets, [(0, c) for c in cuts], config.patch_size, stride)
    # Validation patches do not overlap, so no pixel is counted twice.
    val = sd.make_patches(tiles, assets, [(c, t.image.shape[0]) for c, t in zip(
        cuts, tiles, strict=True)], config.patch_size, config.patch_size)
    for name, patches in (("training", train), ("validation", val)):
        if len(patches) == 0:
            raise InputError(
                f"no {name} patch has valid pixels ({patches.skipped} all-nodata patches "
                "skipped); check the tiles' nodata value or lower --patch-size")
    if not train.masks.any():
        raise InputError(
            "the training parts of the tiles hold no building pixel (all buildings fall in "
            "the validation strips); lower --val-fraction or add tiles with buildings")
    fraction = float(train.masks.mean())
    log.info("%d training and %d validation patches of %d px (%.1f%% building pixels)",
             len(train), len(val), config.patch_size, 100 * fraction)
    return SegmentationData(train, val, assets, tuple(t.path for t in tiles), fraction)


def build_compiled(config: SegmenterConfig, bands: int, steps_per_epoch: int,
                   learning_rate: float | None = None) -> keras.Model:
    """A fresh U-Net compiled with the configured loss, schedule and metrics.

    ``learning_rate`` overrides the schedule with a constant (lr-find).
    """
    model = unet.build_unet(bands, config.unet)
    if learning_rate is not None:
        rate = learning_rate
    elif config.schedule == "one-cycle":
        rate = schedules.OneCycle(config.learning_rate, config.epochs * steps_per_epoch)
    else:
        rate = config.learning_rate
    model.compile(optimizer=keras.optimizers.Adam(rate), jit_compile=config.xla,
                  loss=losses.SegmentationLoss(config.loss),
                  metrics=[losses.BuildingIoU(config.threshold),
                           keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def train_segmenter(config: SegmenterConfig) -> fitting.TrainResult:
    """Trains, exports and documents a segmenter; see the module docstring.

    Raises:
        InputError: for unusable imagery or labels.
        ConfigError: for invalid settings or a previous run in ``output``.
    """
    prepared = prepare_data(config)
    run = fitting.RunDir(config.output)
    state = run.start(config.resume, config.overwrite)
    fitting.seed_everything(config.seed)
    steps = max(1, math.ceil(len(prepared.train) / config.batch_size))
    train_ds = sd.segmentation_dataset(prepared.train, config.batch_size, True,
                                       config.augment, config.seed)
    val_ds = sd.segmentation_dataset(prepared.val, config.batch_size, False)
    if state is not None:
        model = keras.models.load_model(run.last)
        initial_epoch = state["epoch"] + 1
    else:
        model = build_compiled(config, prepared.assets.band_count, steps)
        initial_epoch = 0
    options = fitting.FitOptions(
        steps_per_epoch=steps, monitor="val_building_iou", mode="max",
        patience=config.patience_epochs, reduce_lr=config.schedule == "plateau",
        tensorboard=config.tensorboard, verbose=config.verbose)
    fitting.fit(model, train_ds, val_ds, run, options, initial_epoch, config.epochs)
    fitting.restore_best(model, run)

    export.export_segmenter(model, run.model_dir, prepared.assets, config.unet.multiple)
    model.save(run.keras_copy)
    metrics = evaluate_exported(run.model_dir, prepared.val, config.threshold,
                                config.batch_size)
    label_files = [config.footprints] if config.footprints else list(
        sd.expand_globs(config.masks, "mask tiles", "area/masks/*.tif"))
    card = cards.base_card("building-segmenter", dataclasses.asdict(config))
    card.update({
        "architecture": {**dataclasses.asdict(config.unet),
                         "receptive_field": configs.receptive_field(config.unet),
                         "parameters": model.count_params()},
        "input": {"window_size": prepared.assets.window_size,
                  "bands": list(prepared.assets.bands),
                  "band_names": list(prepared.assets.band_names),
                  "raw_dtype": prepared.assets.raw_dtype,
                  "scaling": {"offset": list(prepared.assets.offset),
                              "scale": list(prepared.assets.scale)},
                  "receptive_halo": prepared.assets.receptive_halo},
        "class_mapping": {"0": "background", "1": "building"},
        "output": "mask: probability that the pixel is part of a building",
        "training_data": {
            "images": cards.fingerprint(prepared.tiles),
            "labels": cards.fingerprint(label_files),
            "train_patches": len(prepared.train), "val_patches": len(prepared.val),
            "skipped_nodata_patches": prepared.train.skipped + prepared.val.skipped,
            "building_fraction": prepared.building_fraction,
            "split": f"bottom {config.val_fraction:.0%} of each tile (at least one patch)",
        },
    })
    return fitting.finish(run, card, options.monitor, {**metrics, "patches": len(prepared.val)},
                          f"segmenter (U-Net depth {config.depth})")


def evaluate_exported(model_dir: str, patches: sd.Patches, threshold: float = 0.5,
                      batch_size: int = 16) -> dict[str, float]:
    """Building IoU, precision and recall of the exported model on ``patches``."""
    serve = export.load_serving(model_dir)
    probs = [serve(images=patches.images[i:i + batch_size])[contracts.SEGMENTER_OUTPUT].numpy()
             for i in range(0, len(patches), batch_size)]
    return evaluation.mask_metrics(patches.masks[..., 0], np.concatenate(probs), threshold)


def find_learning_rate(config: SegmenterConfig, min_lr: float = 1e-5, max_lr: float = 1.0,
                       steps: int = 100) -> schedules.LRFindResult:
    """Runs the LR finder on the segmenter's data and model.

    Writes ``<output>/lr_find.png`` and ``<output>/lr_find.json``.
    """
    prepared = prepare_data(config)
    fitting.seed_everything(config.seed)
    train_ds = sd.segmentation_dataset(prepared.train, config.batch_size, True,
                                       config.augment, config.seed)
    model = build_compiled(config, prepared.assets.band_count, 1, learning_rate=min_lr)
    result = schedules.lr_find(model, train_ds, min_lr, max_lr, steps)
    os.makedirs(config.output, exist_ok=True)
    schedules.plot_lr_find(result, os.path.join(config.output, "lr_find.png"),
                           f"U-Net depth {config.depth}, loss {config.loss}")
    with open(os.path.join(config.output, "lr_find.json"), "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=1)
    return result
