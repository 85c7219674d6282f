"""Validated settings of the training runs, importable without TensorFlow.

Each run is described by one frozen dataclass that checks itself on
creation, so a bad flag fails before any data is read or any model built
(and ``footprints train --help`` can show the defaults without loading
TensorFlow):

* :class:`ClassifierConfig` for :func:`model_training.classifier.train_classifier`;
* :class:`SegmenterConfig` (with its :class:`UNetConfig`) for
  :func:`model_training.segmenter.train_segmenter` and the LR finder.

The small pure functions the validation needs live here too: the loss-spec
parser (:func:`parse_loss`) and the U-Net receptive-field arithmetic
(:func:`receptive_field`, :func:`receptive_halo`).
"""

from __future__ import annotations

import dataclasses
import math

from footprints.errors import ConfigError

BACKBONES = ("small-cnn", "mobilenetv2")
MONITORS = ("val_auc", "val_accuracy", "val_precision", "val_recall", "val_loss")
CACHE_HELP = "memory, none, or a file path prefix for an on-disk cache"
SCHEDULES = ("one-cycle", "plateau", "constant")
SCALINGS = ("auto", "identity", "percentile")

CENTRES = ("plain", "serial-dilated", "parallel-dilated")
#: Pretrained encoders of the segmenter (:mod:`model_training.encoders`); "none": the U-Net.
ENCODERS = ("none", "mobilenetv2", "resnet50", "efficientnetb0")
#: Inputs of an encoder U-Net must be multiples of this (five halvings).
ENCODER_MULTIPLE = 32
TERMS = ("bce", "focal", "jaccard", "dice")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The shape of a U-Net.

    Attributes:
        depth: Pooling levels; H and W must be multiples of ``2**depth``.
        filters: Filters at the first level, doubled at each level below.
        residual: Residual conv blocks (with a 1x1 projection shortcut).
        centre: One of :data:`CENTRES`.
        dilations: Dilation rates of the dilated centres.
        dropout: Spatial dropout in the centre.
    """

    depth: int = 3
    filters: int = 16
    residual: bool = False
    centre: str = "plain"
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dropout: float = 0.1

    def __post_init__(self):
        if not 1 <= self.depth <= 6:
            raise ConfigError(f"--depth {self.depth} must be between 1 and 6")
        if self.filters < 1:
            raise ConfigError(f"--filters {self.filters} must be positive")
        if self.centre not in CENTRES:
            raise ConfigError(f"--centre {self.centre!r} must be one of {CENTRES}")
        if not self.dilations or min(self.dilations) < 1:
            raise ConfigError(f"dilations {self.dilations!r} must be positive integers")

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth


def receptive_field(config: UNetConfig) -> int:
    """The theoretical receptive field, in input pixels, of one output pixel.

    Walks the deepest path (encoder, centre, decoder), adding ``(k - 1) *
    dilation * jump`` per k x k convolution, where ``jump`` is the input-pixel
    spacing at that level. Residual shortcuts do not widen it; a parallel
    centre widens it by its largest dilation.

    Example:
        depth 3, plain centre: 1 + 3 levels down (4 + 1, 8 + 2, 16 + 4) + centre 32
        + 3 levels up (16, 8, 4) = 96.
    """
    rf, jump = 1, 1
    for _ in range(config.depth):
        rf += 2 * 2 * jump  # two 3x3 convs
        rf += jump  # 2x2 pooling
        jump *= 2
    if config.centre == "plain":
        rf += 2 * 2 * jump
    elif config.centre == "serial-dilated":
        rf += sum(2 * d * jump for d in config.dilations)
    else:
        rf += 2 * max(config.dilations) * jump
    for _ in range(config.depth):
        jump //= 2
        rf += 2 * 2 * jump  # the 2x2 stride-2 transposed conv adds no context
    return rf


def receptive_halo(config: UNetConfig, window_size: int) -> int:
    """Pixels of context to read on each side of a window for seamless stitching.

    Half the theoretical receptive field, rounded up to a multiple of 8 and
    capped at a quarter of the window: the effective receptive field of a
    trained network is much narrower than the theoretical one (most of the
    weight is near the centre), so a larger halo mostly costs compute.
    """
    half = math.ceil(receptive_field(config) / 2 / 8) * 8
    return int(min(half, window_size // 4))


def parse_loss(spec: str) -> tuple[tuple[float, str], ...]:
    """Parses a loss spec into ``(weight, term)`` pairs.

    Example:
        "0.5*bce+jaccard" -> ((0.5, "bce"), (1.0, "jaccard"))

    Raises:
        ConfigError: on an unknown term or a bad weight.
    """
    terms = []
    for part in spec.replace(" ", "").lower().split("+"):
        weight, _, name = part.rpartition("*")
        if name not in TERMS:
            raise ConfigError(
                f"loss term {name!r} in {spec!r} is not one of {TERMS}; combine terms with "
                "'+', e.g. bce+jaccard or 0.5*focal+jaccard"
            )
        try:
            value = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ConfigError(f"weight {weight!r} in loss {spec!r} is not a number") from exc
        if value <= 0:
            raise ConfigError(f"weight {value} in loss {spec!r} must be positive")
        terms.append((value, name))
    return tuple(terms)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How a training run runs, whatever it trains (keyword-only).

    Attributes:
        resume: Continue from the last checkpoint in ``output``.
        overwrite: Start again even if ``output`` has a previous run.
        tensorboard: Write TensorBoard logs (when tensorboard is installed).
        seed: Random seed for weights, shuffling and augmentation.
        xla: Compile the training step with XLA. Off by default: on CPUs
            the compilation takes longer than these small models train.
        verbose: Keras verbosity (0 silent, 2 a line per epoch).
    """

    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = True
    seed: int = 0
    xla: bool = False
    verbose: int = 2


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(RunSettings):
    """Everything a classifier training run needs; validated on creation.

    Attributes:
        train: Glob(s), comma-separated, of training chip shards.
        output: Folder for the model, checkpoints, logs and curves.
        val: Glob(s) of validation shards; if None, ``val_fraction`` of the
            training footprints (by a stable hash of their ids) is held out.
        val_fraction: Held-out fraction when ``val`` is None.
        backbone: ``small-cnn`` or ``mobilenetv2``.
        weights: Local weights file for the mobilenetv2 base, or None.
        image_size: Model input height and width; chips are resized to it.
        filters: Filters per small-cnn stack.
        alpha: MobileNetV2 width multiplier (must match ``weights``).
        dropout: Dropout rate.
        batch_size: Examples per batch.
        epochs: Total epochs, including ``freeze_epochs``.
        freeze_epochs: Epochs to train the head with the pretrained base
            frozen before fine-tuning everything (mobilenetv2 only).
        learning_rate: Adam learning rate.
        fine_tune_learning_rate: Rate after unfreezing (default: a tenth).
        class_weight: ``balanced`` (weights inverse to class counts) or ``none``.
        augment: Random flips, rotations, brightness and contrast.
        cache: See :data:`CACHE_HELP`.
        shuffle_buffer: Shuffle buffer size.
        monitor: Validation metric for the best checkpoint and early stopping.
            ``val_loss`` by default: a proper scoring rule, it rewards ranking
            and calibration and keeps improving after AUC saturates at 1.0.
        patience: Epochs without improvement before stopping (0: off).

    Also takes the keyword-only :class:`RunSettings`.
    """

    train: str
    output: str
    val: str | None = None
    val_fraction: float = 0.2
    backbone: str = "small-cnn"
    weights: str | None = None
    image_size: int = 64
    filters: tuple[int, ...] = (16, 32, 64)
    alpha: float = 1.0
    dropout: float = 0.25
    batch_size: int = 32
    epochs: int = 20
    freeze_epochs: int = 0
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float | None = None
    class_weight: str = "balanced"
    augment: bool = True
    cache: str = "memory"
    shuffle_buffer: int = 2048
    monitor: str = "val_loss"
    patience: int = 6

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ConfigError(f"--backbone {self.backbone!r} is not one of {BACKBONES}")
        if self.weights is not None and self.backbone != "mobilenetv2":
            raise ConfigError("--weights needs --backbone mobilenetv2")
        if self.freeze_epochs and self.backbone != "mobilenetv2":
            raise ConfigError("--freeze-epochs needs --backbone mobilenetv2 (a pretrained base)")
        if not 0 <= self.freeze_epochs < self.epochs:
            raise ConfigError(
                f"--freeze-epochs {self.freeze_epochs} must be below --epochs {self.epochs} "
                "so that some epochs fine-tune the whole model"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 8:
            raise ConfigError(
                f"--epochs ({self.epochs}) and --batch-size ({self.batch_size}) must be "
                f"positive and --image-size ({self.image_size}) at least 8"
            )
        if self.val is None and not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"--val-fraction {self.val_fraction!r} must be between 0 and 1, or pass --val"
            )
        if self.class_weight not in ("balanced", "none"):
            raise ConfigError(f"--class-weight {self.class_weight!r} must be balanced or none")
        if self.monitor not in MONITORS:
            raise ConfigError(f"--monitor {self.monitor!r} must be one of {MONITORS}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate {self.learning_rate!r} must be positive")


@dataclasses.dataclass(frozen=True)
class SegmenterConfig(RunSettings):
    """Everything a segmenter training run needs; validated on creation.

    Attributes:
        images: Glob(s), comma-separated, of orthophoto GeoTIFFs.
        output: Folder for the model, checkpoints, logs and curves.
        footprints: Building polygons (vector file, any CRS), or None.
        masks: Glob(s) of mask GeoTIFFs named like their images, or None.
        bands: 1-based bands to use, or None for all.
        scaling: ``auto``, ``identity`` or ``percentile`` (see fit_scaling).
        patch_size: Training patch height and width (a multiple of 2**depth).
        val_fraction: Share of each tile's square blocks (``val_block``)
            held out for validation, stratified by building density.
        val_block: Side of the validation blocks, pixels, a multiple of the
            patch size; None: one patch side (many small blocks spread over
            the area: on a small area two-side blocks held one or two
            buildings, too few to choose a checkpoint or a threshold with).
        window_size: Window the pipeline feeds the exported model (default:
            the larger of 256 and the patch size), recorded in the assets.
        depth: U-Net levels.
        filters: Filters at the first level.
        residual: Residual blocks.
        centre: ``plain``, ``serial-dilated`` or ``parallel-dilated``.
        loss: Loss spec, e.g. ``bce+jaccard`` (see losses.parse_loss).
        batch_size: Patches per batch.
        steps: Gradient steps of the whole run. Training is sized by steps of
            randomly sampled patches, not by passes over a fixed patch set: a
            small area has few distinct patches, and 12 passes over 3 batches
            (the old default) is 36 steps, far too few to learn from.
        eval_every: Steps between validations (a Keras "epoch"): each one
            checks the validation blocks, keeps the best checkpoint and may
            stop early.
        epochs: If given, ``steps = epochs * eval_every`` (for callers that
            think in epochs); None: from ``steps``.
        learning_rate: Peak rate for one-cycle, else the Adam rate.
        schedule: ``one-cycle``, ``plateau`` (halve on stall) or ``constant``.
        patience: Validations without improvement before stopping; None:
            4, and with one-cycle only once the rate has started to fall.
        augment: Random flips/rotations and zoom of image and mask together,
            brightness and contrast of the image; on by default (areas small
            enough to train from in memory are small data).
        sensor_augment: With ``augment``, also the gamma, blur and noise of
            another sensor or day (``Augmentation.sensor``).
        building_share: Share of sampled patches centred on buildings.
        encoder: ``none`` (the U-Net above) or a pretrained Keras
            application under a U-Net decoder (:data:`ENCODERS`; ``depth``,
            ``residual`` and ``centre`` do not apply, ``filters`` sizes the
            decoder).
        encoder_weights: Local weights file of the encoder without its top,
            or None (random weights: no pretraining).
        threshold: Probability above which a pixel is a building; None (the
            default): chosen after training, the one of highest building IoU
            on the validation blocks (:func:`~model_training.evaluation.choose_mask_threshold`),
            and recorded in the model's assets for ``segment``.

    Also takes the keyword-only :class:`RunSettings`.
    """

    images: str
    output: str
    footprints: str | None = None
    masks: str | None = None
    bands: tuple[int, ...] | None = None
    scaling: str = "auto"
    patch_size: int = 128
    val_fraction: float = 0.25
    val_block: int | None = None
    window_size: int | None = None
    depth: int = 3
    filters: int = 8
    residual: bool = False
    centre: str = "plain"
    loss: str = "bce+jaccard"
    batch_size: int = 8
    steps: int = 1000
    eval_every: int = 100
    epochs: int | None = None
    learning_rate: float = 2e-3
    schedule: str = "one-cycle"
    patience: int | None = None
    augment: bool = True
    sensor_augment: bool = True
    building_share: float = 0.5
    encoder: str = "none"
    encoder_weights: str | None = None
    threshold: float | None = None

    def __post_init__(self):
        if (self.footprints is None) == (self.masks is None):
            raise ConfigError("pass either --footprints (polygons) or --masks (mask GeoTIFFs)")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"--encoder {self.encoder!r} must be one of {ENCODERS}")
        if self.encoder_weights is not None and self.encoder == "none":
            raise ConfigError(
                "--encoder-weights needs a pretrained --encoder "
                f"({', '.join(ENCODERS[1:])}) whose weights the file holds"
            )
        multiple = self.multiple
        why = f"2**depth for --depth {self.depth}" if self.encoder == "none" else "the encoder's"
        for name, value in (("--patch-size", self.patch_size), ("--window-size", self.window)):
            if value < 8 or value % multiple:
                raise ConfigError(
                    f"{name} {value} must be at least 8 and a multiple of {multiple} ({why})"
                )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction!r} must be between 0 and 1")
        if self.val_block is not None and (
            self.val_block < self.patch_size or self.val_block % self.patch_size
        ):
            raise ConfigError(
                f"--val-block {self.val_block} must be a multiple of --patch-size "
                f"{self.patch_size} (validation patches are cut from the blocks)"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule {self.schedule!r} must be one of {SCHEDULES}")
        if (
            self.steps < 1
            or self.eval_every < 1
            or self.batch_size < 1
            or self.learning_rate <= 0
            or (self.epochs is not None and self.epochs < 1)
        ):
            raise ConfigError(
                "--steps, --eval-every, --epochs, --batch-size and --learning-rate must be positive"
            )
        if not 0.0 <= self.building_share <= 1.0:
            raise ConfigError(f"--building-share {self.building_share!r} must be between 0 and 1")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"--threshold {self.threshold!r} must be between 0 and 1")
        if self.scaling not in SCALINGS:
            raise ConfigError(f"--scaling {self.scaling!r} must be one of {SCALINGS}")
        parse_loss(self.loss)

    @property
    def unet(self) -> UNetConfig:
        """The U-Net architecture these settings describe."""
        return UNetConfig(
            depth=self.depth, filters=self.filters, residual=self.residual, centre=self.centre
        )

    @property
    def multiple(self) -> int:
        """Patch and window sides must be multiples of this."""
        return self.unet.multiple if self.encoder == "none" else ENCODER_MULTIPLE

    @property
    def halo(self) -> int:
        """The receptive halo recorded in the assets (a quarter window for encoders)."""
        if self.encoder == "none":
            return receptive_halo(self.unet, self.window)
        return self.window // 4

    @property
    def window(self) -> int:
        """Window size the model is exported for (at least 256 and the patch size)."""
        return self.window_size or max(256, self.patch_size)

    @property
    def rounds(self) -> int:
        """Validations (Keras epochs) of the run."""
        if self.epochs is not None:
            return self.epochs
        return math.ceil(self.steps / self.eval_every)

    @property
    def total_steps(self) -> int:
        """Gradient steps of the run: ``steps`` rounded up to whole validation rounds."""
        return self.rounds * self.eval_every

    @property
    def patience_rounds(self) -> int:
        """Validations without improvement before stopping."""
        return 4 if self.patience is None else self.patience

    @property
    def stop_from_round(self) -> int:
        """First validation at which early stopping may act.

        With one-cycle, that is past the rising part (0.3 of the steps), where a
        stall is not yet news; otherwise the first.
        """
        return math.ceil(0.3 * self.rounds) if self.schedule == "one-cycle" else 0
