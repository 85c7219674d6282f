"""``footprints prepare``: image folders or orthophotos + polygons to chip shards."""

from __future__ import annotations

import argparse

from footprints_app.commands._flags import add_output_flags
from pipeline.chipping import ChipSpec
from pipeline.labels import ClassMap
from pipeline.settings import add_flag, from_flags
from pipeline.settings.prepare import PrepareSettings

#: The chip flags, in the order ``--help`` lists them.
CHIP_FLAGS = (
    "size",
    "margin",
    "min_extent",
    "bands",
    "value_range",
    "image_format",
    "resampling",
    "min_coverage",
)

EPILOG = """\
examples:
  # orthophoto tiles + OSM-style footprints, labels from the 'building' attribute
  footprints prepare --rasters 'area/tiles/*.tif' --footprints area/footprints.gpkg \\
      --class-field building --region-field region --output out/chips/area

  # the notebooks' layout: images/house/*.jpg, images/barn/*.jpg
  footprints prepare --images images/ --output out/chips/train --num-shards 8 \\
      --compression gzip

writes PREFIX-00000-of-0000N.tfrecord[.gz], PREFIX-errors/ (Parquet dead letters)
and PREFIX-summary.json (counts that reconcile: inputs = chips + errors).
Unknown flags are Beam pipeline options, e.g. --runner DirectRunner
--direct_num_workers 2 --direct_running_mode multi_processing.
Nodata is never data: a footprint whose pixels are mostly nodata or masked is
dead-lettered (nodata); a partly masked chip carries its mask (image/mask).
Repeated footprint ids are kept, counted (summary "duplicates") and warned about.
exit codes: 0 done; 1 the run failed; 2 invalid flags or inputs (nothing ran);
3 done, but the counts do not reconcile.
"""


def register(subparsers) -> None:
    """Adds the ``prepare`` subcommand."""
    p = subparsers.add_parser(
        "prepare",
        help="write chip shards from image folders or orthophotos + footprints",
        description="Cut a chip around every footprint (or take every image of a class "
        "folder) and write sharded chip records (TFRecord of tf.train.Example, "
        "see docs/contracts.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument(
        "--images", metavar="DIR", help="folder of images in class subfolders (house/, barn/, ...)"
    )
    src.add_argument(
        "--rasters",
        "--raster",
        dest="rasters",
        metavar="GLOB",
        help="orthophoto GeoTIFFs, e.g. 'tiles/*.tif' (quoted)",
    )
    src.add_argument(
        "--footprints",
        metavar="FILE",
        help="footprint polygons: GeoPackage, GeoJSON, Shapefile or GeoParquet",
    )
    attrs = p.add_argument_group("footprint attributes")
    for field in ("id_field", "class_field", "region_field"):
        add_flag(attrs, PrepareSettings, field)
    for field in ("residential", "non_residential"):
        add_flag(attrs, ClassMap, field)
    chips = p.add_argument_group("chips")
    for field in CHIP_FLAGS:
        add_flag(chips, ChipSpec, field)
    out = p.add_argument_group("output")
    add_output_flags(
        out, PrepareSettings, metavar="PREFIX", help="shard path prefix, e.g. out/chips/area"
    )
    for field in ("num_shards", "compression"):
        add_flag(out, PrepareSettings, field)
    p.set_defaults(handler=run, beam_passthrough=True)


def config_from_args(args):
    """A validated :class:`pipeline.prepare.PrepareConfig` from parsed flags (inputs checked)."""
    from pipeline import prepare

    spec = from_flags(ChipSpec, args)
    if spec["size"] is None and args.images:
        spec["size"] = 0  # images keep their bytes unless a size is asked for
    classes = from_flags(ClassMap, args)
    return prepare.PrepareConfig.create(
        output=args.output,
        images=args.images,
        rasters=args.rasters,
        footprints=args.footprints,
        class_map=ClassMap(**{k: v for k, v in classes.items() if v is not None}),
        spec=ChipSpec(**{k: v for k, v in spec.items() if v is not None}),
        **from_flags(PrepareSettings, args),
    )


def run(args, beam_args) -> int:
    """Runs the pipeline and prints the counts."""
    from pipeline import prepare

    config = config_from_args(args)
    if args.dry_run:
        from footprints_app.commands._plans import prepare_plan

        print(prepare_plan(config))
        return 0
    from footprints.errors import EXIT_CHECK, EXIT_OK

    summary = prepare.run_config(config, beam_args)
    # The summary's paths are relative to its folder; the console shows them as given.
    print(format_summary({**summary, "inputs": {**summary["inputs"], "output": config.output}}))
    return EXIT_OK if summary["reconciles"] else EXIT_CHECK


def format_summary(summary: dict) -> str:
    """One paragraph a person can read: what went in, what came out, what failed."""
    counts, inputs = summary["counts"], summary["inputs"]
    labels = ", ".join(f"{k} {v}" for k, v in summary["labels"].items()) or "none"
    lines = [
        f"prepare: {counts['inputs']} {inputs['kind']} read -> {counts['chips']} chips "
        f"({labels}) + {counts['errors']} errors"
        + ("" if summary["reconciles"] else "  ** COUNTS DO NOT RECONCILE **"),
        f"  shards: {len(summary['shards'])} x {inputs['output']}-*-of-*; "
        f"errors: {inputs['output']}-errors/; summary: {inputs['output']}-summary.json",
    ]
    if inputs["kind"] == "footprints":
        lines.append(
            f"  tiles: {counts['tiles']['usable']} usable, {counts['tiles']['errors']} rejected"
        )
    if summary["errors_by_reason"]:
        lines.append(
            "  errors by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary["errors_by_reason"].items())
        )
    if summary.get("duplicates", {}).get("count"):
        lines.append(f"  duplicate footprint ids: {summary['duplicates']['count']}")
    if summary["unlabelled_classes"]:
        lines.append(
            "  unlabelled (class not in the class lists): "
            + ", ".join(f"{k} {v}" for k, v in summary["unlabelled_classes"].items())
        )
    return "\n".join(lines)
