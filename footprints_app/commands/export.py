"""``footprints export``: a run's classified footprints as GeoPackage, GeoJSON or FlatGeobuf.

For analysts in QGIS or ArcGIS: reads the run's ``classified/`` table (or
``footprints/`` for a run without ``--classifier``) and writes one styled
vector file with pyogrio (see :mod:`pipeline.writers.export`). The flags
are checked before anything is read; no Beam pipeline runs.
"""

from __future__ import annotations

import argparse

from footprints.errors import EXIT_OK, ConfigError

DESCRIPTION = """\
Write a segment run's buildings (OUTPUT/classified/, else OUTPUT/footprints/)
as one vector file for desktop GIS: a GeoPackage (the style stored in its
layer_styles table, so QGIS opens it styled), FlatGeobuf, or GeoJSON
(RFC 7946, lon/lat). A QGIS style (.qml) beside the file colours residential
red, non-residential blue and unclassified grey. See docs/querying.md.
"""

EPILOG = """\
examples:
  footprints export --format gpkg out/segment          # out/segment/export/footprints.gpkg
  footprints export --format geojson out/segment --output web/buildings.geojson

exit codes: 0 written, 2 invalid flags or no table in DIR (nothing written).
"""


def register(subparsers) -> None:
    """Adds the ``export`` subcommand."""
    from pipeline.writers.export import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="write a run's classified footprints as GeoPackage, GeoJSON or "
        "FlatGeobuf for QGIS/ArcGIS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="DIR", help="the --output folder of a segment run")
    parser.add_argument(
        "--format",
        required=True,
        choices=sorted(FORMATS),
        help="gpkg (GeoPackage), geojson (RFC 7946) or fgb (FlatGeobuf)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="file to write (default: DIR/export/footprints.FORMAT)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Writes the file and its style; prints where they are."""
    import os

    from pipeline.writers.export import export_footprints

    if not os.path.isdir(args.run_dir):
        raise ConfigError(
            f"{args.run_dir!r} is not a folder; pass the --output folder of a "
            "finished `footprints segment` run"
        )
    done = export_footprints(args.run_dir, args.format, args.output)
    print(
        f"export: {done['features']} footprints from {done['table']} -> {done['path']} "
        f"({done['crs']}); style: {done['style']}"
    )
    return EXIT_OK
