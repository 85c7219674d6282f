"""The outputs in the users' own tools (issue 23): Debian's QGIS 3.22 and GDAL 3.6 tools.

One demo-like run (``segment --classifier`` on UTM tiles, tables in UTM,
masks with the probability band alone; tests/table_fixtures.py) and its
``export --format gpkg``. Then, in the real clients:

* QGIS (Debian's ``python3-qgis``, run as ``/usr/bin/python3
  tests/qgis_render.py``, offscreen) opens the GeoPackage copied alone into
  an empty folder: it must find the style the file holds and draw each
  building in its class's colour; it draws a mask COG and ``mosaic.vrt`` as
  one gray band of probabilities (white where the mask says building).
* GDAL's command-line tools (Debian's ``gdal-bin``) read every raster
  without a warning, the mosaic as one band with scale 1/255, and
  ``gdal_translate -unscale`` gives the probabilities rasterio reads.

``quickstart.sh test`` installs both where it can (root and apt-get); without
them these tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import shapely
from shapely.ops import polylabel
from table_fixtures import utm_run

from footprints_app import cli

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
#: The documented style (docs/data-dictionary.md): residential red,
#: non-residential blue, each at 60 % opacity.
RED, BLUE, OPACITY = (215, 48, 39), (69, 117, 180), 0.6
#: Offscreen Qt, no .aux.xml statistics files written beside the run's rasters, and
#: none of our interpreter's settings (the system Python must not import from our
#: PYTHONPATH: QGIS crashed on start with the work tree on it).
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
    "QT_QPA_PLATFORM": "offscreen",
    "GDAL_PAM_ENABLED": "NO",
}


def _has_qgis() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, env=ENV, check=False
    )
    return probe.returncode == 0


def _need(available: bool, what: str) -> None:
    if available:
        return
    message = f"{what} is not installed: `bash quickstart.sh test` installs it (as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must have {what}; {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def qgis():
    """Skips (fails in CI) before any job runs when QGIS's Python bindings are missing."""
    _need(_has_qgis(), "Debian's QGIS Python bindings (python3-qgis)")


@pytest.fixture(scope="module")
def gdal():
    """Skips (fails in CI) before any job runs when GDAL's command-line tools are missing."""
    _need(shutil.which("gdalinfo") is not None, "GDAL's command-line tools (gdal-bin)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gis-clients")
    out = root / "out"
    utm_run(root, out)
    assert cli.main(["export", "--format", "gpkg", str(out)]) == 0
    return out


def _qgis(spec: dict, tmp_path) -> dict:
    _need(_has_qgis(), "Debian's QGIS Python bindings (python3-qgis)")
    spec = {"size": 400, "png_dir": str(tmp_path), **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [SYSTEM_PYTHON, os.path.join(HERE, "qgis_render.py"), "spec.json", "qgis.json"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads((tmp_path / "qgis.json").read_text()), "stderr": done.stderr}


def test_geopackage_copied_alone_opens_styled_in_qgis(qgis, run, tmp_path):
    import pyogrio

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "export" / "footprints.gpkg", alone)
    meta, table = pyogrio.read_arrow(str(alone / "footprints.gpkg"), layer="footprints")
    polygons = shapely.from_wkb(table.column(meta["geometry_name"] or "wkb_geometry").to_pylist())
    # A point well inside each building, off its outline.
    points = [polylabel(p.geoms[0] if hasattr(p, "geoms") else p, 0.1) for p in polygons]
    residential = table.column("is_residential").to_pylist()
    assert set(residential) == {True, False}
    got = _qgis(
        {
            "layers": [
                {
                    "name": "buildings",
                    "kind": "vector",
                    "path": str(alone / "footprints.gpkg"),
                    "layer": "footprints",
                    "points": [[p.x, p.y] for p in points],
                }
            ]
        },
        tmp_path,
    )
    layer = got["buildings"]
    # The file's own style was found and applied (main: 0 related styles, one flat symbol).
    assert layer["valid"] and layer["styles_in_database"] == 1, layer
    assert layer["renderer"] == "categorizedSymbol" and layer["features"] == len(polygons)
    # GDAL 3.6 under QGIS 3.22 opens it without a warning (main: GeoPackage 1.4, update_time).
    assert "Warning" not in got["stderr"], got["stderr"]
    for is_residential, (r, g, b, a) in zip(residential, layer["rendered"], strict=True):
        expected = RED if is_residential else BLUE
        assert a == pytest.approx(255 * OPACITY, abs=3)
        assert (r, g, b) == pytest.approx(expected, abs=3), (is_residential, (r, g, b))


def _extremes(path: str) -> tuple[list[list[float]], list[float]]:
    """The centres of a mask's highest and lowest pixels (map coordinates), and p there."""
    with rasterio.open(path) as src:
        band = src.read(1)
        cells = [
            np.unravel_index(band.argmax(), band.shape),
            np.unravel_index(band.argmin(), band.shape),
        ]
        points = [list(src.transform * (col + 0.5, row + 0.5)) for row, col in cells]
        return points, [band[cell] / 255.0 for cell in cells]


def test_mask_cog_and_mosaic_render_as_one_band_of_probabilities_in_qgis(qgis, run, tmp_path):
    cog = str(run / "masks" / "a.tif")
    points, probabilities = _extremes(cog)
    assert probabilities[0] > 0.9 and probabilities[1] < 0.1
    layers = [
        {"name": name, "kind": "raster", "path": path, "points": points}
        for name, path in (("cog", cog), ("mosaic", str(run / "masks" / "mosaic.vrt")))
    ]
    got = _qgis({"layers": layers}, tmp_path)
    for name in ("cog", "mosaic"):
        layer = got[name]
        # main: the mosaic read 255 where the COG reads 1.0, and was drawn as RGB (green).
        assert layer["valid"] and layer["renderer"] == "singlebandgray", (name, layer)
        assert layer["gray_band"] == 1
        assert layer["samples"] == pytest.approx(probabilities, abs=1e-6), name
        high, low = layer["rendered"]
        assert high[0] == high[1] == high[2] and low[0] == low[1] == low[2], (name, high, low)
        assert high[0] >= 200 and low[0] <= 55 and high[3] == low[3] == 255, (name, high, low)
    # The mosaic's mask (where tiles have data) is used as transparency, not drawn.
    assert got["mosaic"]["alpha_band"] == got["mosaic"]["band_count"] == 2


def _gdal(*args: str) -> subprocess.CompletedProcess:
    _need(shutil.which("gdalinfo") is not None, "GDAL's command-line tools (gdal-bin)")
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    return done


def test_gdal_command_line_tools_read_every_raster_and_the_geopackage(gdal, run, tmp_path):
    rasters = sorted(glob.glob(str(run / "masks" / "*.tif"))) + [str(run / "masks" / "mosaic.vrt")]
    for path in rasters:
        info = json.loads(_gdal("gdalinfo", "-stats", "-json", path).stdout)
        (band,) = info["bands"]  # demo-like masks: the probability band alone
        assert band["colorInterpretation"] == "Gray", path
        assert band["scale"] == pytest.approx(1 / 255) and band["offset"] == 0, path
        assert 0 <= band["minimum"] <= band["maximum"] <= 255, path
    # The mosaic unscaled reads the probabilities rasterio reads from the COGs.
    unscaled = str(tmp_path / "probability.tif")
    _gdal("gdal_translate", "-q", "-unscale", "-ot", "Float32", rasters[-1], unscaled)
    with rasterio.open(unscaled) as src:
        mosaic = src.read(1)
        for path in rasters[:-1]:
            with rasterio.open(path) as cog:
                window = src.window(*cog.bounds)
                part = mosaic[
                    round(window.row_off) : round(window.row_off) + cog.height,
                    round(window.col_off) : round(window.col_off) + cog.width,
                ]
                np.testing.assert_allclose(part, cog.read(1) / 255.0, atol=1e-6)
    assert 0.0 <= mosaic.min() and mosaic.max() <= 1.0 and mosaic.max() > 0.9
    gpkg = str(run / "export" / "footprints.gpkg")
    listing = _gdal("ogrinfo", "-ro", "-so", "-al", gpkg).stdout
    assert "Feature Count: 4" in listing and "Geometry Column = geometry" in listing


def test_mosaic_nodata_and_uncovered_areas_render_transparent_in_qgis(qgis, tmp_path):
    # Two masks of different heights: the mosaic has an area no tile covers,
    # and the first mask has nodata rows (its internal mask). QGIS draws both
    # transparent and the probabilities gray.
    from footprints.tiles import TileInfo
    from pipeline.stitching.cog import write_mask_cog
    from pipeline.stitching.vrt import MaskEntry, write_mosaics
    from pipeline.values import TileMask

    entries, rng = [], np.random.default_rng(7)
    for scene, height, x0 in (("a", 60, 500_000.0), ("b", 30, 500_040.0)):
        tile = TileInfo(
            path=f"/in/{scene}.tif",
            scene=scene,
            height=height,
            width=80,
            count=3,
            crs="EPSG:32615",
            transform=(0.5, 0.0, x0, 0.0, -0.5, 4_200_000.0),
            block_shape=(64, 64),
            masked=scene == "a",
            dtype="uint8",
        )
        valid = np.ones((height, 80), bool)
        if scene == "a":
            valid[:10] = False  # nodata along the top of a
        probability = rng.integers(100, 256, (height, 80)).astype(np.uint8)
        probability[~valid] = 0
        path = write_mask_cog(
            str(tmp_path / f"{scene}.tif"), TileMask(tile, probability, valid, {"inferred": 1})
        )
        entries.append(MaskEntry(path, tile.crs, tile.transform, 80, height, 1, scene == "a"))
    (mosaic,) = write_mosaics(entries, str(tmp_path), ["building_probability"])
    points = [
        [500_020.0, 4_199_998.0],  # a, nodata row
        [500_020.0, 4_199_980.0],  # a, valid
        [500_060.0, 4_199_975.0],  # below b: no tile
        [500_060.0, 4_199_995.0],  # b, valid
    ]
    got = _qgis(
        {"layers": [{"name": "mosaic", "kind": "raster", "path": mosaic, "points": points}]},
        tmp_path,
    )["mosaic"]
    assert got["renderer"] == "singlebandgray" and got["alpha_band"] == 2
    nodata, a, uncovered, b = got["rendered"]
    assert nodata[3] == 0 and uncovered[3] == 0, got["rendered"]
    assert a[3] == b[3] == 255 and a[0] == a[1] == a[2] and b[0] == b[1] == b[2]
