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

CONFIG = "pipeline.segment:SegmentConfig"

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
    flags.add_output_flags(
        parser,
        metavar="DIR",
        help="output folder",
        run_id_help="id of this run (default: generated)",
    )
    parser.add_argument(
        "--halo",
        type=int,
        metavar="PIXELS",
        help="context kept around each window's core; at least the model's "
        "receptive radius for seamless masks (default: the model's "
        "receptive_halo asset, else window/8)",
    )
    flags.add_batch_flags(parser, CONFIG, what="windows")
    parser.add_argument(
        "--tta",
        choices=["none", "flips", "d4"],
        default=flags.ConfigDefault(CONFIG, "tta"),
        help="test-time augmentation: average over 4 flips or 8 rotations and "
        "flips (default: %(default)s)",
    )
    flags.add_serving_graph_flag(parser, CONFIG)
    flags.add_runtime_flags(parser, CONFIG)
    flags.add_accelerator_flag(
        parser,
        steps="the inference steps (segmenter and classifier)",
        example="type:nvidia-l4;count:1;install-nvidia-driver",
    )
    parser.add_argument(
        "--mask-threshold",
        type=float,
        default=None,
        metavar="P",
        help="building probability threshold for footprints and the binary "
        "mask (default: the threshold the model chose on its validation "
        "blocks, recorded in its assets; 0.5 for a model without one)",
    )
    parser.add_argument(
        "--binary-mask",
        action="store_true",
        help="also write the binary mask (1 building) as band 2 of each COG",
    )
    parser.add_argument(
        "--simplify",
        type=float,
        default=flags.ConfigDefault(CONFIG, "simplify"),
        metavar="PIXELS",
        help="footprint simplification tolerance (default: %(default)s)",
    )
    parser.add_argument(
        "--min-area",
        type=float,
        default=flags.ConfigDefault(CONFIG, "min_area"),
        metavar="M2",
        help="drop footprints smaller than this, square metres (default: %(default)s)",
    )
    parser.add_argument(
        "--imagery-date",
        metavar="YYYY-MM-DD",
        help="date of the imagery on every row (default: each tile's TIFF "
        "DateTime tag, else empty)",
    )
    flags.add_table_flags(
        parser,
        crs_dest="footprints_crs",
        csv_help="also write the main table (classified/ with --classifier, else "
        "footprints/) as OUTPUT/<table>.csv, geometry as WKT",
        bigquery_help="also load the main table into BigQuery (replaces the table)",
        crs_help="CRS of the geometry in every table, e.g. EPSG:4326 for BigQuery "
        "(default: the tiles' CRS)",
    )
    parser.add_argument(
        "--regularize",
        action="store_true",
        help="right-angle footprint outlines (edges aligned to each "
        "building's main direction, as the Microsoft footprints are) "
        "instead of plain simplification; needs "
        "pip install 'footprints[regularize]'",
    )
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument(
        "--truth-masks",
        metavar="GLOB",
        help="true 0/1 masks on the tiles' grids; pixel IoU per tile and "
        "object precision/recall/F1 at IoU >= 0.5 go into summary.json "
        "(truth) and the report",
    )
    truth.add_argument(
        "--truth-footprints",
        metavar="FILE",
        help="true building polygons instead (GeoPackage, GeoJSON, "
        "Shapefile, GeoParquet; any CRS, reprojected)",
    )
    scoring = parser.add_argument_group(
        "scoring",
        "chip the footprints from the same tiles and run the `footprints score` "
        "path on them in the same job, into OUTPUT/scores/",
    )
    scoring.add_argument("--classifier", metavar="DIR", help="classifier SavedModel directory")
    scoring.add_argument(
        "--residential-fraction",
        metavar="P",
        help="target residential fraction in [0, 1] (with --classifier)",
    )
    scoring.add_argument(
        "--classifier-batch-size",
        type=int,
        default=flags.ConfigDefault(CONFIG, "classifier_batch_size"),
        metavar="N",
        help="largest batch of chips handed to the classifier (default: %(default)s)",
    )
    parser.set_defaults(handler=run, beam_passthrough=True)


def config_from_args(args: argparse.Namespace):
    """The validated :class:`pipeline.segment.SegmentConfig` of parsed flags."""
    from pipeline.segment import SegmentConfig

    return SegmentConfig.create(
        raster=args.raster,
        model_dir=args.model,
        output=args.output,
        halo=args.halo,
        **flags.settings(
            args,
            **{
                name: name
                for name in (
                    "batch_size",
                    "min_batch_size",
                    "tta",
                    "serving_graph",
                    "runtime",
                    "int8",
                    "allow_inexact_int8",
                    "accelerator",
                    "mask_threshold",
                    "binary_mask",
                    "simplify",
                    "min_area",
                    "footprints_crs",
                    "regularize",
                    "truth_masks",
                    "truth_footprints",
                    "run_id",
                    "classifier",
                    "residential_fraction",
                    "classifier_batch_size",
                    "imagery_date",
                    "csv",
                    "bigquery_table",
                )
            },
        ),
    )


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Validates the flags, runs the job, prints the tile and window counts."""
    from footprints_app.commands._plans import segment_lines, segment_plan
    from pipeline.inference.serving import serving_graph_warnings
    from pipeline.monitoring import add_warnings
    from pipeline.segment import run_config

    config = config_from_args(args)
    if args.dry_run:
        print(segment_plan(config))
        return 0
    summary = run_config(config, beam_args)
    summary = add_warnings(
        config.summary_path, serving_graph_warnings(summary, config.serving_graph)
    )
    print(segment_lines(summary))
    print(
        f"  outputs: {args.output}/masks/, footprints/, errors/, summary.json"
        + (", scores/, classified/" if config.classifier else "")
    )
    from footprints.errors import EXIT_CHECK, EXIT_OK

    return EXIT_OK if summary["reconciles"] else EXIT_CHECK
