"""A real classified segment run for the table tests and the docs examples.

Two adjacent 4-band NAIP-like tiles in Texas state-plane feet (EPSG:2278,
Houston), a building across their shared edge, tile ``a`` with a TIFF
DateTime tag and ``b`` without; the bright-pixel segmenter and the
brightness classifier of the test helpers; output in EPSG:4326, outlines
not simplified.
"""

from __future__ import annotations

import rasterio
import score_helpers
import segment_helpers as helpers
from raster_fixtures import write_geotiff
from rasterio.transform import from_origin

from footprints_app import cli

FEET = "EPSG:2278"  # NAD83 / Texas South Central (ftUS)
ORIGIN = (3_120_000.0, 13_842_000.0)  # Houston
FT = 1.0  # pixel size, US survey feet


def write_tiles(root) -> str:
    """Writes the two tiles under ``root/tiles``; returns their glob."""
    a, _ = helpers.bright_scene(120, 100, [(10, 10, 40, 50), (60, 70, 90, 100)], bands=4, seed=1)
    b, _ = helpers.bright_scene(120, 100, [(60, 0, 90, 30), (20, 40, 50, 80)], bands=4, seed=2)
    path_a = write_geotiff(
        str(root / "tiles" / "a.tif"), a, crs=FEET, transform=from_origin(*ORIGIN, FT, FT)
    )
    write_geotiff(
        str(root / "tiles" / "b.tif"),
        b,
        crs=FEET,
        transform=from_origin(ORIGIN[0] + 100 * FT, ORIGIN[1], FT, FT),
    )
    with rasterio.open(path_a, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2024:06:30 10:15:00")
    return str(root / "tiles" / "*.tif")


def classified_run(root, output) -> list[str]:
    """Runs ``segment --classifier --output-crs EPSG:4326 --csv`` into ``output``.

    Returns the arguments (without ``--output``), so a test can rerun them.
    """
    model = helpers.save_bright_segmenter(str(root / "segmenter"), window_size=64)
    classifier = score_helpers.save_classifier(str(root / "classifier"), "brightness")
    args = [
        "segment",
        "--raster",
        write_tiles(root),
        "--model",
        model,
        "--classifier",
        classifier,
        "--residential-fraction",
        "0.5",
        "--output-crs",
        "EPSG:4326",
        "--min-area",
        "1",
        "--binary-mask",
        "--csv",
        # Traced outlines as they are: the area and lon/lat checks then
        # measure the reprojection alone, not the simplifier.
        "--simplify",
        "0",
        "--run-id",
        "first",
    ]
    assert cli.main([*args, "--output", str(output)]) == 0
    return args


UTM = "EPSG:32615"  # WGS 84 / UTM zone 15N, as the demo area's tiles
UTM_ORIGIN = (271_000.0, 3_294_000.0)  # Houston, in metres
UTM_PIXEL = 0.5


def utm_run(root, output) -> list[str]:
    """A demo-like run into ``output``: ``segment --classifier`` on UTM tiles, UTM tables.

    The tables stay in the tiles' CRS (no ``--output-crs``) and the masks
    have the probability band alone (no ``--binary-mask``), as in the demo;
    tile ``a`` has a TIFF DateTime tag. Returns the arguments (without
    ``--output``).
    """
    model = helpers.save_bright_segmenter(str(root / "segmenter"), window_size=64)
    classifier = score_helpers.save_classifier(str(root / "classifier"), "brightness")
    a, _ = helpers.bright_scene(120, 100, [(10, 10, 40, 50), (60, 60, 95, 95)], seed=3)
    b, _ = helpers.bright_scene(120, 100, [(15, 20, 45, 60), (70, 40, 100, 80)], seed=4)
    for name, data, dx in (("a", a, 0.0), ("b", b, 100 * UTM_PIXEL)):
        path = write_geotiff(
            str(root / "utm-tiles" / f"{name}.tif"),
            data,
            crs=UTM,
            transform=from_origin(UTM_ORIGIN[0] + dx, UTM_ORIGIN[1], UTM_PIXEL, UTM_PIXEL),
        )
        if name == "a":
            with rasterio.open(path, "r+") as dst:
                dst.update_tags(TIFFTAG_DATETIME="2024:06:30 10:15:00")
    args = [
        "segment",
        "--raster",
        str(root / "utm-tiles" / "*.tif"),
        "--model",
        model,
        "--classifier",
        classifier,
        "--residential-fraction",
        "0.5",
        "--run-id",
        "utm",
    ]
    assert cli.main([*args, "--output", str(output)]) == 0
    return args
