"""``footprints prepare``: image folders or orthophotos + polygons to chip shards."""

from __future__ import annotations

import argparse

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


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of band numbers, e.g. 1,2,3"
        ) from None


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH, e.g. 0,4095") from None
    return low, high


def register(subparsers) -> None:
    """Adds the ``prepare`` subcommand."""
    from pipeline.chipping import IMAGE_FORMATS, RESAMPLING, ChipSpec
    from pipeline.labels import DEFAULT_NON_RESIDENTIAL, DEFAULT_RESIDENTIAL

    d = ChipSpec()
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
    attrs.add_argument(
        "--id-field",
        help="attribute holding a unique footprint id (default: FILE-STEM-<feature index>)",
    )
    attrs.add_argument("--class-field", help="attribute holding the class, e.g. building")
    attrs.add_argument("--region-field", help="attribute holding the region, e.g. county")
    attrs.add_argument(
        "--residential-classes",
        type=_csv,
        metavar="A,B,...",
        default=DEFAULT_RESIDENTIAL,
        help="class values (or folder names) labelled residential "
        "(default: OSM house,detached,residential,apartments,...)",
    )
    attrs.add_argument(
        "--non-residential-classes",
        type=_csv,
        metavar="A,B,...",
        default=DEFAULT_NON_RESIDENTIAL,
        help="class values labelled non-residential "
        "(default: OSM barn,shed,garage,farm_auxiliary,commercial,...)",
    )
    chips = p.add_argument_group("chips")
    chips.add_argument(
        "--chip-size",
        type=int,
        default=None,
        help=f"output side in pixels, 0 = native pixels (default: {d.size} "
        "for footprints, 0 = as they are for images)",
    )
    chips.add_argument(
        "--margin",
        type=float,
        default=d.margin,
        help="context on each side, as a fraction of the footprint's larger "
        "side (default: %(default)s)",
    )
    chips.add_argument(
        "--min-extent",
        type=float,
        default=d.min_extent,
        help="smallest chip side in ground units, metres (default: %(default)s)",
    )
    chips.add_argument(
        "--bands",
        type=_ints,
        default=(),
        help="1-based bands, 1 or 3 (default: 1,2,3, or 1 for single-band rasters)",
    )
    chips.add_argument(
        "--value-range",
        type=_range,
        default=None,
        metavar="LOW,HIGH",
        help="raw values mapped to 0..255 for non-8-bit rasters (default: a "
        "0.5-99.5%% stretch estimated once over the area)",
    )
    chips.add_argument("--image-format", choices=IMAGE_FORMATS, default=d.image_format)
    chips.add_argument("--resampling", choices=RESAMPLING, default=d.resampling)
    chips.add_argument(
        "--min-coverage",
        type=float,
        default=d.min_coverage,
        help="smallest share of a footprint the rasters must cover (default: %(default)s)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--output", required=True, metavar="PREFIX", help="shard path prefix, e.g. out/chips/area"
    )
    out.add_argument("--num-shards", type=int, default=4, help="(default: %(default)s)")
    out.add_argument("--compression", choices=["none", "gzip"], default="none")
    out.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the inputs and print the plan (files, tiles, windows, "
        "estimated work) without running anything",
    )
    p.set_defaults(handler=run, beam_passthrough=True)


def config_from_args(args):
    """A validated :class:`pipeline.prepare.PrepareConfig` from parsed flags."""
    from pipeline import prepare
    from pipeline.chipping import ChipSpec

    size = args.chip_size if args.chip_size is not None else (0 if args.images else 96)
    spec = ChipSpec(
        size=size,
        margin=args.margin,
        min_extent=args.min_extent,
        bands=args.bands,
        value_range=args.value_range,
        image_format=args.image_format,
        min_coverage=args.min_coverage,
        resampling=args.resampling,
    )
    return prepare.PrepareConfig(
        output=args.output,
        images=args.images,
        rasters=args.rasters,
        footprints=args.footprints,
        id_field=args.id_field,
        class_field=args.class_field,
        region_field=args.region_field,
        class_map=prepare.ClassMap(args.residential_classes, args.non_residential_classes),
        spec=spec,
        num_shards=args.num_shards,
        compression=args.compression,
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

    summary = prepare.run(config, beam_args)
    print(format_summary(summary))
    return EXIT_OK if summary["reconciles"] else EXIT_CHECK


def format_summary(summary: dict) -> str:
    """One paragraph a person can read: what went in, what came out, what failed."""
    labels = ", ".join(f"{k} {v}" for k, v in summary["labels"].items()) or "none"
    lines = [
        f"prepare: {summary['inputs']} {summary['kind']} read -> {summary['chips']} chips "
        f"({labels}) + {summary['errors']} errors"
        + ("" if summary["reconciles"] else "  ** COUNTS DO NOT RECONCILE **"),
        f"  shards: {len(summary['shards'])} x {summary['output']}-*-of-*; "
        f"errors: {summary['output']}-errors/; summary: {summary['output']}-summary.json",
    ]
    if summary["kind"] == "footprints":
        lines.append(
            f"  tiles: {summary['tiles']['usable']} usable, {summary['tiles']['errors']} rejected"
        )
    if summary["error_reasons"]:
        lines.append(
            "  errors by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary["error_reasons"].items())
        )
    if summary.get("duplicates", {}).get("count"):
        lines.append(f"  duplicate footprint ids: {summary['duplicates']['count']}")
    if summary["unlabelled_classes"]:
        lines.append(
            "  unlabelled (class not in the class lists): "
            + ", ".join(f"{k} {v}" for k, v in summary["unlabelled_classes"].items())
        )
    return "\n".join(lines)
