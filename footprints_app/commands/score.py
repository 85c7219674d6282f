"""``footprints score``: score chips, label exactly the target share residential.

Every flag is checked before the pipeline is built (a missing model, a model
that does not meet the classifier contract, a fraction outside [0, 1], a bad
region CSV, a glob that matches nothing), so mistakes cost seconds, not a
submitted job. Unknown flags are Beam pipeline options. Beam and TensorFlow
are imported only when the command runs, so ``footprints --help`` stays fast.
"""

from __future__ import annotations

import argparse

from footprints_app.commands import _flags as flags
from pipeline.runtimes import MODEL_FORMATS

CONFIG = "pipeline.score:ScoreConfig"

DESCRIPTION = """\
Score every chip with the classifier, then label exactly
k = floor(p * N + 1/2) footprints residential in each region (the top k by
score, ties broken by a stable hash of the footprint id). Writes
OUTPUT/scores/ (Parquet, GeoParquet when chips carry polygons),
OUTPUT/errors/ (dead letters) and OUTPUT/summary.json (written last).
See docs/scoring.md.
"""


EPILOG = """\
examples:
  # 40% residential in every region
  footprints score --chips 'out/chips/area-*-of-*.tfrecord' --model models/classifier/model \\
      --residential-fraction 0.4 --output out/score

  # per-county targets, check first, then run on 2 local processes
  footprints score --chips 'chips/*.tfrecord.gz' --model clf/model --residential-fraction 0.4 \\
      --region-fractions counties.csv --output out/score --dry-run
  footprints score ... --runner DirectRunner --direct_num_workers 2 \\
      --direct_running_mode multi_processing

counties.csv:  region,residential_fraction
               county-a,0.35
exit codes: 0 done; 1 the run failed; 2 invalid flags or inputs (nothing ran); 3 done, but
counts do not reconcile, every score the model returned was outside [0, 1] (a broken
model), or --strict-regions found a --region-fractions row no chip matches.
Repeated footprint ids are kept, counted (summary.json "duplicates") and warned about.
"""


def register(subparsers) -> None:
    """Adds the ``score`` subcommand."""
    parser = subparsers.add_parser(
        "score",
        help="score footprint chips and label the target residential fraction",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--chips",
        required=True,
        metavar="GLOB",
        help="chip shards, e.g. 'chips/*.tfrecord*' (plain or .gz)",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="classifier SavedModel directory"
    )
    parser.add_argument(
        "--residential-fraction",
        required=True,
        metavar="P",
        help="target residential fraction in [0, 1] for regions without "
        "their own in --region-fractions",
    )
    parser.add_argument(
        "--region-fractions", metavar="CSV", help="CSV with header region,residential_fraction"
    )
    parser.add_argument(
        "--strict-regions",
        action="store_true",
        help="exit 3 when a --region-fractions row matches no chip's region "
        "(always a warning in summary.json)",
    )
    flags.add_output_flags(
        parser,
        metavar="DIR",
        help="output folder",
        run_id_help="id written on every row (default: generated)",
    )
    flags.add_batch_flags(parser, CONFIG, what="chips")
    parser.add_argument(
        "--model-format",
        choices=list(MODEL_FORMATS),
        default=flags.ConfigDefault(CONFIG, "model_format"),
        help="savedmodel: TF2 signature (default); tfx: tfx-bsl handler for TFX-trained models",
    )
    flags.add_serving_graph_flag(parser, CONFIG)
    flags.add_runtime_flags(parser, CONFIG)
    flags.add_accelerator_flag(
        parser,
        steps="the inference step",
        example="type:nvidia-tesla-t4;count:1;install-nvidia-driver",
    )
    parser.add_argument(
        "--model-copies",
        type=int,
        metavar="N",
        help="models loaded per machine and shared by all its worker processes "
        "(one per GPU; default: one per process, or --accelerator's GPU count)",
    )
    flags.add_table_flags(
        parser,
        crs_dest="crs",
        csv_help="also write OUTPUT/scores.csv",
        bigquery_help="also load the scores into BigQuery (replaces the table)",
        crs_help="CRS of the geometry column, e.g. EPSG:4326 for BigQuery "
        "(default: the chips' CRS)",
    )
    parser.add_argument(
        "--max-chip-pixels",
        type=int,
        default=flags.ConfigDefault(CONFIG, "max_chip_pixels"),
        metavar="N",
        help="decode limit: a chip whose image declares more pixels (width x height) is "
        "dead-lettered (image_too_large) before decoding (default: %(default)s, 4096 x 4096)",
    )
    parser.add_argument(
        "--model-id",
        help="model id for every row (default: model card, else directory name and hash)",
    )
    parser.add_argument(
        "--quantile-epsilon",
        type=float,
        default=flags.ConfigDefault(CONFIG, "epsilon"),
        metavar="E",
        help="rank error of the quantile sketch (default: %(default)s); "
        "percentiles are within 100*(E + 1/(2(Q-1))) points",
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=flags.ConfigDefault(CONFIG, "num_shards"),
        help="files in scores/ (0: the runner decides; default: %(default)s)",
    )
    parser.set_defaults(handler=run, beam_passthrough=True)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Validates the flags, runs the job, prints the per-region result."""
    from footprints.errors import EXIT_CHECK, EXIT_OK
    from footprints_app.commands._plans import score_lines, score_plan
    from pipeline.inference.serving import serving_graph_warnings
    from pipeline.monitoring import add_warnings, duplicate_warnings
    from pipeline.score import ScoreConfig, run_config
    from pipeline.thresholds.fractions import unmatched_regions
    from pipeline.writers.scores import MODEL_SCORES_OUT_OF_RANGE

    config = ScoreConfig.create(
        chips=args.chips,
        model_dir=args.model,
        residential_fraction=args.residential_fraction,
        region_fractions=args.region_fractions,
        output=args.output,
        **flags.settings(
            args,
            batch_size="batch_size",
            min_batch_size="min_batch_size",
            model_format="model_format",
            serving_graph="serving_graph",
            runtime="runtime",
            int8="int8",
            allow_inexact_int8="allow_inexact_int8",
            accelerator="accelerator",
            model_copies="model_copies",
            csv="csv",
            bigquery_table="bigquery_table",
            run_id="run_id",
            model_id="model_id",
            epsilon="quantile_epsilon",
            num_shards="num_shards",
            crs="crs",
            max_chip_pixels="max_chip_pixels",
        ),
    )
    if args.dry_run:
        print(score_plan(config))
        return 0
    summary = run_config(config, beam_args)
    unmatched = unmatched_regions(config.fractions, summary["regions"])
    summary = add_warnings(
        config.summary_path,
        unmatched
        + duplicate_warnings(summary.get("duplicates"))
        + serving_graph_warnings(summary, config.serving_graph),
    )
    print(score_lines(summary))
    print(f"  outputs: {args.output}/scores/, errors/, summary.json")
    broken_model = any(w["code"] == MODEL_SCORES_OUT_OF_RANGE for w in summary["warnings"])
    if not summary["reconciles"] or broken_model or (args.strict_regions and unmatched):
        return EXIT_CHECK
    return EXIT_OK
