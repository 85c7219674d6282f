"""Opens and renders outputs in QGIS: run by Debian's ``/usr/bin/python3``, not by pytest.

``tests/test_gis_clients.py`` runs ``/usr/bin/python3 tests/qgis_render.py SPEC OUT``
(QGIS's Python bindings are Debian's ``python3-qgis``, built for the system
Python, not our virtual environment). SPEC is a JSON file::

    {"size": 400, "png_dir": "...", "layers": [
        {"name": "gpkg", "kind": "vector", "path": "x.gpkg", "layer": "footprints",
         "points": [[x, y], ...]},
        {"name": "mosaic", "kind": "raster", "path": "m.vrt", "points": [[x, y], ...]}]}

Each layer is opened as a user opens it (the default style a GeoPackage
holds is applied on load, as QGIS does), rendered alone to ``png_dir/NAME.png``
over a transparent background with ``QgsMapRendererParallelJob``, and OUT
gets, per layer: whether it is valid, its renderer's type, the related
styles QGIS finds in the file, the categories (vector) or bands, alpha band
and sampled values (raster), and the rendered RGBA at each point (map
coordinates in the layer's CRS). The test checks the colours.
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    Qgis,
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsPointXY,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def describe(layer, spec):
    """What QGIS made of the layer: renderer, styles, categories or bands."""
    info = {"valid": layer.isValid(), "crs": layer.crs().authid()}
    if not layer.isValid():
        return info
    renderer = layer.renderer()
    info["renderer"] = renderer.type()
    if spec["kind"] == "vector":
        info["styles_in_database"] = layer.listStylesInDatabase()[0]
        info["features"] = layer.featureCount()
        if renderer.type() == "categorizedSymbol":
            info["attribute"] = renderer.classAttribute()
            info["categories"] = [
                {
                    "value": str(c.value()),
                    "label": c.label(),
                    "color": c.symbol().color().name(),
                    "opacity": c.symbol().opacity(),
                }
                for c in renderer.categories()
            ]
    else:
        provider = layer.dataProvider()
        info["band_count"] = layer.bandCount()
        info["alpha_band"] = renderer.alphaBand()
        info["gray_band"] = renderer.grayBand() if hasattr(renderer, "grayBand") else None
        info["samples"] = [
            provider.sample(QgsPointXY(x, y), 1)[0] for x, y in spec.get("points", [])
        ]
    return info


def render(layer, spec, size, png_dir):
    """Renders the layer alone; returns the RGBA at each point."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(os.path.join(png_dir, f"{spec['name']}.png"), "PNG")
    to_pixel = settings.mapToPixel()
    colours = []
    for x, y in spec.get("points", []):
        p = to_pixel.transform(QgsPointXY(x, y))
        c = image.pixelColor(int(p.x()), int(p.y()))
        colours.append([c.red(), c.green(), c.blue(), c.alpha()])
    return colours


def open_all(spec: dict) -> dict:
    """Opens, describes and renders every layer of the spec; returns the answers."""
    out = {"qgis": Qgis.QGIS_VERSION}
    for item in spec["layers"]:
        if item["kind"] == "vector":
            layer = QgsVectorLayer(f"{item['path']}|layername={item['layer']}", item["name"], "ogr")
        else:
            layer = QgsRasterLayer(item["path"], item["name"], "gdal")
        info = describe(layer, item)
        if layer.isValid():
            info["rendered"] = render(layer, item, spec.get("size", 400), spec["png_dir"])
        out[item["name"]] = info
    return out


def main(spec_path: str, out_path: str) -> None:
    """Writes :func:`open_all`'s answers as JSON to ``out_path``."""
    spec = json.load(open(spec_path, encoding="utf-8"))
    app = QgsApplication([], False)
    app.setPrefixPath("/usr", True)
    app.initQgis()
    # The layers are gone (out of open_all's scope) before QGIS exits: a layer
    # freed after exitQgis() crashes the interpreter on its way out.
    out = open_all(spec)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
