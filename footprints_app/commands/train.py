"""``footprints train``: train the classifier or the segmenter, or find a learning rate.

Three sub-commands, each a thin layer over a function of ``model_training``
(which Python users and the demo call directly):

* ``classifier`` -> :func:`model_training.classifier.train_classifier`
* ``segmenter`` -> :func:`model_training.segmenter.train_segmenter`
* ``lr-find`` -> :func:`model_training.segmenter.find_learning_rate`

Training is not a Beam pipeline, so these commands take no Beam options.
Defaults come from the config dataclasses in :mod:`model_training.configs`
(which import without TensorFlow, so ``--help`` stays fast); TensorFlow is
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from model_training.configs import (
    BACKBONES,
    CACHE_HELP,
    CENTRES,
    ENCODERS,
    MONITORS,
    SCALINGS,
    SCHEDULES,
    ClassifierConfig,
    SegmenterConfig,
)

EPILOG = """\
examples:
  footprints train classifier --train 'chips/train-*.tfrecord*' --output runs/classifier
  footprints train segmenter --rasters 'area/tiles/*.tif' \\
      --footprints area/footprints.gpkg --output runs/segmenter
  footprints train lr-find --rasters 'area/tiles/*.tif' --masks 'area/masks/*.tif' \\
      --output runs/lr

Each run writes OUTPUT/model (the SavedModel contract, with
assets/model_card.json), OUTPUT/model.keras, OUTPUT/training_curves.png,
OUTPUT/history.csv and OUTPUT/checkpoints/. See docs/training.md.
"""

CLASSIFIER_EPILOG = """\
examples:
  # small CNN from scratch, 20% of footprints held out for validation
  footprints train classifier --train 'chips/*.tfrecord.gz' --output runs/cls
  # MobileNetV2 from a local weights file: 3 epochs head only, then fine-tune
  footprints train classifier --train 'chips/train-*' --val 'chips/val-*' \\
      --backbone mobilenetv2 --weights weights/mobilenet_v2_1.0_96_no_top.h5 \\
      --image-size 96 --epochs 12 --freeze-epochs 3 --output runs/mnv2
  # continue a run that was interrupted
  footprints train classifier --train 'chips/*' --output runs/cls --resume
"""

SEGMENTER_EPILOG = """\
examples:
  # RGB tiles and footprint polygons (any CRS; reprojected to each tile's)
  footprints train segmenter --rasters 'area/tiles/*.tif' \\
      --footprints area/footprints.gpkg --output runs/seg
  # 4-band uint16 tiles with mask GeoTIFFs named like the tiles, a longer run
  footprints train segmenter --rasters 'tiles/*.tif' --masks 'masks/*.tif' \\
      --scaling percentile --residual --centre serial-dilated \\
      --loss focal+jaccard --steps 3000 --output runs/seg4

Training is sized in gradient steps (--steps) of randomly sampled patches,
half of them on buildings, augmented; validation every --eval-every steps on
held-out blocks keeps the best checkpoint. --epochs N, if given, means
N validations (N x --eval-every steps).
"""

LR_FIND_EPILOG = """\
Trains the segmenter for --steps steps while the learning rate grows from
--min-lr to --max-lr, then writes OUTPUT/lr_find.png (loss against rate) and
OUTPUT/lr_find.json, and prints the suggested rate. Pass a rate near the
suggestion as `footprints train segmenter --learning-rate`.

example:
  footprints train lr-find --rasters 'area/tiles/*.tif' \\
      --footprints area/footprints.gpkg --output runs/lr
"""


def _default(cls, name: str):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers, e.g. 1,2,3"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer")
    return values


def _weights(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _common_run_flags(parser: argparse.ArgumentParser, cls) -> None:
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the model, checkpoints, logs and curves",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=_default(cls, "batch_size"),
        help="examples per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=_default(cls, "epochs"),
        help="epochs to train (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=_default(cls, "learning_rate"),
        help="learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUTPUT/checkpoints/last.keras"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again even if OUTPUT holds a previous run"
    )
    parser.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="do not write TensorBoard logs to OUTPUT/logs",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile the training step with XLA (pays off on GPUs and long "
        "runs; on CPUs compiling takes longer than training small models)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")


def _add_classifier(tasks) -> None:
    p = tasks.add_parser(
        "classifier",
        help="train the residential/non-residential footprint classifier",
        description="Train the footprint classifier on chip shards and export it to the "
        "classifier contract (serving_default: examples -> score).",
        epilog=CLASSIFIER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c = ClassifierConfig
    p.add_argument(
        "--train",
        required=True,
        metavar="GLOB",
        help="chip shards to train on (comma-separate several globs)",
    )
    p.add_argument(
        "--val",
        metavar="GLOB",
        help="validation chip shards (default: hold out --val-fraction of --train)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=_default(c, "val_fraction"),
        help="footprints held out when --val is not given, by a stable hash of "
        "their ids (default: %(default)s)",
    )
    p.add_argument(
        "--backbone",
        choices=BACKBONES,
        default=_default(c, "backbone"),
        help="architecture (default: %(default)s)",
    )
    p.add_argument(
        "--weights",
        type=_weights,
        default=None,
        metavar="PATH|none",
        help="local weights file for the mobilenetv2 base, or none for random "
        "initialization (default); nothing is downloaded",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=_default(c, "image_size"),
        help="model input size; chips are resized to it (default: %(default)s)",
    )
    p.add_argument(
        "--filters",
        type=_int_tuple,
        default=_default(c, "filters"),
        metavar="N,N,...",
        help="small-cnn filters per stack (default: 16,32,64)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=_default(c, "alpha"),
        help="mobilenetv2 width multiplier; must match --weights (default: %(default)s)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=_default(c, "dropout"),
        help="dropout rate (default: %(default)s)",
    )
    p.add_argument(
        "--freeze-epochs",
        type=int,
        default=0,
        help="mobilenetv2: epochs with the pretrained base frozen before "
        "fine-tuning all layers (default: 0)",
    )
    p.add_argument(
        "--fine-tune-learning-rate",
        type=float,
        default=None,
        help="rate after unfreezing (default: a tenth of --learning-rate)",
    )
    p.add_argument(
        "--class-weight",
        choices=("balanced", "none"),
        default=_default(c, "class_weight"),
        help="weigh classes inversely to their counts (default: %(default)s)",
    )
    p.add_argument(
        "--cache",
        default=_default(c, "cache"),
        help=f"cache decoded chips: {CACHE_HELP} (default: %(default)s)",
    )
    p.add_argument(
        "--shuffle-buffer",
        type=int,
        default=_default(c, "shuffle_buffer"),
        help="shuffle buffer in examples (default: %(default)s)",
    )
    p.add_argument(
        "--monitor",
        choices=MONITORS,
        default=_default(c, "monitor"),
        help="validation metric for the best checkpoint and early stopping (default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=_default(c, "patience"),
        help="epochs without improvement before stopping; 0 never stops (default: %(default)s)",
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="turn off random flips, rotations, brightness and contrast",
    )
    _allow_weak_flag(p, "validation AUC below 0.6, one predicted class, or no score spread")
    _common_run_flags(p, c)
    p.set_defaults(task_handler=_run_classifier)


def _segmenter_flags(p: argparse.ArgumentParser) -> None:
    s = SegmenterConfig
    p.add_argument(
        "--rasters",
        "--raster",
        "--images",
        dest="images",
        required=True,
        metavar="GLOB",
        help="orthophoto GeoTIFFs (uint8 or uint16, any band count)",
    )
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument(
        "--footprints",
        metavar="PATH",
        help="building polygons (GeoPackage, GeoJSON, Shapefile, GeoParquet; any CRS)",
    )
    labels.add_argument(
        "--masks",
        metavar="GLOB",
        help="0/1 mask GeoTIFFs named like their images, on the same grids",
    )
    p.add_argument(
        "--bands",
        type=_int_tuple,
        default=None,
        metavar="N,N,...",
        help="1-based bands to use, in model order (default: all)",
    )
    p.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=_default(s, "scaling"),
        help="raw pixels to model input: identity, percentile (1st..99th "
        "percentile of the training tiles to 0..255), or auto (identity "
        "for uint8, percentile for uint16) (default: %(default)s)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        default=_default(s, "patch_size"),
        help="training patch size, a multiple of 2**depth (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=_default(s, "val_fraction"),
        help="share of the tiles' square blocks (--val-block) held out for "
        "validation, stratified by building density (default: %(default)s)",
    )
    p.add_argument(
        "--val-block",
        type=int,
        default=_default(s, "val_block"),
        metavar="PIXELS",
        help="side of the validation blocks, a multiple of --patch-size (default: one patch side)",
    )
    p.add_argument(
        "--building-share",
        type=float,
        default=_default(s, "building_share"),
        help="share of sampled training patches centred on buildings (default: %(default)s)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=_default(s, "depth"),
        help="U-Net levels (default: %(default)s)",
    )
    p.add_argument(
        "--filters",
        type=int,
        default=_default(s, "filters"),
        help="filters at the first level, doubled per level (default: %(default)s)",
    )
    p.add_argument("--residual", action="store_true", help="residual conv blocks")
    p.add_argument(
        "--encoder",
        choices=ENCODERS,
        default=_default(s, "encoder"),
        help="pretrained encoder under a U-Net decoder (--filters sizes the "
        "decoder; --depth, --residual, --centre apply to none only); patch "
        "and window sizes become multiples of 32 (default: %(default)s)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="local weights file of the encoder without its top "
        "(keras.applications, include_top=False); nothing is downloaded; "
        "its sha256 goes into the model card (default: random weights)",
    )
    p.add_argument(
        "--centre",
        choices=CENTRES,
        default=_default(s, "centre"),
        help="U-Net centre (default: %(default)s)",
    )
    p.add_argument(
        "--loss",
        default=_default(s, "loss"),
        help="bce, focal, jaccard, dice, or a weighted sum such as "
        "0.5*bce+jaccard (default: %(default)s)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=_default(s, "threshold"),
        help="probability above which a pixel is a building (default: the "
        "threshold of highest building IoU on the validation blocks, chosen "
        "after training and recorded in the model's assets for `segment`)",
    )


def _add_segmenter(tasks) -> None:
    p = tasks.add_parser(
        "segmenter",
        help="train the U-Net building segmenter",
        description="Train the U-Net building segmenter on GeoTIFF tiles and labels and "
        "export it to the segmenter contract (serving_default: images -> mask).",
        epilog=SEGMENTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = SegmenterConfig
    _segmenter_flags(p)
    _allow_weak_flag(p, "validation building IoU below 0.3, or no building predicted")
    p.add_argument(
        "--window-size",
        type=int,
        default=None,
        help="window the pipeline feeds the model, recorded in the model's "
        "assets (default: the larger of 256 and --patch-size)",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=_default(s, "schedule"),
        help="learning-rate schedule; with one-cycle --learning-rate is the "
        "peak (default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="validations without improvement before stopping (default: 4; "
        "with one-cycle only after the first 30%% of the steps)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=_default(s, "steps"),
        help="gradient steps of the run, each on a fresh batch of sampled "
        "patches (default: %(default)s)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=_default(s, "eval_every"),
        help="steps between validations, checkpoints and early-stopping checks "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="turn off random flips/rotations and zoom of image and mask "
        "together, and brightness/contrast of the image (on by default)",
    )
    sensor = p.add_mutually_exclusive_group()
    sensor.add_argument(
        "--sensor-augment",
        dest="sensor_augment",
        action="store_true",
        default=None,
        help="with augmentation, also vary gamma, blur and noise as another "
        "sensor or day would (default)",
    )
    sensor.add_argument(
        "--no-sensor-augment",
        dest="sensor_augment",
        action="store_false",
        help="no gamma, blur or noise augmentation",
    )
    _common_run_flags(p, s)
    p.set_defaults(task_handler=_run_segmenter)


def _allow_weak_flag(p, gate: str) -> None:
    """``--allow-weak-model``; ``gate`` says what makes this model weak."""
    p.add_argument(
        "--allow-weak-model",
        action="store_true",
        help=f"exit 0 even when the quality gate finds the model degenerate "
        f"({gate}); the model card still records it as weak",
    )


def _add_lr_find(tasks) -> None:
    p = tasks.add_parser(
        "lr-find",
        help="sweep the segmenter's learning rate and suggest one",
        description="Learning-rate finder for the segmenter: loss against an "
        "exponentially growing rate.",
        epilog=LR_FIND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _segmenter_flags(p)
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the plot")
    p.add_argument(
        "--batch-size",
        type=int,
        default=_default(SegmenterConfig, "batch_size"),
        help="patches per batch (default: %(default)s)",
    )
    p.add_argument("--min-lr", type=float, default=1e-5, help="first rate (default: 1e-5)")
    p.add_argument("--max-lr", type=float, default=1.0, help="last rate (default: 1.0)")
    p.add_argument("--steps", type=int, default=100, help="steps of the sweep (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(task_handler=_run_lr_find)


def register(subparsers) -> None:
    """Adds ``train`` and its sub-commands to the ``footprints`` parser."""
    parser = subparsers.add_parser(
        "train",
        help="train the classifier or the segmenter (Keras)",
        description="Train and export the models the pipelines serve.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    _add_classifier(tasks)
    _add_segmenter(tasks)
    _add_lr_find(tasks)
    parser.set_defaults(handler=run)


def _config(cls, args: argparse.Namespace, **extra):
    """Builds a config dataclass from the parsed flags that match its fields."""
    values = vars(args)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in values.items() if k in fields and v is not None}
    if "quiet" in values:
        kwargs["verbose"] = 0 if args.quiet else 2
    kwargs.update(extra)
    return cls(**kwargs)


def _report(result) -> int:
    print(f"model: {result.model_dir}")
    print(f"model card: {result.card_path}")
    print(f"curves: {result.curves_path}")
    shown = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    print(
        "validation: "
        + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in shown.items()})
    )
    return 0


def quality_gate(quality: dict, allow_weak: bool) -> int:
    """Prints the quality gate's verdict; returns the exit code it asks for.

    A weak model (card ``quality.weak``) prints a loud warning with each
    reason and gives :data:`~footprints.errors.EXIT_CHECK` (3), unless
    ``allow_weak`` (``--allow-weak-model``).
    """
    from footprints.errors import EXIT_CHECK, EXIT_OK

    if quality.get("ece") is not None:
        print(
            f"calibration: ECE {quality['ece']:.3f} after, "
            f"{quality['ece_uncalibrated']:.3f} before (validation, "
            f"{quality.get('ece_bins', 15)} bins)"
        )
    if not quality.get("weak"):
        return EXIT_OK
    bar = "!" * 72
    print(f"{bar}\nWARNING: weak model: its results cannot be trusted")
    for reason in quality.get("reasons", []):
        print(f"  - {reason}")
    print(
        "  Train on more data or longer, or check the labels; pass --allow-weak-model "
        f"to accept it anyway.\n{bar}"
    )
    return EXIT_OK if allow_weak else EXIT_CHECK


def _run_classifier(args: argparse.Namespace) -> int:
    config = _config(ClassifierConfig, args)
    from model_training.classifier import train_classifier

    result = train_classifier(config)
    _report(result)
    with open(result.card_path, encoding="utf-8") as f:
        quality = json.load(f).get("quality", {})
    return quality_gate(quality, args.allow_weak_model)


def _run_segmenter(args: argparse.Namespace) -> int:
    config = _config(SegmenterConfig, args)
    from model_training.segmenter import train_segmenter

    result = train_segmenter(config)
    _report(result)
    from footprints import contracts

    card = contracts.read_model_card(result.model_dir)
    return quality_gate(card.get("quality") or {}, args.allow_weak_model)


def _run_lr_find(args: argparse.Namespace) -> int:
    config = _config(SegmenterConfig, args, verbose=0)
    from model_training.segmenter import find_learning_rate

    result = find_learning_rate(config, args.min_lr, args.max_lr, args.steps)
    print(f"suggested learning rate: {result.suggestion:.3g}")
    print(f"plot: {config.output}/lr_find.png")
    return 0


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Runs the chosen ``train`` sub-command; returns the exit code."""
    del beam_args  # training takes no Beam options; the CLI rejects unknown flags
    return args.task_handler(args)
