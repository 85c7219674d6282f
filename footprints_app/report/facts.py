"""The headline's facts, computed from what the runs wrote: plain values, no HTML.

What an analyst asks first, in order: where is it (the area's name and its
extent in lon/lat), how big, when was the imagery taken, how many
buildings, and how many of them residential in each region. A segment run
answers from its masks (the imagery's footprint on the ground) and its
tables; a score run from its scored footprints alone.

Example: two UTM tiles of 512 px at 0.5 m -> ``extent`` their union's
lon/lat bounds, ``area_km2`` 0.131 (2 x 256 m x 256 m, measured on the
WGS 84 ellipsoid).
"""

from __future__ import annotations

import dataclasses
import os

from footprints_app.report import discovery


@dataclasses.dataclass(frozen=True)
class Region:
    """One region's residential share."""

    name: str
    footprints: int
    residential: int
    target: float | None

    @property
    def share(self) -> float | None:
        """Achieved residential share (None: no footprint)."""
        return self.residential / self.footprints if self.footprints else None


@dataclasses.dataclass(frozen=True)
class Headline:
    """What the first screen says."""

    area: str
    buildings: int | None
    buildings_what: str
    extent: tuple[float, float, float, float] | None = None
    area_km2: float | None = None
    imagery_dates: tuple[str, str] | None = None
    regions: tuple[Region, ...] = ()

    @property
    def residential(self) -> tuple[int, int] | None:
        """``(residential, footprints)`` over all regions (None: nothing classified)."""
        if not self.regions:
            return None
        return sum(r.residential for r in self.regions), sum(r.footprints for r in self.regions)

    def imagery_date_text(self) -> str:
        """``2024-06-30``, ``2024-06-01 to 2024-06-30`` or why it is unknown."""
        if not self.imagery_dates:
            return "not recorded (the tiles carry no date; segment --imagery-date sets one)"
        first, last = self.imagery_dates
        return first if first == last else f"{first} to {last}"


def extent_text(extent: tuple[float, float, float, float]) -> str:
    """``(west, south, east, north)`` as text: ``93.2155°W to 93.2101°W, 44.95°N to ...``."""
    from footprints_app.report.maps import degrees

    west, south, east, north = extent
    return (
        f"{degrees(west, 'lon', 4)} to {degrees(east, 'lon', 4)}, "
        f"{degrees(south, 'lat', 4)} to {degrees(north, 'lat', 4)}"
    )


def raster_extent(paths: list[str]) -> tuple[tuple[float, float, float, float], float] | None:
    """Lon/lat bounds of the rasters' union and its area in km² (geodesic), or None."""
    import pyproj
    import rasterio
    import shapely
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape

    shapes = []
    for path in paths:
        with rasterio.open(path) as src:
            if src.crs is None:
                continue
            # Densified edges: a UTM tile's sides are curves in lon/lat.
            box = shapely.segmentize(shapely.box(*src.bounds), max(src.res) * 16)
            shapes.append(shape(transform_geom(src.crs, "EPSG:4326", mapping(box))))
    if not shapes:
        return None
    union = shapely.union_all(shapes)
    area, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(union)
    return tuple(float(v) for v in union.bounds), abs(area) / 1e6  # type: ignore[return-value]


def score_parts(run_dir: str) -> tuple[dict, dict, str | None]:
    """``(regions, totals, classifier model)`` of a score run or a ``segment --classifier`` run."""
    summary = discovery.summary(run_dir)
    counts = summary.get("counts") or {}
    if "regions" not in summary and isinstance(summary.get("scores"), dict):
        # segment --classifier: its chips are the records scored.
        model = summary["scores"].get("classifier")
        regions = summary["scores"].get("regions", {})
        totals = {
            "input_records": counts.get("chips"),
            "scored": counts.get("scored"),
            "errors": counts.get("score_errors", 0),
            "residential": sum(r.get("residential", r.get("k", 0)) for r in regions.values()),
        }
    else:
        model = (summary.get("inputs") or {}).get("model")
        regions = summary.get("regions", {})
        totals = counts
    for r in regions.values():
        if r.get("achieved_fraction") is None and r.get("n"):
            r["achieved_fraction"] = r.get("residential", r.get("k", 0)) / r["n"]
        r.setdefault("exact", r.get("residential", r.get("k")) == r.get("k"))
    return regions, totals, model


def _regions(run_dir: str) -> tuple[Region, ...]:
    regions, _, _ = score_parts(run_dir)
    return tuple(
        Region(
            name=str(name),
            footprints=int(r.get("n") or 0),
            residential=int(r.get("residential", r.get("k")) or 0),
            target=r.get("target_fraction"),
        )
        for name, r in sorted(regions.items())
    )


def _dates(run_dir: str) -> tuple[str, str] | None:
    for name in ("classified", "footprints"):
        found = discovery.read_table(os.path.join(run_dir, name), ["imagery_date"])
        if found is not None and "imagery_date" in found.column_names:
            dates = sorted(str(d) for d in found.column("imagery_date").to_pylist() if d)
            return (dates[0], dates[-1]) if dates else None
    return None


def _centroid_extent(run_dir: str) -> tuple[float, float, float, float] | None:
    found = discovery.read_table(os.path.join(run_dir, "scores"), ["centroid_lon", "centroid_lat"])
    if found is None or "centroid_lon" not in found.column_names:
        return None
    lon = [v for v in found.column("centroid_lon").to_pylist() if v is not None]
    lat = [v for v in found.column("centroid_lat").to_pylist() if v is not None]
    if not lon or not lat:
        return None
    return min(lon), min(lat), max(lon), max(lat)


def headline(area: str, kind: str, run_dir: str) -> Headline:
    """The headline of a run (``kind`` ``segment`` or ``score``) named ``area``."""
    summary = discovery.summary(run_dir)
    counts = summary.get("counts") or {}
    if kind == "segment":
        masks = discovery.run_files(os.path.join(run_dir, "masks"), ".tif")
        found = raster_extent(masks)
        return Headline(
            area=area,
            buildings=counts.get("footprints"),
            buildings_what="Buildings found in the imagery",
            extent=found[0] if found else None,
            area_km2=found[1] if found else None,
            imagery_dates=_dates(run_dir),
            regions=_regions(run_dir),
        )
    return Headline(
        area=area,
        buildings=counts.get("scored"),
        buildings_what="Footprints classified",
        extent=_centroid_extent(run_dir),
        regions=_regions(run_dir),
    )
