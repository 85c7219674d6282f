"""Footprint polygons from vector files, read in parallel ranges.

A statewide footprint layer holds millions of polygons, so the driver never
reads it: it asks GDAL (through pyogrio) or Parquet for the feature count,
plans ranges of ``RANGE_SIZE`` features, and the workers each read one range.
GeoPackage, GeoJSON and Shapefile go through pyogrio; GeoParquet through
pyarrow (row groups are read lazily and sliced), because pyogrio's bundled
GDAL has no Parquet driver.

Each feature becomes a :class:`Footprint` (id, WKB in the file's CRS, class
and region attributes) or, if its geometry is missing, invalid or not a
polygon, a :class:`footprints.contracts.ErrorRecord`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import shapely

from footprints.contracts import ErrorRecord
from footprints.errors import InputError, Reason
from footprints.tiles import crs_text

RANGE_SIZE = 2000
PARQUET_SUFFIXES = (".parquet", ".geoparquet")


@dataclasses.dataclass(frozen=True)
class Footprint:
    """One footprint polygon as read from a vector file.

    Attributes:
        footprint_id: Value of the id field, or ``<file stem>-<feature index>``.
        wkb: Polygon or MultiPolygon, WKB, in ``crs``.
        crs: CRS of the vector file (``EPSG:4326``, or WKT if no EPSG code).
        source: The vector file.
        index: Feature index in the file.
        klass: Value of the class attribute, if one was asked for.
        region: Value of the region attribute, if one was asked for.
    """

    footprint_id: str
    wkb: bytes
    crs: str
    source: str
    index: int
    klass: str | None = None
    region: str | None = None


@dataclasses.dataclass(frozen=True)
class VectorInfo:
    """What the driver learns about a vector file before the pipeline starts."""

    path: str
    crs: str
    features: int
    fields: tuple[str, ...]


def _is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


def _parquet_geo(path: str) -> tuple[str, str]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if b"geo" not in meta:
        raise InputError(
            f"{path!r} has no GeoParquet 'geo' metadata; write it with geopandas "
            "(GeoDataFrame.to_parquet) or convert it with ogr2ogr -f Parquet"
        )
    geo = json.loads(meta[b"geo"])
    column = geo.get("primary_column", "geometry")
    crs = geo["columns"][column].get("crs", "OGC:CRS84")
    return column, crs_text(crs)


def _exists(path: str) -> bool:
    # gs:// and other URLs through Beam's FileSystems; GDAL reads them (/vsigs/, ...).
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        found: bool = FileSystems.exists(path)
        return found
    return os.path.exists(path)


def inspect_vector(
    path: str, id_field: str | None, class_field: str | None, region_field: str | None
) -> VectorInfo:
    """Reads a vector file's CRS, feature count and fields; checks the asked fields.

    Raises:
        InputError: the file cannot be opened, has no CRS, or lacks a field.
    """
    if not _exists(path):
        raise InputError(f"footprint file {path!r} does not exist")
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            _, crs = _parquet_geo(path)
            meta = pq.read_metadata(path)
            fields = tuple(n for n in meta.schema.names)
            features = meta.num_rows
        else:
            import pyogrio

            info = pyogrio.read_info(path)
            if info["crs"] is None:
                raise InputError(
                    f"footprint file {path!r} has no CRS; set one, e.g. "
                    "ogr2ogr -a_srs EPSG:4326 fixed.gpkg input.gpkg"
                )
            crs = crs_text(info["crs"])
            fields = tuple(info["fields"])
            features = int(info["features"])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read footprint file {path!r}: {exc}") from exc
    for flag, name in (
        ("--id-field", id_field),
        ("--class-field", class_field),
        ("--region-field", region_field),
    ):
        if name and name not in fields:
            raise InputError(
                f"{flag} {name!r} is not a field of {path!r}; its fields are {list(fields)}"
            )
    return VectorInfo(path=path, crs=crs, features=features, fields=fields)


def plan_ranges(info: VectorInfo, size: int = RANGE_SIZE) -> list[tuple[str, int, int]]:
    """Splits a file into ``(path, start, count)`` ranges of at most ``size`` features.

    Example: 4500 features, size 2000 -> starts 0, 2000, 4000 with counts
    2000, 2000, 500.
    """
    return [
        (info.path, start, min(size, info.features - start))
        for start in range(0, info.features, size)
    ]


def read_range(
    path: str, start: int, count: int, columns: list[str]
) -> tuple[list[bytes | None], dict[str, list[Any]]]:
    """(wkb list, {field: values}) for features ``start .. start+count``."""
    if _is_parquet(path):
        import pyarrow.parquet as pq

        column, _ = _parquet_geo(path)
        table = pq.read_table(path, columns=[column, *columns]).slice(start, count)
        return (
            table.column(column).to_pylist(),
            {name: table.column(name).to_pylist() for name in columns},
        )
    import pyogrio.raw

    meta, _, geometry, field_data = pyogrio.raw.read(
        path, columns=columns, skip_features=start, max_features=count
    )
    # pyogrio returns fields in the file's order, not the order asked for.
    names = list(meta["fields"])
    return list(geometry), {name: list(field_data[names.index(name)]) for name in columns}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from numeric fields
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def check_polygon(wkb: bytes | None) -> tuple[shapely.Geometry | None, Reason | None, str]:
    """Parses and checks a footprint geometry.

    Returns:
        ``(geometry, None, "")`` when usable, else ``(None, reason, message)``.
    """
    if wkb is None:
        return None, Reason.MISSING_GEOMETRY, "the feature has no geometry"
    try:
        geom = shapely.from_wkb(wkb)
    except Exception as exc:  # shapely raises GEOSException on bad WKB
        return None, Reason.INVALID_GEOMETRY, f"unreadable geometry: {exc}"
    if geom.is_empty:
        return None, Reason.MISSING_GEOMETRY, "the geometry is empty"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return (
            None,
            Reason.NOT_A_POLYGON,
            (f"footprints must be polygons, this is a {geom.geom_type}"),
        )
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        return (
            None,
            Reason.INVALID_GEOMETRY,
            (
                f"invalid polygon ({reason}); repair it, e.g. with shapely.make_valid or "
                "ogr2ogr -makevalid"
            ),
        )
    return geom, None, ""


def read_footprints(
    path: str,
    start: int,
    count: int,
    crs: str,
    id_field: str | None,
    class_field: str | None,
    region_field: str | None,
) -> Iterator[Footprint | ErrorRecord]:
    """Reads one range of a vector file; yields footprints and dead letters."""
    columns = [c for c in dict.fromkeys((id_field, class_field, region_field)) if c]
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        geometries, fields = read_range(path, start, count, columns)
    except Exception as exc:
        for index in range(start, start + count):
            yield ErrorRecord(
                path,
                str(index),
                "read_vector",
                Reason.UNREADABLE_FEATURE,
                f"cannot read features {start}..{start + count}: {exc}",
            )
        return
    for offset, wkb in enumerate(geometries):
        index = start + offset
        fid = _text(fields[id_field][offset]) if id_field else None
        fid = fid or f"{stem}-{index}"
        geom, error, message = check_polygon(wkb)
        if geom is None:
            assert error is not None, "check_polygon gives a reason with every None"
            yield ErrorRecord(path, fid, "read_vector", error, message)
            continue
        yield Footprint(
            footprint_id=fid,
            wkb=shapely.to_wkb(geom),
            crs=crs,
            source=path,
            index=index,
            klass=_text(fields[class_field][offset]) if class_field else None,
            region=_text(fields[region_field][offset]) if region_field else None,
        )
