"""The rows of ``footprints/`` and ``classified/``: a building with its provenance.

:func:`pipeline.polygonize.finish` gives each building its polygon, area
and mask confidence; this module makes the row a data team can join on
without reading our code:

* a stable id (:func:`pipeline.writers.geo.stable_ids`) instead of the
  polygonizer's ``<tile>-<n>``, which shifts whenever a building before it
  appears or goes;
* ``centroid_lon``/``centroid_lat`` (EPSG:4326) and a counterclockwise
  exterior ring, whatever ``--output-crs`` the geometry is in;
* provenance on every row: ``segmenter_model_id``, ``run_id``, the source
  ``tile`` (for a building merged across tile edges, the tile holding most
  of its pixels) and ``imagery_date`` (``--imagery-date``, else the tile's
  TIFF ``DateTime`` tag, else null).

With ``--classifier``, :func:`classified_row` joins a footprint with its
scores row into one ``classified/`` row (:data:`CLASSIFIED_SCHEMA`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from footprints import contracts
from footprints.errors import ConfigError
from pipeline.writers import geo

#: The classification columns ``classified/`` takes from a ``scores/`` row.
SCORE_COLUMNS = ("region", "score", "percentile", "is_residential", "threshold", "target_fraction")


def parse_imagery_date(text: str) -> datetime.date:
    """An ``--imagery-date`` (ISO ``YYYY-MM-DD``); raises ConfigError with the fix."""
    try:
        return datetime.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--imagery-date {text!r} is not a date; write it as YYYY-MM-DD, for example 2024-06-30"
        ) from None


#: Where a tile's acquisition date is read, first found first: the TIFF
#: ``DateTime`` tag, then acquisition metadata (the default domain, and the
#: ``IMAGERY`` domain GDAL fills from satellite vendors' metadata files).
DATE_TAGS = (
    ("", "TIFFTAG_DATETIME"),
    ("", "ACQUISITIONDATE"),
    ("", "ACQUISITION_DATE"),
    ("IMAGERY", "ACQUISITIONDATETIME"),
)


def parse_tag_date(text: str) -> datetime.date | None:
    """The date at the start of a metadata value, or None.

    Example: ``"2024:06:30 10:15:00"`` (TIFF), ``"2024-06-30T10:15:00Z"``
    (ISO) and ``"20240630"`` -> ``date(2024, 6, 30)``; ``"June"`` -> None.
    """
    text = text.strip()
    for size, layout in ((10, "%Y:%m:%d"), (10, "%Y-%m-%d"), (8, "%Y%m%d")):
        try:
            return datetime.datetime.strptime(text[:size], layout).date()
        except ValueError:
            continue
    return None  # absent or in no known layout: unknown, not a guess


def tiff_date(path: str) -> datetime.date | None:
    """A GeoTIFF's acquisition date from its metadata (:data:`DATE_TAGS`), or None."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            for domain, key in DATE_TAGS:
                date = parse_tag_date(src.tags(ns=domain or None).get(key, ""))
                if date is not None:
                    return date
    except rasterio.errors.RasterioError:
        return None
    return None


def footprint_row(
    row: Mapping[str, Any],
    crs: str | None,
    model_id: str,
    run_id: str,
    dates: Mapping[str, datetime.date | None],
) -> dict[str, Any]:
    """The ``footprints/`` row (:data:`FOOTPRINTS_SCHEMA`) of a polygonized building.

    Args:
        row: A row of :func:`pipeline.polygonize.finish` (geometry WKB in ``crs``).
        crs: The CRS of the table's geometry.
        model_id: The segmenter's id.
        run_id: This run's id.
        dates: Tile scene -> imagery date.

    """
    (out,) = footprint_rows([row], crs, model_id, run_id, dates)
    return out


def footprint_rows(
    rows: Sequence[Mapping[str, Any]],
    crs: str | None,
    model_id: str,
    run_id: str,
    dates: Mapping[str, datetime.date | None],
) -> list[dict[str, Any]]:
    """:func:`footprint_row` of each of ``rows``, computed for all of them at once.

    The geometry work (parse, orient, centroids, reprojection, ids, WKB) is
    one vectorized call per step for the whole list, not one per row: the
    pipeline hands rows over in batches (``Provenance``).
    """
    import shapely

    if not rows:
        return []
    geoms = geo.orient_ccw(shapely.from_wkb([row["geometry"] for row in rows]))
    lon, lat = geo.lonlat_centroids(geoms, crs)
    ids = geo.stable_ids(geoms, crs)
    wkb = shapely.to_wkb(geoms)
    return [
        {
            **row,
            "footprint_id": ids[i],
            "centroid_lon": float(lon[i]),
            "centroid_lat": float(lat[i]),
            "segmenter_model_id": model_id,
            "run_id": run_id,
            "imagery_date": dates.get(row["tile"]),
            "geometry": wkb[i],
        }
        for i, row in enumerate(rows)
    ]


def classified_row(
    item: tuple[str, Mapping[str, Iterable[dict[str, Any]]]], classifier_id: str
) -> dict[str, Any]:
    """One ``classified/`` row from a footprint and its scores row (if it was scored).

    ``item`` is a CoGroupByKey result ``(id, {"footprint": [row], "score": [row]})``.
    """
    footprint_id, joined = item
    (footprint,) = list(joined["footprint"])
    scores = list(joined["score"])
    out = {name: footprint[name] for name in contracts.CLASSIFIED_SCHEMA.names if name in footprint}
    score = scores[0] if scores else {}
    out.update({name: score.get(name) for name in SCORE_COLUMNS})
    out["classifier_model_id"] = classifier_id if scores else None
    return out
