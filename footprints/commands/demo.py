"""``footprints demo``: the whole product on the generated sample area.

The Quick start's first command runs this. It builds a seeded sample area,
then runs each stage exactly as a user would run the subcommands, into one
output folder, and ends with a short account of what each stage produced.
Stages run in order; each writes under ``--output``, and a rerun replaces
what the previous run wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from footprints.errors import ConfigError

EPILOG = """\
example:
  footprints demo --output demo-output
  footprints demo --output demo-output --tiles 2x2 --seed 7 --runner DirectRunner

outputs (under --output):
  area/         the sample area: tiles/*.tif, masks/*.tif (truth), footprints.gpkg
  chips/        chip shards cut around every footprint, with errors and summary
  demo_summary.json   what every stage produced, in one file
"""


def register(subparsers) -> None:
    """Adds the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="run the whole product on a generated sample area",
        description="Generate the seeded sample area and run every stage of footprints "
                    "on it with DirectRunner (or the runner you pass).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="folder for everything the demo writes")
    p.add_argument("--seed", type=int, default=0, help="sample area seed (default: 0)")
    p.add_argument("--tiles", default="3x3",
                   help="sample area size in 512-px tiles, COLSxROWS (default: %(default)s)")
    p.set_defaults(handler=run, beam_passthrough=True)


def _tiles(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--tiles {text!r} must look like 3x3 (columns x rows)") from None
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise ConfigError(f"--tiles {text!r}: use 1 to 16 tiles each way")
    return cols, rows


def run(args, beam_args) -> int:
    """Runs every stage; returns 0 when each stage's counts reconcile."""
    from footprints.sample_area import SampleAreaConfig, generate_sample_area
    from pipeline import prepare

    cols, rows = _tiles(args.tiles)
    beam_args = list(beam_args) or ["--runner", "DirectRunner"]
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    report: dict = {"output": out, "seed": args.seed, "stages": {}}

    started = time.time()
    area = generate_sample_area(os.path.join(out, "area"),
                                SampleAreaConfig(seed=args.seed, tiles_x=cols, tiles_y=rows))
    report["stages"]["sample_area"] = {
        "tiles": len(area.tiles), "footprints": area.counts.get("total"),
        "classes": area.counts, "seconds": round(time.time() - started, 1)}
    print(f"demo: sample area with {len(area.tiles)} tiles and "
          f"{area.counts.get('total')} footprints in {out}/area")

    started = time.time()
    chips = prepare.run(prepare.PrepareConfig(
        output=os.path.join(out, "chips", "area"), rasters=os.path.join(area.root, "tiles",
                                                                        "*.tif"),
        footprints=area.footprints, id_field="id", class_field="building",
        region_field="region", num_shards=4), beam_args)
    report["stages"]["prepare"] = {**{k: chips[k] for k in (
        "inputs", "chips", "errors", "reconciles", "labels", "error_reasons")},
        "shards": chips["shards"], "seconds": round(time.time() - started, 1)}
    from footprints.commands.prepare import format_summary

    print(format_summary(chips))

    ok = all(stage.get("reconciles", True) for stage in report["stages"].values())
    path = os.path.join(out, "demo_summary.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    print(f"demo: done; what every stage produced is in {path}")
    return 0 if ok else 1
