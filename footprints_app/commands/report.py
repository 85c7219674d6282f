"""``footprints report``: (re)build report.html for a finished run's folder."""

from __future__ import annotations

import argparse
import os

from footprints.errors import ConfigError

EPILOG = """\
example:
  footprints report out/score-2026-11        # writes out/score-2026-11/report.html
  footprints report demo-output --title "Demo county"

The report is built from what the run wrote (summary.json, classified/,
scores/, errors/, masks/, footprints/, truth/, stac/; only the files
summary.json lists, when it lists them; and export/ when `footprints export`
ran), so it can be rebuilt at any time and works for runs on any runner.
It is one self-contained HTML file: open it in any browser, offline. Paths
are relative to the folder; no absolute path of the machine is written.
"""


def register(subparsers) -> None:
    """Adds the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="build report.html for a run's output folder",
        description="Build a self-contained HTML report that reads top-down: first the "
        "headline (area, extent in lon/lat, size, imagery date, buildings found, "
        "residential share per region, a red banner for every warning, links to "
        "classified/, the exported GeoPackage and stac/) beside a map of the area in "
        "the QGIS style's colours with lon/lat ticks and a scale bar; then per-tile "
        "and per-region tables (target vs achieved vs what the model expects, pixel "
        "IoU and object precision/recall/F1 against the truth), score distributions, "
        "the area and every tile against the truth, errors by reason, relative links "
        "to every output; last, for the ML engineer, the demo's stages, the models' "
        "cards, reliability diagrams and training curves.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", metavar="DIR", help="the run's --output folder")
    p.add_argument("--title", help="heading of the report")
    p.set_defaults(handler=run)


def run(args, beam_args) -> int:
    """Builds the report and prints where it is."""
    from footprints_app.report import build_report

    if not os.path.isdir(args.output):
        raise ConfigError(
            f"{args.output!r} is not a folder; pass the --output folder of a "
            "finished score, segment or demo run"
        )
    path = build_report(args.output, args.title)
    print(f"report: {path}")
    return 0
