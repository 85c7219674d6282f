"""``footprints sample-area``: write a seeded synthetic sample area to a folder.

The area (orthophoto GeoTIFF tiles, true footprints, true masks and a
manifest) is what the quickstart, the tests and a new user's first run feed
to the other commands. Flags are read as text and validated here and in
:class:`footprints_app.sample_area.SampleAreaConfig`, so a bad value exits with
code 2 and a message that says how to fix it; the generator module is
imported only when the command runs, to keep ``footprints --help`` fast.
"""

from __future__ import annotations

import argparse
import re

from footprints.errors import ConfigError

EPILOG = """\
example:
  footprints sample-area --output /tmp/area --seed 7 --tiles 3x2 --bands rgbn \\
      --footprints-format parquet --footprints-crs EPSG:4326

writes:
  /tmp/area/tiles/tile_r{row}_c{col}.tif   orthophoto tiles (north-up, tiled, deflate)
  /tmp/area/masks/tile_r{row}_c{col}.tif   true building masks (uint8 0/1), same grids
  /tmp/area/footprints.<ext>               footprints: id, building (OSM value), region
  /tmp/area/manifest.json                  config, counts and files; written last

real-like style (a hard test for the segmenter: one 12-bit band, sensor noise,
off-nadir lean, shadows, trees over roofs, a nodata collar, labels in EPSG:4326):
  footprints sample-area --style real-like --output /tmp/rl --seed 0 [--bands rgbn]
writes:
  /tmp/rl/tiles/{west,east}.tif   the two halves of one tile, ~40 buildings each
  /tmp/rl/masks/{west,east}.tif   true footprint masks, same grids
  /tmp/rl/footprints.geojson      footprint (ground) outlines, EPSG:4326
  /tmp/rl/manifest.json
"""

#: Flags of the default style that the real-like style does not take.
_DEFAULT_ONLY = ("tiles", "dtype", "regions", "density")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``sample-area`` subcommand."""
    parser = subparsers.add_parser(
        "sample-area",
        help="write a seeded synthetic area: orthophoto tiles, true footprints and masks",
        description=(
            "Writes a realistic rural-suburban sample area from a seed: orthophoto "
            "GeoTIFF tiles, the true building footprints (houses, barns, sheds, "
            "commercial, ...) and their masks. The same flags give the same bytes."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="folder to write (created; earlier outputs there are replaced)",
    )
    parser.add_argument(
        "--style",
        choices=("default", "real-like"),
        default="default",
        help="default: the colour sample area of the demo; real-like: one "
        "tile in two halves, built to test the segmenter the way real "
        "single-band imagery does (see below) (default: %(default)s)",
    )
    parser.add_argument("--seed", default="0", help="random seed, an integer >= 0 (default: 0)")
    parser.add_argument(
        "--tiles",
        default=None,
        metavar="XxY",
        help="tiles across x tiles down, e.g. 3x2 (default: 2x2)",
    )
    parser.add_argument(
        "--tile-size",
        default=None,
        metavar="PX",
        help="pixels per tile side (default: 512; real-like: the tile's "
        "width, 1536, its height half of it)",
    )
    parser.add_argument(
        "--pixel-size",
        default="0.5",
        metavar="M",
        help="metres per pixel, 0.1 to 2.0 (default: %(default)s)",
    )
    parser.add_argument(
        "--crs",
        default="EPSG:32615",
        help="projected CRS of the tiles, in metres (default: %(default)s)",
    )
    parser.add_argument(
        "--bands",
        default=None,
        help="rgb, rgbn (with near infrared) or gray (default: rgb; real-like: "
        "gray or rgbn, default gray)",
    )
    parser.add_argument(
        "--dtype", default=None, help="uint8, or uint16 for 12-bit values (default: uint8)"
    )
    parser.add_argument(
        "--footprints-format",
        default=None,
        help="gpkg, geojson, shp or parquet (GeoParquet) (default: gpkg; real-like: geojson)",
    )
    parser.add_argument(
        "--footprints-crs",
        default=None,
        metavar="CRS",
        help="write the footprints in this CRS, e.g. EPSG:4326 "
        "(default: the tiles' CRS; real-like: EPSG:4326)",
    )
    parser.add_argument(
        "--regions",
        default=None,
        metavar="N",
        help="number of region labels, split west to east (default: 2)",
    )
    parser.add_argument(
        "--density", default=None, help="multiplier on the number of buildings (default: 1.0)"
    )
    parser.set_defaults(handler=run)


def parse_tiles(text: str) -> tuple[int, int]:
    """``"3x2"`` -> ``(3, 2)``: tiles across, tiles down.

    Raises:
        ConfigError: ``text`` is not two positive integers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not all(int(g) > 0 for g in match.groups()):
        raise ConfigError(f"--tiles {text!r} is not COLSxROWS; write it like 3x2")
    return int(match.group(1)), int(match.group(2))


def _number(flag: str, text: str, kind: type, example: str):
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not a valid {kind.__name__}; write it like {example}"
        ) from None


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Builds the config from the flags, writes the area and prints a one-line summary."""
    if args.style == "real-like":
        return _run_real_like(args)
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area

    tiles_x, tiles_y = parse_tiles(args.tiles or "2x2")
    config = SampleAreaConfig(
        seed=_number("--seed", args.seed, int, "--seed 7"),
        tiles_x=tiles_x,
        tiles_y=tiles_y,
        tile_size=_number("--tile-size", args.tile_size or "512", int, "--tile-size 512"),
        pixel_size=_number("--pixel-size", args.pixel_size, float, "--pixel-size 0.5"),
        crs=args.crs,
        bands=args.bands or "rgb",
        dtype=args.dtype or "uint8",
        footprints_format=args.footprints_format or "gpkg",
        footprints_crs=args.footprints_crs,
        regions=_number("--regions", args.regions or "2", int, "--regions 2"),
        density=_number("--density", args.density or "1.0", float, "--density 1.5"),
    )
    area = generate_sample_area(args.output, config)
    classes = ", ".join(f"{k} {v}" for k, v in area.counts.items() if k != "total")
    print(
        f"sample area: {len(area.tiles)} tiles ({tiles_x}x{tiles_y} of {config.tile_size} px "
        f"at {config.pixel_size} m), {area.counts['total']} footprints ({classes}) "
        f"in {area.root}"
    )
    return 0


def _run_real_like(args: argparse.Namespace) -> int:
    """``--style real-like``: one tile in two halves (see the epilog)."""
    from footprints_app.sample_area.reallike import RealLikeConfig, generate_real_like

    given = [f"--{name}" for name in _DEFAULT_ONLY if getattr(args, name) is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} do not apply to --style real-like (one tile "
            "in two halves, 12-bit); drop them"
        )
    width = _number("--tile-size", args.tile_size or "1536", int, "--tile-size 1536")
    config = RealLikeConfig(
        seed=_number("--seed", args.seed, int, "--seed 7"),
        width=width,
        pixel_size=_number("--pixel-size", args.pixel_size, float, "--pixel-size 0.5"),
        crs=args.crs,
        bands=args.bands or "gray",
        footprints_crs=args.footprints_crs or "EPSG:4326",
        footprints_format=args.footprints_format or "geojson",
    )
    area = generate_real_like(args.output, config)
    print(
        f"real-like tile: {config.width}x{config.height} px at {config.pixel_size} m, "
        f"{config.bands}, halves {', '.join(area.tiles)}; {area.counts['west']} + "
        f"{area.counts['east']} buildings; footprints {area.footprints}"
    )
    return 0
