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
from pipeline.settings import add_flag, from_flags
from pipeline.settings.score import ScoreSettings

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
    flags.add_output_flags(parser, ScoreSettings, metavar="DIR", help="output folder")
    flags.add_batch_flags(parser, ScoreSettings)
    for field in ("model_format", "serving_graph"):
        add_flag(parser, ScoreSettings, field)
    flags.add_runtime_flags(parser, ScoreSettings)
    for field in ("accelerator", "model_copies"):
        add_flag(parser, ScoreSettings, field)
    flags.add_table_flags(parser, ScoreSettings, crs="crs")
    for field in ("max_chip_pixels", "model_id", "epsilon", "num_shards"):
        add_flag(parser, ScoreSettings, field)
    parser.set_defaults(handler=run, beam_passthrough=True)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Validates the flags, runs the job, prints the per-region result."""
    from footprints.errors import EXIT_CHECK, EXIT_OK
    from footprints_app.commands._plans import score_lines, score_plan
    from pipeline.score import MODEL_SCORES_OUT_OF_RANGE, ScoreConfig, run_config

    config = ScoreConfig.create(
        chips=args.chips,
        model_dir=args.model,
        residential_fraction=args.residential_fraction,
        region_fractions=args.region_fractions,
        output=args.output,
        **from_flags(ScoreSettings, args),
    )
    if args.dry_run:
        print(score_plan(config))
        return 0
    summary = run_config(config, beam_args)
    unmatched = [w for w in summary["warnings"] if w["code"] == "unmatched_region"]
    print(score_lines(summary))
    print(f"  outputs: {args.output}/scores/, errors/, summary.json")
    broken_model = any(w["code"] == MODEL_SCORES_OUT_OF_RANGE for w in summary["warnings"])
    if not summary["reconciles"] or broken_model or (args.strict_regions and unmatched):
        return EXIT_CHECK
    return EXIT_OK
