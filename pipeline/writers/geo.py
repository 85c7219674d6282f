"""What every geometry table carries for the people who load it elsewhere.

Data teams load our tables into BigQuery, DuckDB, geopandas and QGIS without
reading this code, so every row of a geometry table is made self-describing
here, in plain vectorized functions (shapely and pyproj over whole batches):

* **Lon/lat**: ``centroid_lon``/``centroid_lat`` in EPSG:4326, whatever CRS
  the geometry column is in (:func:`lonlat_centroids`). The centroid is
  taken in the source CRS (planar and metric for the UTM or state-plane
  tiles we read), then moved, so it is the building's centre, not a
  lon/lat artefact.
* **Orientation**: exterior rings counterclockwise, holes clockwise
  (:func:`orient_ccw`), as GeoParquet recommends and BigQuery's oriented
  loads read; the files declare ``"orientation": "counterclockwise"``.
* **Valid on the sphere**: in lon/lat, no polygon may span the antimeridian
  and no edge may be longer than 1 km, so a planar and a geodesic reading
  do not differ visibly; BigQuery applies these rules when
  it turns the column into a GEOGRAPHY, and the tests check them
  (``sphere_problems`` in ``tests/oracles.py``).
* **Stable ids** (:func:`stable_ids`): ``<quadkey>-<hash>``: the level-20
  Bing-maps quadkey of the centroid (a ~38 m cell, so ids sort and prefix
  by place) and 8 hex digits of a SHA-1 of the polygon's lon/lat vertices
  rounded to 1e-7 degrees (~1 cm). A rerun of the same area with the same
  model and settings gives the same polygons, so the same ids; a building
  whose outline changes gets a new id, one whose neighbours change keeps
  its own (unlike ``<tile>-<n>``, which shifts with every building before
  it).
* **Spatial order** (:func:`hilbert_keys`): rows are written along a
  Hilbert curve over the table's extent, so each row group covers a compact
  area and readers skip row groups by their ``bbox`` statistics.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import pyproj

#: Shapely geometries (shapely has no type stubs, so each is Any): a list, or an
#: object array as shapely's vectorized functions return.
Geometries: TypeAlias = Sequence[Any] | np.ndarray

WGS84 = "EPSG:4326"
QUADKEY_LEVEL = 20
HILBERT_ORDER = 16


@functools.lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A cached pyproj transformer in x/y (lon/lat) order."""
    import pyproj

    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def check_crs(crs: str, flag: str = "--output-crs") -> str:
    """Raises ConfigError unless pyproj understands ``crs``; returns it."""
    import pyproj

    from footprints.errors import ConfigError

    try:
        pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise ConfigError(
            f"{flag} {crs!r} is not a CRS ({exc}); use e.g. EPSG:4326 "
            "(lon/lat, what BigQuery needs) or the tiles' EPSG code"
        ) from None
    return crs


def is_geographic(crs: str | None) -> bool:
    """Whether ``crs`` is a lon/lat CRS (None reads as OGC:CRS84, as in GeoParquet)."""
    import pyproj

    return crs is None or pyproj.CRS.from_user_input(crs).is_geographic


def lonlat_centroids(geoms: Geometries, crs: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Centroids of shapely geometries in ``crs``, as EPSG:4326 lon and lat arrays.

    Missing geometries (None) give NaN.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    lon = np.full(len(geoms), np.nan)
    lat = np.full(len(geoms), np.nan)
    present = ~shapely.is_missing(geoms) if len(geoms) else np.zeros(0, bool)
    if not present.any():
        return lon, lat
    xy = shapely.get_coordinates(shapely.centroid(geoms[present]))
    if crs is not None and crs != WGS84:
        x, y = transformer(crs, WGS84).transform(xy[:, 0], xy[:, 1])
        xy = np.column_stack([x, y])
    lon[present], lat[present] = xy[:, 0], xy[:, 1]
    return lon, lat


def orient_ccw(geoms: Geometries) -> np.ndarray:
    """Geometries with counterclockwise exterior rings and clockwise holes."""
    import shapely

    oriented: np.ndarray = shapely.orient_polygons(
        np.asarray(geoms, dtype=object), exterior_cw=False
    )
    return oriented


def to_lonlat(geoms: Geometries, crs: str | None) -> np.ndarray:
    """Geometries moved from ``crs`` to EPSG:4326 (x = lon, y = lat)."""
    import shapely

    if crs is None or crs == WGS84:
        return np.asarray(geoms, dtype=object)
    t = transformer(crs, WGS84)
    moved: np.ndarray = shapely.transform(
        np.asarray(geoms, dtype=object), lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
    )
    return moved


def quadkeys(lon: np.ndarray, lat: np.ndarray, level: int = QUADKEY_LEVEL) -> list[str]:
    """Bing-maps quadkeys (Web Mercator tiles) of lon/lat points at ``level``."""
    lat = np.clip(lat, -85.05112878, 85.05112878)
    n = 1 << level
    x = np.clip(((lon + 180.0) / 360.0 * n).astype(np.int64), 0, n - 1)
    s = np.sin(np.radians(lat))
    y = np.clip(((0.5 - np.log((1 + s) / (1 - s)) / (4 * np.pi)) * n).astype(np.int64), 0, n - 1)
    digits = np.zeros((len(x), level), dtype=np.int64)
    for i in range(level):
        bit = level - 1 - i
        digits[:, i] = ((x >> bit) & 1) + 2 * ((y >> bit) & 1)
    return ["".join(map(str, row)) for row in digits.tolist()]


def stable_ids(geoms: Geometries, crs: str | None) -> list[str]:
    """``<quadkey>-<sha1[:8]>`` of each polygon, from its lon/lat geometry (see the module)."""
    import shapely

    lonlat = to_lonlat(geoms, crs)
    lon, lat = lonlat_centroids(lonlat, WGS84)
    keys = quadkeys(lon, lat)
    out = []
    for key, geom in zip(keys, lonlat, strict=True):
        coords = np.round(shapely.get_coordinates(geom), 7) + 0.0  # no "-0.0"
        out.append(f"{key}-{hashlib.sha1(coords.tobytes()).hexdigest()[:8]}")
    return out


def hilbert_keys(
    x: np.ndarray, y: np.ndarray, extent: Sequence[float], order: int = HILBERT_ORDER
) -> np.ndarray:
    """Distances along a Hilbert curve of ``order`` over ``extent`` (xmin, ymin, xmax, ymax).

    The classic xy-to-d walk, vectorized: at each level the quadrant adds
    ``s * s * ((3 * rx) ^ ry)`` and the sub-square is rotated so the curve
    stays continuous. NaN points sort last.
    """
    n = 1 << order
    xmin, ymin, xmax, ymax = extent
    span_x, span_y = max(xmax - xmin, 1e-12), max(ymax - ymin, 1e-12)
    missing = ~(np.isfinite(x) & np.isfinite(y))
    xi = np.clip(
        ((np.nan_to_num(x, nan=xmin) - xmin) / span_x * (n - 1)).astype(np.int64), 0, n - 1
    )
    yi = np.clip(
        ((np.nan_to_num(y, nan=ymin) - ymin) / span_y * (n - 1)).astype(np.int64), 0, n - 1
    )
    d = np.zeros(len(xi), dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = ((xi & s) > 0).astype(np.int64)
        ry = ((yi & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        flip = (ry == 0) & (rx == 1)
        xi = np.where(flip, s - 1 - xi, xi)
        yi = np.where(flip, s - 1 - yi, yi)
        swap = ry == 0
        xi, yi = np.where(swap, yi, xi), np.where(swap, xi, yi)
        s >>= 1
    d[missing] = np.iinfo(np.int64).max
    return d
