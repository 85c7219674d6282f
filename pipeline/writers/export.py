"""The classified footprints for desktop GIS: GeoPackage, GeoJSON or FlatGeobuf, styled.

Analysts open buildings in QGIS or ArcGIS, which read GeoPackage and
FlatGeobuf natively but not every GeoParquet. :func:`export_footprints`
reads a run's main table (``classified/`` when the run scored its
footprints, else ``footprints/``), drops the ``bbox`` covering (a struct,
which OGR formats cannot hold; they index geometry themselves) and writes
it with pyogrio (GDAL) from Arrow, keeping every column's type:

* ``gpkg``: GeoPackage 1.3 (read without warnings by GDAL 3.6 and QGIS
  3.22, which only partly support 1.4), one layer ``footprints`` in the
  table's CRS with its geometry column named ``geometry``, and the QGIS
  style in the GeoPackage's ``layer_styles`` table (the table QGIS itself
  writes with "Save as default": its ``f_geometry_column`` must name the
  layer's geometry column and ``update_time`` be ISO-8601, or QGIS finds no
  style and GDAL warns), so the file opens styled when it travels alone;
* ``fgb``: FlatGeobuf with its spatial index, in the table's CRS;
* ``geojson``: RFC 7946, so always lon/lat (EPSG:4326), as the RFC requires.

Beside each file, ``<name>.qml`` holds the same style for any format:
residential red, non-residential blue, unclassified grey
(:func:`style_qml`).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from xml.sax.saxutils import quoteattr

import pyarrow as pa

from footprints import styles
from footprints.errors import ConfigError

FORMATS = {"gpkg": "GPKG", "geojson": "GeoJSON", "fgb": "FlatGeobuf"}
LAYER = "footprints"
GEOMETRY = "geometry"
#: GeoPackage 1.3 (user_version 10300): GDAL 3.6 warns that 1.4 "may only be
#: partially supported", and Debian 12's QGIS 3.22 uses that GDAL.
GPKG_VERSION = "1.3"
TABLES = ("classified", "footprints")

#: (value of is_residential, label, fill colour r,g,b) of the style's categories: the
#: report's maps draw the same classes from the same definition (footprints.styles).
CATEGORIES = tuple((s.value, s.label, s.rgb) for s in styles.CLASS_STYLES)


def source_table(run_dir: str) -> str:
    """The table a run's export is made from: ``classified/`` if present, else ``footprints/``."""
    for name in TABLES:
        folder = os.path.join(run_dir, name)
        if os.path.isdir(folder) and any(f.endswith(".parquet") for f in os.listdir(folder)):
            return folder
    raise ConfigError(
        f"{run_dir!r} holds neither classified/ nor footprints/; pass the --output folder of "
        "a finished `footprints segment` run"
    )


def style_qml(field: str = "is_residential") -> str:
    """A QGIS categorized style (QML) on ``field``: residential vs non-residential.

    The categories match ``to_int(field)`` (1, 0), which reads the same for
    GeoPackage's boolean subtype, FlatGeobuf and GeoJSON booleans; the
    empty-valued category catches the rest (no classification: null or no
    such column).
    """
    symbols, categories = [], []
    for i, (value, label, rgb) in enumerate(CATEGORIES):
        categories.append(
            f'<category render="true" symbol="{i}" value={quoteattr(value)} '
            f"label={quoteattr(label)}/>"
        )
        symbols.append(
            f'<symbol type="fill" name="{i}" alpha="0.6" force_rhr="0" clip_to_extent="1">'
            f'<layer class="SimpleFill" enabled="1" pass="0" locked="0"><Option type="Map">'
            f'<Option name="color" value="{rgb},255" type="QString"/>'
            f'<Option name="outline_color" value="35,35,35,255" type="QString"/>'
            f'<Option name="outline_width" value="0.26" type="QString"/>'
            f'<Option name="style" value="solid" type="QString"/>'
            f"</Option></layer></symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.34" styleCategories="Symbology">\n'
        f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(_expression(field))} '
        'enableorderby="0" '
        'forceraster="0" symbollevels="0">\n'
        f"<categories>{''.join(categories)}</categories>\n"
        f"<symbols>{''.join(symbols)}</symbols>\n"
        "</renderer-v2>\n</qgis>\n"
    )


def _expression(field: str) -> str:
    # A QGIS expression on the field: its name double-quoted, quotes doubled.
    return 'to_int("' + field.replace('"', '""') + '")'


def _add_layer_style(path: str, qml: str, field: str) -> None:
    # The layer_styles table as QGIS creates it, registered as an attributes
    # table so the GeoPackage stays valid for other readers; the geometry
    # column is read back from the file, as QGIS matches styles on it.
    with sqlite3.connect(path) as db:
        ((geometry_column,),) = db.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (LAYER,)
        ).fetchall()
        db.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256), "
            "f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT, "
            "useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), "
            "update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        db.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
            "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, "
            "description, update_time) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, "
            "strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            (LAYER, geometry_column, f"{LAYER} by {field}", qml, f"{field}: residential vs not"),
        )
        db.execute(
            "INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier) "
            "VALUES ('layer_styles', 'attributes', 'layer_styles')"
        )


def export_footprints(run_dir: str, fmt: str, output: str | None = None) -> dict[str, Any]:
    """Writes a run's footprints as ``fmt`` (``gpkg``, ``geojson``, ``fgb``) with a style.

    Args:
        run_dir: The run's ``--output`` folder.
        fmt: One of :data:`FORMATS`.
        output: The file to write (default: ``RUN_DIR/export/footprints.<fmt>``).

    Returns:
        ``{"path", "style", "features", "crs", "table"}``.

    """
    import json

    import pyarrow.parquet as pq
    import pyogrio

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} must be one of {sorted(FORMATS)}")
    folder = source_table(run_dir)
    table = pq.read_table(folder)
    geo = json.loads(table.schema.metadata[b"geo"])
    crs_json = geo["columns"]["geometry"].get("crs")
    import pyproj

    crs = pyproj.CRS.from_json_dict(crs_json).to_string() if crs_json else "OGC:CRS84"
    table = table.drop_columns([c for c in ("bbox",) if c in table.column_names])
    if fmt == "geojson" and pyproj.CRS.from_user_input(crs).to_epsg() != 4326:
        table = _to_lonlat(table, crs)
        crs = "EPSG:4326"
    output = output or os.path.join(run_dir, "export", f"{LAYER}.{fmt}")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if os.path.exists(output):
        os.remove(output)  # a rerun replaces; GDAL would append or refuse
    options = {"RFC7946": "YES"} if fmt == "geojson" else None
    if fmt == "gpkg":
        options = {"GEOMETRY_NAME": GEOMETRY}
    import shapely

    types = set(
        shapely.get_type_id(
            shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        ).tolist()
    )
    # One declared type (QGIS then knows the layer's type up front): Polygon,
    # or MultiPolygon when a building was split, the rest promoted to it.
    kind = "Polygon" if types <= {3} else "MultiPolygon"
    if kind == "MultiPolygon":
        table = _promote_to_multi(table)
    pyogrio.write_arrow(
        table.replace_schema_metadata(None),
        output,
        layer=LAYER,
        driver=FORMATS[fmt],
        geometry_name="geometry",
        geometry_type=kind,
        crs=crs,
        layer_options=options,
        dataset_options={"VERSION": GPKG_VERSION} if fmt == "gpkg" else None,
    )
    field = "is_residential"
    qml = style_qml(field)
    style = os.path.splitext(output)[0] + ".qml"
    with open(style, "w", encoding="utf-8") as f:
        f.write(qml)
    if fmt == "gpkg":
        _add_layer_style(output, qml, field)
    return {"path": output, "style": style, "features": table.num_rows, "crs": crs, "table": folder}


def _promote_to_multi(table: pa.Table) -> pa.Table:
    import shapely

    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    multi = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geoms]
    index = table.schema.get_field_index("geometry")
    return table.set_column(
        index, table.schema.field(index), pa.array(shapely.to_wkb(multi).tolist(), pa.binary())
    )


def _to_lonlat(table: pa.Table, crs: str) -> pa.Table:
    import shapely

    from pipeline.writers import geo

    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    moved = geo.orient_ccw(geo.to_lonlat(geoms, crs))
    index = table.schema.get_field_index("geometry")
    return table.set_column(
        index, table.schema.field(index), pa.array(shapely.to_wkb(moved).tolist(), pa.binary())
    )
