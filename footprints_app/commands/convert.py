"""``footprints convert onnx``: an ONNX copy of an existing model, for ONNX Runtime.

Training writes ``model.onnx`` beside every new SavedModel; this command
writes it for models trained before (contract 2) or exported by hand with
:mod:`model_training.export`, checks it against the SavedModel, and records
it in the model card. With ``--int8`` it also writes ``model.int8.onnx``
(static quantization calibrated on validation chips or raster windows) and
records in the card whether int8 kept the answers. No Beam pipeline runs.
"""

from __future__ import annotations

import argparse

from footprints.errors import EXIT_OK, ConfigError

DESCRIPTION = """\
Write MODEL/model.onnx, the ONNX copy of a classifier's or segmenter's
network (decoding stays outside it), for `footprints score|segment --runtime
onnxruntime`. The copy is checked against the SavedModel on seeded inputs
(scores within 1e-5, masks within 1/255) and recorded in the model card.
With --int8, also MODEL/model.int8.onnx, calibrated on --calibration-chips
(classifier) or --calibration-raster (segmenter) and measured against the
fp32 model; the card's onnx.int8 says whether it stayed within tolerance.
See docs/contracts.md.
"""

EPILOG = """\
examples:
  footprints convert onnx models/classifier
  footprints convert onnx models/classifier --int8 --calibration-chips 'chips/val-*.tfrecord'
  footprints convert onnx models/segmenter --int8 --calibration-raster 'area/tiles/*.tif'

exit codes: 0 written, 2 invalid flags or a model that does not convert (nothing written).
"""


def register(subparsers) -> None:
    """Adds the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="write a model's ONNX copy (and int8 twin) for --runtime onnxruntime",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=["onnx"], help="the format to write (onnx)")
    parser.add_argument("model", metavar="MODEL", help="the SavedModel folder")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx by static quantization, and judge it",
    )
    parser.add_argument(
        "--calibration-chips",
        metavar="GLOB",
        help="with --int8 on a classifier: validation chip shards (labelled) to calibrate and "
        "measure on",
    )
    parser.add_argument(
        "--calibration-raster",
        metavar="GLOB",
        help="with --int8 on a segmenter: orthophoto tiles whose windows calibrate and measure",
    )
    parser.add_argument(
        "--calibration-count",
        type=int,
        default=512,
        metavar="N",
        help="chips or windows read for calibration and measurement (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Converts, checks and records; prints what was written."""
    import os

    from footprints import contracts

    model = contracts.model_dir_of(args.model)
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        raise ConfigError(
            f"{args.model!r} is not a SavedModel folder (no saved_model.pb); pass the folder "
            "`footprints train` wrote"
        )
    if args.calibration_count < 16:
        raise ConfigError(f"--calibration-count {args.calibration_count} must be at least 16")
    from model_training import onnx_export

    segmenter = onnx_export.is_segmenter(model)
    calibration = args.calibration_raster if segmenter else args.calibration_chips
    if args.int8 and not calibration:
        flag = "--calibration-raster" if segmenter else "--calibration-chips"
        raise ConfigError(
            f"--int8 needs {flag} for this {'segmenter' if segmenter else 'classifier'}"
        )
    if not args.int8 and (args.calibration_chips or args.calibration_raster):
        raise ConfigError("--calibration-chips and --calibration-raster go with --int8")
    entry = onnx_export.export_beside(model)
    print(
        f"convert: {os.path.join(model, entry['file'])} (max |ONNX - SavedModel| "
        f"{entry['max_difference']:.2g}, tolerance {entry['tolerance']:.2g})"
    )
    if args.int8:
        from model_training import onnx_quantize

        entry["int8"] = onnx_quantize.quantize_beside(model, calibration, args.calibration_count)
        verdict = entry["int8"]
        print(
            f"convert: {os.path.join(model, contracts.ONNX_INT8_MODEL)} "
            f"({'within' if verdict['within_tolerance'] else 'NOT within'} tolerance: "
            f"{verdict['why']})"
        )
    print(f"convert: recorded in {onnx_export.update_card(model, entry)}")
    return EXIT_OK
