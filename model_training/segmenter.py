"""Train the U-Net building segmenter and export it to the segmenter contract.

:func:`train_segmenter` is the whole job:

1. read and label the tiles, hold out validation blocks stratified by
   building density, fit the per-band scaling on the training area and cut
   the validation patches (:func:`prepare_data`, over
   :mod:`model_training.segmentation_data`); every input problem is reported
   here, before any training;
2. build the U-Net (:mod:`model_training.unet`), or load the last checkpoint
   when resuming, with the chosen loss (:mod:`model_training.losses`) and
   learning-rate schedule over the run's steps (:mod:`model_training.schedules`);
3. train for ``steps`` gradient steps on freshly sampled, augmented patches
   (:class:`~model_training.segmentation_data.PatchSampler`), validating
   every ``eval_every`` steps with checkpoints and early stopping
   (:mod:`model_training.fitting`), monitoring the validation building IoU;
4. restore the best checkpoint, export the SavedModel with its
   ``assets/segmenter.json`` (window size, bands, scaling, halo), a ``.keras``
   copy, measure the exported model on the validation patches, and write the
   model card (with the ``splits`` it trained and validated on) and curves.

:func:`find_learning_rate` runs the learning-rate finder on the same data.
The command ``footprints train segmenter`` is a thin layer over these.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import keras
import numpy as np

from footprints import contracts
from model_training import cards, configs, evaluation, export, fitting, losses, schedules, unet
from model_training import segmentation_data as sd
from model_training.configs import SegmenterConfig
from model_training.onnx_export import export_beside

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SegmentationData:
    """The tiles, their split and what describes them, ready for training."""

    tiles: list[sd.Tile]
    split: sd.Split
    val: sd.Patches
    assets: contracts.SegmenterAssets
    paths: tuple[str, ...]
    building_fraction: float


def prepare_data(config: SegmenterConfig) -> SegmentationData:
    """Reads, labels, splits and scales the training data; cuts the validation patches.

    Raises:
        InputError: for unusable tiles or labels, or no building to train on.
        ConfigError: for tiles too small to split.
    """
    tiles, info = sd.load_tiles(config.images, config.footprints, config.masks, config.bands)
    split = sd.split_blocks(
        tiles,
        config.patch_size,
        config.val_fraction,
        config.seed,
        config.val_block or config.patch_size,
    )
    offset, scale = sd.fit_scaling(tiles, info, list(split.train_areas), config.scaling)
    assets = contracts.SegmenterAssets(
        window_size=config.window,
        bands=info.bands,
        raw_dtype=info.dtype,
        offset=offset,
        scale=scale,
        band_names=info.band_names,
        receptive_halo=config.halo,
    )
    val = sd.block_patches(tiles, assets, split.blocks, config.patch_size)
    train = split.counts["train"]
    fraction = train["building_pixels"] / max(1, train["valid_pixels"])
    log.info(
        "validation: %d blocks (%d buildings); training: %d buildings, %.1f%% building pixels",
        len(split.blocks),
        split.counts["validation"]["buildings"],
        train["buildings"],
        100 * fraction,
    )
    return SegmentationData(tiles, split, val, assets, tuple(t.path for t in tiles), fraction)


def sampler_for(config: SegmenterConfig, prepared: SegmentationData) -> sd.PatchSampler:
    """The training patch sampler the config asks for."""
    if not config.augment:
        augmentation = sd.Augmentation.off()
    elif config.sensor_augment:
        augmentation = sd.Augmentation.sensor()
    else:
        augmentation = sd.Augmentation()
    return sd.PatchSampler(
        prepared.tiles,
        prepared.assets,
        prepared.split.train_areas,
        config.patch_size,
        augmentation,
        config.building_share,
    )


def build_compiled(
    config: SegmenterConfig, bands: int, learning_rate: float | None = None
) -> keras.Model:
    """A fresh U-Net compiled with the configured loss, schedule and metrics.

    ``learning_rate`` overrides the schedule with a constant (lr-find).
    """
    if config.encoder == "none":
        model = unet.build_unet(bands, config.unet)
    else:
        from model_training import encoders

        model = encoders.build_encoder_unet(
            bands, config.encoder, config.encoder_weights, config.filters
        )
    if learning_rate is not None:
        rate = learning_rate
    elif config.schedule == "one-cycle":
        rate = schedules.OneCycle(config.learning_rate, config.total_steps)
    else:
        rate = config.learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        jit_compile=config.xla,
        loss=losses.SegmentationLoss(config.loss),
        metrics=[losses.BuildingIoU(config.threshold or 0.5)],
    )
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
    initial_epoch = state["epoch"] + 1 if state is not None else 0
    sampler = sampler_for(config, prepared)
    train_ds = sampler.dataset(
        config.total_steps,
        config.batch_size,
        config.seed,
        skip_steps=initial_epoch * config.eval_every,
    )
    val_ds = sd.validation_dataset(prepared.val, config.batch_size)
    if state is not None:
        model = keras.models.load_model(run.last)
    else:
        model = build_compiled(config, prepared.assets.band_count)
    options = fitting.FitOptions(
        steps_per_epoch=config.eval_every,
        monitor="val_building_iou",
        mode="max",
        patience=config.patience_rounds,
        reduce_lr=config.schedule == "plateau",
        tensorboard=config.tensorboard,
        verbose=config.verbose,
        start_from_epoch=config.stop_from_round,
    )
    fitting.fit(model, train_ds, val_ds, run, options, initial_epoch, config.rounds)
    fitting.restore_best(model, run)

    threshold = config.threshold
    tried: dict[str, float] = {}
    probs = model.predict(prepared.val.images.astype(np.float32), config.batch_size, 0)
    if threshold is None:
        measured = prepared.val.weights[..., 0] > 0
        threshold, tried = evaluation.choose_mask_threshold(
            prepared.val.masks[..., 0][measured], probs[..., 0][measured]
        )
    by_block = block_ious(prepared, probs[..., 0], threshold)
    assets = dataclasses.replace(prepared.assets, mask_threshold=threshold)
    export.export_segmenter(model, run.model_dir, assets, config.multiple)
    model.save(run.keras_copy)
    metrics = evaluate_exported(run.model_dir, prepared.val, threshold, config.batch_size)
    splits = prepared.split.counts
    reasons = evaluation.segmenter_weak_reasons(metrics)
    if config.footprints:
        label_files = [config.footprints]
    else:
        assert config.masks is not None  # SegmenterConfig: --footprints or --masks
        label_files = list(sd.expand_globs(config.masks, "mask tiles", "area/masks/*.tif"))
    card = cards.base_card("building-segmenter", dataclasses.asdict(config))
    card.update(
        {
            "architecture": _architecture(config, model),
            "input": {
                "window_size": prepared.assets.window_size,
                "bands": list(prepared.assets.bands),
                "band_names": list(prepared.assets.band_names),
                "raw_dtype": prepared.assets.raw_dtype,
                "scaling": {
                    "offset": list(prepared.assets.offset),
                    "scale": list(prepared.assets.scale),
                },
                "receptive_halo": prepared.assets.receptive_halo,
            },
            "mask_threshold": {
                "value": threshold,
                "chosen_on": "validation blocks" if tried else "--threshold",
                "validation_iou_by_threshold": tried,
            },
            "class_mapping": {"0": "background", "1": "building"},
            "output": "mask: probability that the pixel is part of a building",
            "training_data": {
                "images": cards.fingerprint(prepared.paths),
                "labels": cards.fingerprint(label_files),
                "steps": config.total_steps,
                "batch_size": config.batch_size,
                "sampled_patches": config.total_steps * config.batch_size,
                "candidate_windows": len(sampler.windows),
                "building_share": config.building_share,
                "augment": dataclasses.asdict(sampler.augmentation),
                "val_patches": len(prepared.val),
                "building_fraction": prepared.building_fraction,
                "split": (
                    f"{len(prepared.split.blocks)} validation blocks of "
                    f"{prepared.split.blocks[0].size} px, {config.val_fraction:.0%} of the "
                    "mostly valid blocks, stratified by building density"
                ),
                "val_blocks": [dataclasses.asdict(b) for b in prepared.split.blocks],
            },
            "quality": {
                "weak": bool(reasons),
                "reasons": reasons,
                "iou": metrics.get("iou"),
                "min_iou": evaluation.MIN_SEGMENTER_IOU,
                "validation_blocks": by_block,
            },
            "splits": {
                side: {
                    "buildings": c["buildings"],
                    "pixels": c["valid_pixels"],
                    "building_pixels": c["building_pixels"],
                    **(
                        {"patches": len(prepared.val)}
                        if side == "validation"
                        else {"sampled_patches": config.total_steps * config.batch_size}
                    ),
                }
                for side, c in splits.items()
            },
        }
    )
    card["onnx"] = export_beside(run.model_dir)  # for --runtime onnxruntime
    return fitting.finish(
        run,
        card,
        options.monitor,
        {**metrics, "patches": len(prepared.val)},
        f"segmenter (U-Net depth {config.depth})"
        if config.encoder == "none"
        else f"segmenter ({config.encoder} U-Net)",
    )


def block_ious(prepared: SegmentationData, probs: np.ndarray, threshold: float) -> dict:
    """Building IoU of each validation block holding buildings, and their spread.

    The validation patches are cut block by block, in order, the same number
    from each; a block without building pixels has no IoU and is left out.
    The spread says how much the single validation figure depends on where
    the blocks fell: on a small area it is large.
    """
    blocks = prepared.split.blocks
    per = len(prepared.val) // max(1, len(blocks))
    ious = []
    for index in range(len(blocks)):
        cut = slice(index * per, (index + 1) * per)
        measured = prepared.val.weights[cut, ..., 0] > 0
        truth = prepared.val.masks[cut, ..., 0][measured]
        if truth.any():
            ious.append(evaluation.mask_metrics(truth, probs[cut][measured], threshold)["iou"])
    summary = {"ious": [round(v, 4) for v in ious], "with_buildings": len(ious)}
    if ious:
        summary.update(
            mean=round(float(np.mean(ious)), 4),
            sd=round(float(np.std(ious, ddof=1)), 4) if len(ious) > 1 else None,
            min=round(min(ious), 4),
            max=round(max(ious), 4),
        )
    return summary


def _architecture(config: SegmenterConfig, model: keras.Model) -> dict:
    """The model card's ``architecture``: the U-Net's shape, or the encoder and its weights."""
    if config.encoder == "none":
        return {
            "encoder": "none",
            **dataclasses.asdict(config.unet),
            "receptive_field": configs.receptive_field(config.unet),
            "parameters": model.count_params(),
        }
    from model_training import encoders

    weights = config.encoder_weights
    return {
        "encoder": config.encoder,
        "encoder_weights": (
            {"file": os.path.basename(weights), "sha256": cards.file_sha256(weights)}
            if weights
            else None
        ),
        "band_mapping": encoders.band_mapping(model.input_shape[-1]).tolist(),
        "decoder_filters": config.filters,
        "parameters": model.count_params(),
    }


def evaluate_exported(
    model_dir: str, patches: sd.Patches, threshold: float = 0.5, batch_size: int = 16
) -> dict[str, float]:
    """Building IoU, precision and recall of the exported model on ``patches``."""
    serve = export.load_serving(model_dir)
    probs = [
        serve(images=patches.images[i : i + batch_size])[contracts.SEGMENTER_OUTPUT].numpy()
        for i in range(0, len(patches), batch_size)
    ]
    measured = patches.weights[..., 0] > 0  # nodata pixels are not scored
    return evaluation.mask_metrics(
        patches.masks[..., 0][measured], np.concatenate(probs)[measured], threshold
    )


def find_learning_rate(
    config: SegmenterConfig, min_lr: float = 1e-5, max_lr: float = 1.0, steps: int = 100
) -> schedules.LRFindResult:
    """Runs the LR finder on the segmenter's data and model.

    Writes ``<output>/lr_find.png`` and ``<output>/lr_find.json``.
    """
    prepared = prepare_data(config)
    fitting.seed_everything(config.seed)
    train_ds = sampler_for(config, prepared).dataset(steps, config.batch_size, config.seed)
    model = build_compiled(config, prepared.assets.band_count, learning_rate=min_lr)
    result = schedules.lr_find(model, train_ds, min_lr, max_lr, steps)
    os.makedirs(config.output, exist_ok=True)
    schedules.plot_lr_find(
        result,
        os.path.join(config.output, "lr_find.png"),
        f"U-Net depth {config.depth}, loss {config.loss}",
    )
    with open(os.path.join(config.output, "lr_find.json"), "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=1)
    return result
