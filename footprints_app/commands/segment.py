"""``footprints segment``: orthophoto tiles to COG masks and building footprints.

Every flag is checked before the pipeline is built (a glob that matches
nothing, a model that does not meet the segmenter contract, a halo that
leaves no core, batch sizes, threshold), so mistakes cost seconds, not a
submitted job. Unknown flags are Beam pipeline options. Beam and TensorFlow
are imported only when the command runs, so ``footprints --help`` stays fast.
"""

from __future__ import annotations

import argparse

from footprints_app.commands import _flags as flags
from pipeline.settings import add_flag, from_flags
from pipeline.settings.segment import SegmentSettings

DESCRIPTION = """\
Segment buildings in orthophoto tiles with a U-Net SavedModel: windows with a
halo, batched inference, seamless stitching. Writes OUTPUT/masks/<tile>.tif
(Cloud-Optimized GeoTIFF on the tile's grid: band 1 probability x 255,
band 2 the binary mask with --binary-mask; nodata stays masked),
OUTPUT/masks/mosaic.vrt, OUTPUT/footprints/ (GeoParquet polygons, merged
across tile edges, with stable ids, lon/lat centroids and provenance),
OUTPUT/errors/ (tiles that cannot be used, and why) and
OUTPUT/summary.json (written last; reconciles tiles and windows). With
--classifier and --residential-fraction, also OUTPUT/scores/: the footprints
chipped from the same tiles, scored and labelled as `footprints score` does,
and OUTPUT/classified/: one row per building with its footprint and label.
With --truth-masks or --truth-footprints, summary.json's `truth` holds pixel
IoU per tile and object precision, recall and F1 at IoU >= 0.5, and
OUTPUT/truth/objects.parquet each footprint's match (true/false positive,
false negative). See docs/segmentation.md and docs/data-dictionary.md.
"""


EPILOG = """\
examples:
  footprints segment --raster 'area/tiles/*.tif' --model models/segmenter/model \\
      --output out/segment --binary-mask --dry-run

  # raw orthophotos to a classified, fraction-enforced footprint table in one job
  footprints segment --raster 'area/tiles/*.tif' --model models/segmenter/model \\
      --classifier models/classifier/model --residential-fraction 0.45 \\
      --truth-masks 'area/masks/*.tif' --output out/segment

exit codes: 0 done; 1 the run failed; 2 invalid flags or inputs (nothing ran); 3 done, but
counts do not reconcile.
"""


def register(subparsers) -> None:
    """Adds the ``segment`` subcommand."""
    parser = subparsers.add_parser(
        "segment",
        help="segment buildings in orthophoto tiles: COG masks and footprints",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--raster",
        "--rasters",
        dest="raster",
        required=True,
        metavar="GLOB",
        help="orthophoto tiles, e.g. 'area/tiles/*.tif' (quoted)",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="segmenter SavedModel directory (with assets/segmenter.json)",
    )
    flags.add_output_flags(parser, SegmentSettings, metavar="DIR", help="output folder")
    parser.add_argument(
        "--halo",
        type=int,
        metavar="PIXELS",
        help="context kept around each window's core; at least the model's "
        "receptive radius for seamless masks (default: the model's "
        "receptive_halo asset, else window/8)",
    )
    flags.add_batch_flags(parser, SegmentSettings)
    for field in ("tta", "serving_graph"):
        add_flag(parser, SegmentSettings, field)
    flags.add_runtime_flags(parser, SegmentSettings)
    for field in ("accelerator", "mask_threshold", "binary_mask", "simplify", "min_area"):
        add_flag(parser, SegmentSettings, field)
    add_flag(parser, SegmentSettings, "imagery_date")
    flags.add_table_flags(parser, SegmentSettings, crs="footprints_crs")
    add_flag(parser, SegmentSettings, "regularize")
    truth = parser.add_mutually_exclusive_group()
    for field in ("truth_masks", "truth_footprints"):
        add_flag(truth, SegmentSettings, field)
    scoring = parser.add_argument_group(
        "scoring",
        "chip the footprints from the same tiles and run the `footprints score` "
        "path on them in the same job, into OUTPUT/scores/",
    )
    for field in ("classifier", "residential_fraction", "classifier_batch_size"):
        add_flag(scoring, SegmentSettings, field)
    parser.set_defaults(handler=run, beam_passthrough=True)


def config_from_args(args: argparse.Namespace):
    """The validated :class:`pipeline.segment.SegmentConfig` of parsed flags."""
    from pipeline.segment import SegmentConfig

    return SegmentConfig.create(
        raster=args.raster,
        model_dir=args.model,
        output=args.output,
        halo=args.halo,
        **from_flags(SegmentSettings, args),
    )


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Validates the flags, runs the job, prints the tile and window counts."""
    from footprints_app.commands._plans import segment_lines, segment_plan
    from pipeline.segment import run_config

    config = config_from_args(args)
    if args.dry_run:
        print(segment_plan(config))
        return 0
    summary = run_config(config, beam_args)
    print(segment_lines(summary))
    print(
        f"  outputs: {args.output}/masks/, footprints/, errors/, summary.json"
        + (", scores/, classified/" if config.classifier else "")
    )
    from footprints.errors import EXIT_CHECK, EXIT_OK

    return EXIT_OK if summary["reconciles"] else EXIT_CHECK
