"""Writing the outputs: GeoTIFFs, footprints in four formats, the manifest.

Every file is written under a temporary name (``.sample-area-tmp-*``) and
moved into place with :func:`os.replace`, so a killed run never leaves a
half-written file under a final name. :func:`_remove_stale` clears what an
earlier run into the same folder wrote and this configuration does not make
(tiles outside the grid, footprints in another format, leftover temporary
files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio.raw
import pyproj
import rasterio
import shapely
from rasterio.transform import Affine

from footprints_app.sample_area.config import FOOTPRINT_FORMATS, SampleAreaConfig

if TYPE_CHECKING:  # reallike imports this module
    from footprints_app.sample_area.reallike import RealLikeConfig

_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_TILE_NAME = re.compile(r"^tile_r(\d+)_c(\d+)\.tif$")
_TMP_PREFIX = ".sample-area-tmp-"
#: When the synthetic imagery was "flown": the TIFF DateTime tag of every
#: tile, as real orthophotos carry their acquisition date, so the demo's
#: footprints have an imagery_date and its STAC items an imagery datetime.
ACQUIRED = "2024:06:15 10:30:00"


def _tmp_path(final: str) -> str:
    folder, name = os.path.split(final)
    return os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{name}")


def _write_geotiff(
    path: str,
    data: np.ndarray,
    config: SampleAreaConfig | RealLikeConfig,
    transform: Affine,
    descriptions: Sequence[str],
    photometric: str | None,
    nodata: float | None = None,
) -> None:
    # ``config`` is any config with ``crs``, ``block_size`` and ``seed``
    # (SampleAreaConfig or RealLikeConfig).
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=config.crs,
        transform=transform,
        tiled=True,
        blockxsize=config.block_size,
        blockysize=config.block_size,
        compress="deflate",
        predictor=2,
    )
    if photometric:
        profile["photometric"] = photometric
    if nodata is not None:
        profile["nodata"] = nodata
    tmp = _tmp_path(path)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = tuple(descriptions)
            dst.update_tags(
                generator="footprints.sample_area", seed=str(config.seed), TIFFTAG_DATETIME=ACQUIRED
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _reproject(geoms: np.ndarray, source: str, target: str | None) -> np.ndarray:
    if target is None:
        return geoms
    transformer = pyproj.Transformer.from_crs(source, target, always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def _write_footprints(
    root: str, geoms: np.ndarray, attrs: dict[str, list[str]], crs: str, fmt: str
) -> str:
    driver, ext = FOOTPRINT_FORMATS[fmt]
    final = os.path.join(root, "footprints" + ext)
    staging = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root)
    try:
        target = os.path.join(staging, "footprints" + ext)
        if driver is None:
            _write_geoparquet(target, geoms, attrs, crs)
        else:
            pyogrio.raw.write(
                target,
                shapely.to_wkb(geoms),
                [np.array(v, dtype=object) for v in attrs.values()],
                list(attrs),
                layer="footprints",
                driver=driver,
                geometry_type="Polygon",
                crs=crs,
                **({"encoding": "UTF-8"} if fmt == "shp" else {}),
            )
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(root, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_geoparquet(path: str, geoms: np.ndarray, attrs: dict[str, list[str]], crs: str) -> None:
    bbox = [float(v) for v in shapely.total_bounds(geoms)] if len(geoms) else []
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": pyproj.CRS.from_user_input(crs).to_json_dict(),
                **({"bbox": bbox} if bbox else {}),
            }
        },
    }
    columns = {name: pa.array(values, pa.string()) for name, values in attrs.items()}
    columns["geometry"] = pa.array(list(shapely.to_wkb(geoms)), pa.binary())
    table = pa.table(columns).replace_schema_metadata({"geo": json.dumps(geo)})
    pq.write_table(table, path)


def _write_json(path: str, payload: dict) -> None:
    tmp = _tmp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _remove_stale(root: str, tiles: set[str], footprints: str) -> None:
    """Removes outputs of an earlier run that this configuration does not make."""
    for sub in ("tiles", "masks"):
        folder = os.path.join(root, sub)
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if (_TILE_NAME.match(name) and name not in tiles) or name.startswith(_TMP_PREFIX):
                os.remove(path)
    keep = {os.path.basename(footprints)}
    if footprints.endswith(".shp"):
        keep |= {"footprints" + ext for ext in _SHAPEFILE_PARTS}
    for ext in {e for _, e in FOOTPRINT_FORMATS.values()} | set(_SHAPEFILE_PARTS):
        name = "footprints" + ext
        if name not in keep and os.path.exists(os.path.join(root, name)):
            os.remove(os.path.join(root, name))
    for name in os.listdir(root):
        if name.startswith(_TMP_PREFIX):
            path = os.path.join(root, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
