"""A seeded, realistic synthetic sample area: orthophoto tiles, true footprints, true masks.

Every stage of footprints (chipping, scoring, segmentation, stitching) needs an
area whose truth is known exactly, that builds in seconds without a network,
and that looks enough like a real orthophoto that a model or an analyst is
not fooled by a toy. This module makes one from a seed.

The story of :func:`generate_sample_area`:

1. **Plan** (:class:`_Planner`) the whole area as vector geometry on one
   canvas, in metres: a slightly rotated grid of rural roads (paved or
   gravel), crop-field parcels between them, a curved suburban street with
   houses on lawns, farmsteads with barns, grain bins and machine sheds on a
   gravel yard, commercial or industrial lots with parking, apartment blocks,
   rural houses along the roads, and trees in yards, windbreaks and woodlots.
   Every building is a true footprint with an OSM-style ``building`` value.
   The classes overlap on purpose (large houses, small barns, red-roofed
   houses, grey barns, detached garages roofed like the house next door) so
   that a classifier cannot be trivially perfect.
2. **Render** each tile from that plan (:func:`_render_tile`): ground, cast
   shadows (one sun for the scene), roofs (pitched roofs as facets lit by the
   sun, metal roofs with panel seams, flat roofs with parapets and HVAC
   units), then tree canopies, which may hide roof edges. Polygons are burnt
   with :func:`rasterio.features.rasterize`; textures, lighting and noise
   are numpy. Because the plan is one canvas cut into tiles, buildings
   straddle tile edges naturally; the planner makes sure some do.
3. **Write** (:func:`_write_outputs`): one GeoTIFF per tile and one 0/1 mask
   per tile (the footprints rasterized on the tile's grid), the footprints
   vector file, and ``manifest.json`` last. Every file goes to a temporary
   name first and is moved into place with :func:`os.replace`, so a killed
   run never leaves a half-written file under a final name, and the manifest
   exists only when the area is complete. A rerun into the same folder
   replaces the outputs and removes those the new configuration no longer
   makes.

Determinism: all randomness comes from ``numpy.random.default_rng`` seeded
with the config's seed (the planner) or with ``[seed, row, col]`` (per-tile
noise), so the same config gives byte-identical tiles and masks.

Pixel values: 8-bit tiles use the full 0..255 range; 16-bit tiles hold
12-bit values (0..4095), as many aerial sensors deliver. No tile has a nodata
value: every pixel of the area is imaged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio.raw
import pyproj
import rasterio
import rasterio.features
import shapely
import shapely.affinity
import shapely.ops
from rasterio.transform import Affine, from_origin
from shapely.geometry import LineString, Point, Polygon

from footprints.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``building`` values counted as residential (label 1 in the chip contract).
RESIDENTIAL_CLASSES: tuple[str, ...] = ("house", "detached", "residential", "apartments")
#: ``building`` values counted as non-residential (label 0).
NON_RESIDENTIAL_CLASSES: tuple[str, ...] = (
    "barn", "shed", "garage", "farm_auxiliary", "commercial", "industrial", "retail")

#: Band names per ``bands`` mode, in file order (also the band descriptions).
BAND_NAMES: dict[str, tuple[str, ...]] = {
    "rgb": ("red", "green", "blue"),
    "rgbn": ("red", "green", "blue", "nir"),
    "gray": ("gray",),
}
#: Largest value written per ``dtype``: 16-bit tiles hold 12-bit values.
DTYPE_MAX: dict[str, int] = {"uint8": 255, "uint16": 4095}
#: GDAL driver (None: written with pyarrow) and extension per footprints format.
FOOTPRINT_FORMATS: dict[str, tuple[str | None, str]] = {
    "gpkg": ("GPKG", ".gpkg"),
    "geojson": ("GeoJSON", ".geojson"),
    "shp": ("ESRI Shapefile", ".shp"),
    "parquet": (None, ".parquet"),
}
#: The largest canvas (all tiles together) the generator accepts, in pixels.
MAX_CANVAS_PIXELS = 8192 * 8192

MANIFEST_NAME = "manifest.json"
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_TILE_NAME = re.compile(r"^tile_r(\d+)_c(\d+)\.tif$")
_TMP_PREFIX = ".sample-area-tmp-"


def is_residential(building: str) -> bool:
    """True for a residential ``building`` value, False for a non-residential one.

    Raises:
        ValueError: ``building`` is not one of the values this module writes.
    """
    if building in RESIDENTIAL_CLASSES:
        return True
    if building in NON_RESIDENTIAL_CLASSES:
        return False
    raise ValueError(
        f"unknown building value {building!r}; expected one of "
        f"{RESIDENTIAL_CLASSES + NON_RESIDENTIAL_CLASSES}")


# --------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampleAreaConfig:
    """What sample area to make; validated on construction.

    Attributes:
        seed: Seed of every random choice; the same config gives the same bytes.
        tiles_x: Tiles across (columns).
        tiles_y: Tiles down (rows).
        tile_size: Pixels per tile side.
        pixel_size: Ground sample distance in metres (0.3 to 0.6 is typical of
            county orthophotos; 0.1 to 2.0 is accepted).
        crs: Projected CRS of the tiles, in metres (a UTM zone).
        origin: Upper-left corner (x, y) of the whole area in ``crs``.
        bands: ``"rgb"`` (3 bands), ``"rgbn"`` (red, green, blue, near
            infrared) or ``"gray"`` (1 band, luminance).
        dtype: ``"uint8"`` (0..255) or ``"uint16"`` (12-bit values, 0..4095).
        block_size: Internal GeoTIFF block side in pixels (multiple of 16).
        footprints_crs: CRS of the footprints file when it should differ from
            ``crs`` (for example ``"EPSG:4326"``), to exercise reprojection.
        footprints_format: ``"gpkg"``, ``"geojson"``, ``"shp"`` or
            ``"parquet"`` (GeoParquet 1.0 with WKB geometry).
        regions: Number of region labels (``county-a``, ``county-b``, ...),
            given by equal vertical bands of the area, west to east.
        density: Multiplier on the number of buildings (0.1 to 5).
    """

    seed: int = 0
    tiles_x: int = 2
    tiles_y: int = 2
    tile_size: int = 512
    pixel_size: float = 0.5
    crs: str = "EPSG:32615"
    origin: tuple[float, float] = (500000.0, 4650000.0)
    bands: str = "rgb"
    dtype: str = "uint8"
    block_size: int = 256
    footprints_crs: str | None = None
    footprints_format: str = "gpkg"
    regions: int = 2
    density: float = 1.0

    def __post_init__(self):
        _check_int("seed", self.seed, 0, 2**63 - 1, "use a non-negative integer such as 0")
        _check_int("tiles_x", self.tiles_x, 1, 64, "use 1 to 64 tiles across")
        _check_int("tiles_y", self.tiles_y, 1, 64, "use 1 to 64 tiles down")
        _check_int("tile_size", self.tile_size, 64, 8192, "use 64 to 8192 pixels, e.g. 512")
        _check_int("block_size", self.block_size, 16, 4096, "use a multiple of 16, e.g. 256")
        if self.block_size % 16:
            raise ConfigError(
                f"block_size {self.block_size!r} is not a multiple of 16, which GeoTIFF "
                "tiling requires; use 128, 256 or 512")
        pixels = self.tiles_x * self.tiles_y * self.tile_size**2
        if pixels > MAX_CANVAS_PIXELS:
            raise ConfigError(
                f"{self.tiles_x}x{self.tiles_y} tiles of {self.tile_size} px are {pixels:,} "
                f"pixels, more than the {MAX_CANVAS_PIXELS:,} this generator renders; "
                "use fewer or smaller tiles")
        object.__setattr__(self, "pixel_size", _check_float(
            "pixel_size", self.pixel_size, 0.1, 2.0,
            "use metres per pixel between 0.1 and 2.0 (0.3 to 0.6 is typical)"))
        object.__setattr__(self, "density", _check_float(
            "density", self.density, 0.1, 5.0, "use a multiplier between 0.1 and 5"))
        _check_int("regions", self.regions, 1, 26, "use 1 to 26 regions")
        tile_crs = _parse_crs("crs", self.crs)
        if not tile_crs.is_projected or tile_crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise ConfigError(
                f"crs {self.crs!r} is not a projected CRS in metres; use a UTM zone "
                "such as 'EPSG:32615'")
        if self.footprints_crs is not None:
            _parse_crs("footprints_crs", self.footprints_crs)
        try:
            origin = tuple(float(v) for v in self.origin)
        except (TypeError, ValueError):
            origin = ()
        if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
            raise ConfigError(
                f"origin {self.origin!r} is not an (x, y) pair of finite numbers; "
                "give the upper-left corner in the tiles' CRS, e.g. (500000.0, 4650000.0)")
        object.__setattr__(self, "origin", origin)
        for name, value, allowed in (
                ("bands", self.bands, BAND_NAMES),
                ("dtype", self.dtype, DTYPE_MAX),
                ("footprints_format", self.footprints_format, FOOTPRINT_FORMATS)):
            if value not in allowed:
                raise ConfigError(
                    f"{name} {value!r} is not supported; use one of {', '.join(allowed)}")

    @property
    def width_m(self) -> float:
        """East-west extent of the area in metres."""
        return self.tiles_x * self.tile_size * self.pixel_size

    @property
    def height_m(self) -> float:
        """North-south extent of the area in metres."""
        return self.tiles_y * self.tile_size * self.pixel_size

    @property
    def region_names(self) -> tuple[str, ...]:
        """Region labels, west to east."""
        return tuple(f"county-{chr(ord('a') + i)}" for i in range(self.regions))

    def tile_transform(self, row: int, col: int) -> Affine:
        """North-up transform of tile (row, col) in ``crs``."""
        span = self.tile_size * self.pixel_size
        x0, y0 = self.origin
        return from_origin(x0 + col * span, y0 - row * span, self.pixel_size, self.pixel_size)


def _check_int(name: str, value: Any, low: int, high: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} {value!r} is not an integer; {fix}")
    if not low <= value <= high:
        raise ConfigError(f"{name} {value!r} is out of range {low}..{high}; {fix}")


def _check_float(name: str, value: Any, low: float, high: float, fix: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a number; {fix}") from None
    if isinstance(value, bool) or not (low <= number <= high):
        raise ConfigError(f"{name} {value!r} is out of range {low}..{high}; {fix}")
    return number


def _parse_crs(name: str, value: Any) -> pyproj.CRS:
    try:
        return pyproj.CRS.from_user_input(value)
    except (pyproj.exceptions.CRSError, TypeError) as exc:
        raise ConfigError(
            f"{name} {value!r} is not a CRS pyproj understands ({exc}); "
            "use an authority code such as 'EPSG:32615' or 'EPSG:4326'") from None


@dataclasses.dataclass(frozen=True)
class SampleArea:
    """A generated sample area on disk.

    Attributes:
        root: Absolute folder of the area.
        tiles: GeoTIFF paths ``root/tiles/tile_r{row}_c{col}.tif``, row-major.
        masks: True building masks (uint8 0/1) on each tile's grid, same order,
            ``root/masks/tile_r{row}_c{col}.tif``.
        footprints: The footprints vector file, ``root/footprints.<ext>``.
        crs: CRS of the tiles.
        config: The configuration that made the area.
        counts: Footprints per ``building`` value present, plus ``"total"``.
    """

    root: str
    tiles: tuple[str, ...]
    masks: tuple[str, ...]
    footprints: str
    crs: str
    config: SampleAreaConfig
    counts: dict


# --------------------------------------------------------------------------
# Geometry helpers (local frame: metres, x east from the area's west edge,
# y north from its north edge, so the area is [0, W] x [-H, 0])
# --------------------------------------------------------------------------


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _strip(center: np.ndarray, axis: np.ndarray, half_length: float,
           f0: float, f1: float) -> Polygon:
    # Corners from one formula, so neighbouring strips share exact vertices and
    # their union is exactly the footprint rectangle (no pixel falls between).
    normal = np.array([-axis[1], axis[0]])
    a, b = axis * half_length, normal
    return Polygon([center - a + b * f0, center + a + b * f0,
                    center + a + b * f1, center - a + b * f1])


def _rect(center: np.ndarray, length: float, width: float, angle: float) -> Polygon:
    return _strip(np.asarray(center, float), _unit(angle), length / 2, -width / 2, width / 2)


def _circle(center: np.ndarray, radius: float) -> Polygon:
    return Point(float(center[0]), float(center[1])).buffer(radius, quad_segs=6)


def _hull_shadow(shape: Polygon, offset: np.ndarray) -> Polygon:
    moved = shapely.affinity.translate(shape, float(offset[0]), float(offset[1]))
    return shapely.convex_hull(shapely.union(shape, moved))


def _lum(rgb: Sequence[float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


#: NIR reflectance relative to visible luminance, per material kind.
_NIR_GAIN = {"veg": 2.3, "tree": 2.5, "soil": 1.2, "man": 0.95, "red": 1.8, "metal": 1.05}


def _rgbn(rgb: Sequence[float], kind: str) -> tuple[float, float, float, float]:
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]),
            float(min(235.0, _lum(rgb) * _NIR_GAIN[kind])))


class _Blocker:
    """Geometries that new ones must not touch; a bounding-box prefilter keeps it fast."""

    def __init__(self):
        self._geoms: list = []
        self._bounds = np.empty((0, 4))

    def add(self, geom) -> None:
        shapely.prepare(geom)
        self._geoms.append(geom)
        self._bounds = np.vstack([self._bounds, shapely.bounds(geom)])

    def hits(self, geom) -> bool:
        if not self._geoms:
            return False
        x0, y0, x1, y1 = shapely.bounds(geom)
        b = self._bounds
        near = np.nonzero((b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0))[0]
        return any(self._geoms[i].intersects(geom) for i in near)


# --------------------------------------------------------------------------
# Draw lists
# --------------------------------------------------------------------------

_NO_RADIAL, _CANOPY, _CONE = 0, 1, 2


class _DrawList:
    """Shapes drawn in order, each with a colour (R, G, B, NIR) and a texture.

    Texture parameters: ``noise`` (per-pixel), ``mottle`` (about 1.5 m) and
    ``patch`` (about 25 m) are relative amplitudes of noise fields;
    ``stripes`` = (angle, period m, amplitude, sharp) draws tillage rows,
    mower stripes or metal panel seams; ``radial`` shades a tree canopy or a
    grain-bin cone around ``center``.
    """

    _TEX = ("noise", "mottle", "patch", "s_amp", "s_period", "s_angle", "s_phase", "s_sharp",
            "cx", "cy", "radius", "radial")

    def __init__(self):
        self.geoms: list = []
        self.rgbn: list = []
        self.tex: list = []

    def add(self, geom, rgbn, *, noise: float = 0.03, mottle: float = 0.0, patch: float = 0.0,
            stripes: tuple[float, float, float, bool] | None = None, phase: float = 0.0,
            center: Sequence[float] = (0.0, 0.0), radius: float = 0.0,
            radial: int = _NO_RADIAL) -> None:
        if geom is None or geom.is_empty:
            return
        angle, period, amp, sharp = stripes or (0.0, 1.0, 0.0, False)
        self.geoms.append(geom)
        self.rgbn.append(rgbn)
        self.tex.append((noise, mottle, patch, amp, period, angle, phase, float(sharp),
                         float(center[0]), float(center[1]), radius, radial))

    def freeze(self, x0: float, y0: float) -> dict[str, np.ndarray]:
        geoms = np.array(self.geoms, dtype=object)
        if len(geoms):
            geoms = shapely.transform(geoms, lambda xy: xy + np.array([x0, y0]))
        arrays = {"geoms": geoms,
                  "bounds": shapely.bounds(geoms).reshape(-1, 4) if len(geoms) else np.empty((0, 4)),
                  "rgbn": np.array(self.rgbn, np.float32).reshape(-1, 4)}
        tex = np.array(self.tex, np.float64).reshape(-1, len(self._TEX))
        for i, name in enumerate(self._TEX):
            arrays[name] = tex[:, i]
        arrays["radial"] = arrays["radial"].astype(np.int8)
        return arrays


@dataclasses.dataclass
class _Footprint:
    geom: Polygon
    building: str


@dataclasses.dataclass
class _Plan:
    """The planned area: draw lists (world coordinates) and the true footprints."""

    ground: dict
    shadows: np.ndarray
    objects: dict
    trees: dict
    footprints: list  # _Footprint, local coordinates
    sun: dict


# --------------------------------------------------------------------------
# Palettes (sRGB values as a hazy aerial camera records them)
# --------------------------------------------------------------------------

_SHINGLES = [((68, 68, 70), 5), ((96, 95, 93), 5), ((118, 114, 108), 3), ((98, 82, 70), 4),
             ((78, 64, 56), 3), ((54, 54, 58), 3), ((138, 134, 126), 2), ((112, 96, 78), 2)]
_HOUSE_SPECIAL = [((148, 66, 52), "red", 0.07), ((178, 182, 184), "metal", 0.04),
                  ((82, 104, 86), "metal", 0.02)]
_BARN = [((138, 48, 40), "red", 4), ((112, 42, 36), "red", 2), ((188, 191, 193), "metal", 3),
         ((160, 165, 168), "metal", 3), ((126, 128, 130), "metal", 2), ((204, 203, 197), "metal", 1),
         ((112, 92, 74), "man", 1)]
_FLAT = [((206, 206, 203), 4), ((220, 219, 214), 3), ((184, 185, 184), 3), ((166, 165, 160), 2),
         ((150, 145, 135), 1), ((96, 96, 100), 1)]
_SHED = [((150, 150, 146), "metal", 2), ((96, 86, 74), "man", 2), ((88, 102, 84), "metal", 1),
         ((196, 194, 186), "man", 1), ((70, 70, 72), "man", 2), ((140, 60, 50), "red", 1)]
_CAR = [(210, 210, 212), (30, 32, 36), (150, 152, 156), (100, 102, 106), (140, 30, 30),
        (40, 60, 110), (200, 200, 196), (70, 72, 70)]
_FIELDS = {  # rgb, material, (stripe period range m, amplitude), patchiness
    "corn": ((68, 98, 46), "veg", (5.0, 9.0, 0.04), 0.06),
    "soy": ((88, 122, 56), "veg", (3.0, 6.0, 0.05), 0.07),
    "tilled": ((122, 102, 82), "soil", (1.6, 3.2, 0.10), 0.08),
    "dark_soil": ((88, 74, 62), "soil", (1.6, 2.8, 0.09), 0.07),
    "stubble": ((178, 164, 120), "veg", (2.0, 4.0, 0.08), 0.06),
    "hay": ((132, 140, 84), "veg", (6.0, 12.0, 0.05), 0.08),
    "pasture": ((104, 126, 66), "veg", None, 0.12),
}
_FIELD_WEIGHTS = {"corn": 3, "soy": 3, "tilled": 1.2, "dark_soil": 0.6, "stubble": 1.2,
                  "hay": 1, "pasture": 1, "woodlot": 0.35}


def _pick(rng: np.random.Generator, weighted: list) -> Any:
    weights = np.array([w[-1] for w in weighted], float)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))]


def _jitter(rng: np.random.Generator, rgb: Sequence[float], spread: float = 0.08) -> tuple:
    gain = rng.uniform(1 - spread, 1 + spread)
    return tuple(float(np.clip(c * gain + rng.normal(0, 3), 0, 255)) for c in rgb)


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


@dataclasses.dataclass
class _Road:
    line: LineString
    half_width: float
    paved: bool


class _Planner:
    """Plans one area: roads, parcels, sites, buildings, trees and shadows.

    State lives here (the random generator, the draw lists, the blockers that
    keep sites and buildings apart); :meth:`plan` runs the steps in a fixed
    order so that one seed gives one area.
    """

    def __init__(self, config: SampleAreaConfig):
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.w, self.h = config.width_m, config.height_m
        self.area = shapely.box(0.0, -self.h, self.w, 0.0)
        self.inner = shapely.box(0.5, -self.h + 0.5, self.w - 0.5, -0.5)
        shapely.prepare(self.inner)
        self.center = np.array([self.w / 2, -self.h / 2])
        self.reach = 0.5 * math.hypot(self.w, self.h) + 60.0
        self.theta = self.rng.uniform(-math.radians(6), math.radians(6))
        self.e1, self.e2 = _unit(self.theta), _unit(self.theta + math.pi / 2)
        # Orthophoto flights are flown near midday: the sun is high and to the south.
        azimuth = self.rng.uniform(135.0, 225.0)  # degrees clockwise from north
        elevation = self.rng.uniform(48.0, 64.0)
        self.sun_azimuth, self.sun_elevation = azimuth, elevation
        self.sun_h = np.array([math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))])
        self.shadow_per_m = -self.sun_h / math.tan(math.radians(elevation))
        self.ground, self.objects, self.trees = _DrawList(), _DrawList(), _DrawList()
        self.shadows: list = []
        self.footprints: list[_Footprint] = []
        self.roads: list[_Road] = []
        self.road_block, self.parcel_block, self.built = _Blocker(), _Blocker(), _Blocker()
        self.late_ground: list = []  # (geom, rgbn, kwargs) drawn after fields, before roads
        self.fencerow_trees: list = []  # planted last, where no building stands

    # -- frame helpers ------------------------------------------------------

    def frame(self, s: float, t: float) -> np.ndarray:
        return self.center + s * self.e1 + t * self.e2

    def frame_rect(self, s0: float, s1: float, t0: float, t1: float) -> Polygon:
        return Polygon([self.frame(s0, t0), self.frame(s1, t0), self.frame(s1, t1),
                        self.frame(s0, t1)])

    # -- the steps -----------------------------------------------------------

    def plan(self) -> _Plan:
        s_roads, t_roads = self._plan_roads()
        self._plan_fields(s_roads, t_roads)
        crossings = [(s, t) for s in s_roads for t in t_roads
                     if self.inner.contains(Point(*self.frame(s, t)))]
        density = self.config.density
        area_km2 = self.w * self.h / 1e6
        for crossing in self.rng.permutation(len(crossings)):
            if self.rng.random() < 0.75 or crossing == 0:
                self._plan_subdivision(*crossings[crossing])
        for _ in range(max(1, int(round(area_km2 * 2.5 * min(density, 2.0))))):
            self._plan_commercial(crossings)
        if self.rng.random() < min(0.9, 0.6 * density):
            self._plan_apartments()
        farmsteads = self.rng.poisson(max(1.5, area_km2 * 5.0) * density)
        for _ in range(max(1, int(farmsteads))):
            self._plan_farmstead()
        self._plan_rural_houses()
        self._plan_road_trees()
        for at, radius in self.fencerow_trees:
            self._tree(at, radius)
        self._ensure_classes()
        self._ensure_straddlers()
        return self._freeze()

    def _plan_roads(self) -> tuple[list[float], list[float]]:
        positions = []
        for extent in (self.w, self.h):
            first = self.rng.uniform(-0.22, 0.22) * extent
            spacing = self.rng.uniform(380.0, 560.0)
            positions.append(sorted(first + k * spacing for k in range(-12, 13)
                                    if abs(first + k * spacing) < self.reach - 30))
        s_roads, t_roads = positions
        r = self.reach
        lines = ([LineString([self.frame(s, -r), self.frame(s, r)]) for s in s_roads]
                 + [LineString([self.frame(-r, t), self.frame(r, t)]) for t in t_roads])
        for i, line in enumerate(lines):
            paved = i == 0 or self.rng.random() < 0.7
            road = _Road(line, self.rng.uniform(3.4, 4.2) if paved else 3.3, paved)
            self.roads.append(road)
            self.road_block.add(line.buffer(road.half_width + 1.5, cap_style="flat"))
        return s_roads, t_roads

    def _plan_fields(self, s_roads: list[float], t_roads: list[float]) -> None:
        r = self.reach
        s_cuts, t_cuts = [-r, *s_roads, r], [-r, *t_roads, r]
        parcels: list[tuple[float, float, float, float]] = []
        for s0, s1 in zip(s_cuts[:-1], s_cuts[1:]):
            for t0, t1 in zip(t_cuts[:-1], t_cuts[1:]):
                self._split(s0, s1, t0, t1, parcels)
        for s0, s1, t0, t1 in parcels:
            poly = self.frame_rect(s0, s1, t0, t1)
            if not poly.intersects(self.area):
                continue
            kind = _pick(self.rng, [(k, w) for k, w in _FIELD_WEIGHTS.items()])[0]
            if kind == "woodlot":
                self._woodlot(poly)
                continue
            if self.rng.random() < 0.3:
                self._fencerow(poly)
            rgb, material, stripes, patch = _FIELDS[kind]
            angle = self.theta + (math.pi / 2 if self.rng.random() < 0.5 else 0.0)
            stripe = None
            if stripes is not None:
                stripe = (angle, self.rng.uniform(stripes[0], stripes[1]), stripes[2], False)
            self.ground.add(poly, _rgbn(_jitter(self.rng, rgb, 0.1), material), noise=0.035,
                            mottle=0.03, patch=patch, stripes=stripe,
                            phase=self.rng.random())

    def _fencerow(self, poly: Polygon) -> None:
        # Old fence lines between fields grow into broken rows of trees.
        corners = np.array(poly.exterior.coords)
        k = int(self.rng.integers(4))
        edge = LineString([corners[k], corners[k + 1]])
        pos = self.rng.uniform(0, 8.0)
        while pos < edge.length:
            if self.rng.random() < 0.6:
                at = np.array(edge.interpolate(pos).coords[0]) + self.rng.normal(0, 1.0, 2)
                self.fencerow_trees.append((at, self.rng.uniform(2.5, 5.0)))
            pos += self.rng.uniform(5.0, 14.0)

    def _split(self, s0, s1, t0, t1, out) -> None:
        ds, dt = s1 - s0, t1 - t0
        limit = self.rng.uniform(110.0, 260.0)
        if max(ds, dt) < limit:
            out.append((s0, s1, t0, t1))
            return
        f = self.rng.uniform(0.3, 0.7)
        if ds >= dt:
            self._split(s0, s0 + f * ds, t0, t1, out)
            self._split(s0 + f * ds, s1, t0, t1, out)
        else:
            self._split(s0, s1, t0, t0 + f * dt, out)
            self._split(s0, s1, t0 + f * dt, t1, out)

    def _woodlot(self, poly: Polygon) -> None:
        self.ground.add(poly, _rgbn(_jitter(self.rng, (62, 78, 46)), "tree"), noise=0.06,
                        mottle=0.15, patch=0.08)
        clipped = poly.intersection(self.area.buffer(10))
        if clipped.is_empty:
            return
        self.parcel_block.add(poly)  # no house hides under a wood
        x0, y0, x1, y1 = clipped.bounds
        count = int(clipped.area / 38.0)
        xs = self.rng.uniform(x0, x1, count)
        ys = self.rng.uniform(y0, y1, count)
        inside = shapely.contains_xy(clipped, xs, ys)
        for x, y in zip(xs[inside], ys[inside]):
            self._tree(np.array([x, y]), self.rng.uniform(2.5, 5.5), dense=True)

    # -- roads are drawn last on the ground, over lots and yards -------------

    def _draw_roads(self) -> None:
        for road in self.roads:
            hw = road.half_width
            if road.paved:
                self.ground.add(road.line.buffer(hw + 1.3, cap_style="flat"),
                                _rgbn((150, 142, 126), "soil"), noise=0.06, mottle=0.05)
                self.ground.add(road.line.buffer(hw, cap_style="flat"),
                                _rgbn(_jitter(self.rng, (98, 99, 100), 0.06), "man"),
                                noise=0.04, mottle=0.04, patch=0.05)
                self._dashes(road.line, (172, 158, 104))
                for side in (-1, 1):
                    self.ground.add(road.line.offset_curve(side * (hw - 0.35)),
                                    _rgbn((150, 150, 146), "man"), noise=0.03)
            else:
                self.ground.add(road.line.buffer(hw, cap_style="flat"),
                                _rgbn(_jitter(self.rng, (166, 152, 128), 0.05), "soil"),
                                noise=0.06, mottle=0.06, patch=0.05)
                for side in (-1, 1):
                    self.ground.add(road.line.offset_curve(side * 1.0).buffer(0.5),
                                    _rgbn((146, 134, 114), "soil"), noise=0.05)

    def _dashes(self, line: LineString, rgb) -> None:
        dash, gap = 3.0, 9.0
        pos = float(self.rng.uniform(0, gap))
        while pos + dash < line.length:
            self.ground.add(shapely.ops.substring(line, pos, pos + dash),
                            _rgbn(rgb, "man"), noise=0.02)
            pos += dash + gap

    # -- sites -----------------------------------------------------------------

    def _lot_ok(self, lot: Polygon) -> bool:
        probe = lot.buffer(-0.5)
        return not (self.road_block.hits(probe) or self.parcel_block.hits(probe))

    def _plan_subdivision(self, s_c: float, t_c: float) -> None:
        rng = self.rng
        for _ in range(12):
            sign_s, sign_t = rng.choice([-1, 1]), rng.choice([-1, 1])
            hw_main = 4.5
            start_t = t_c + sign_t * rng.uniform(50.0, 95.0)
            length = rng.uniform(150.0, 250.0)
            bend, wave = rng.uniform(-30.0, 35.0), rng.uniform(120.0, 260.0)
            u = np.linspace(0.0, length, 60)
            s = s_c + sign_s * (hw_main + u)
            t = start_t + sign_t * bend * (1 - np.cos(np.pi * u / wave)) / 2
            street = LineString([self.frame(a, b) for a, b in zip(s, t)])
            inside = street.intersection(self.area).length / street.length
            others = [r for r in self.roads
                      if r.line.distance(Point(*self.frame(s_c, start_t))) > 6.0]
            if (inside < 0.85 or any(r.line.distance(street) < 40.0 for r in others)
                    or self.parcel_block.hits(street.buffer(20.0))):
                continue
            self._build_subdivision(street)
            return

    def _build_subdivision(self, street: LineString) -> None:
        rng = self.rng
        hw = 3.6
        concrete = rng.random() < 0.5
        zone = shapely.union(street.buffer(hw + 42.0, cap_style="flat"),
                             _circle(np.array(street.coords[-1]), 40.0))
        self.ground.add(zone, _rgbn(_jitter(rng, (100, 128, 64)), "veg"), noise=0.04,
                        mottle=0.05, patch=0.1)
        bulb = _circle(np.array(street.coords[-1]), 12.0)
        pavement = shapely.union(street.buffer(hw, cap_style="flat"), bulb)
        paving = (168, 166, 160) if concrete else (100, 101, 102)
        self.late_ground.append((pavement, _rgbn(paving, "man"),
                                 dict(noise=0.03, mottle=0.04, patch=0.04)))
        for side in (-1, 1):
            walk = street.offset_curve(side * (hw + 3.2)).buffer(0.8, cap_style="flat")
            self.late_ground.append((walk.difference(bulb.buffer(3)), _rgbn((176, 174, 168), "man"),
                                     dict(noise=0.03)))
        self.road_block.add(pavement.buffer(0.8))
        spacing = rng.uniform(24.0, 31.0)
        for side in (-1, 1):
            pos = 20.0 + rng.uniform(0, 6)
            while pos < street.length - 16.0:
                p0, p1 = street.interpolate(pos - 1.0), street.interpolate(pos + 1.0)
                tangent = np.array([p1.x - p0.x, p1.y - p0.y])
                tangent /= np.linalg.norm(tangent)
                outward = side * np.array([-tangent[1], tangent[0]])
                at = np.array(street.interpolate(pos).coords[0])
                if rng.random() < min(0.95, 0.85 * self.config.density):
                    self._house_lot(at, tangent, outward, hw + 1.0, spacing - 1.0,
                                    rng.uniform(34.0, 42.0), suburban=True, driveway_rgb=paving)
                pos += spacing
        self.parcel_block.add(zone.buffer(-4.0))

    def _road_point(self, margin: float = 20.0):
        """A random point on a grid road inside the area, with its direction."""
        for _ in range(50):
            road = self.roads[int(self.rng.integers(len(self.roads)))]
            inside = road.line.intersection(self.area.buffer(-margin))
            if inside.is_empty or inside.length < 10:
                continue
            start = road.line.project(Point(inside.coords[0]))
            pos = start + self.rng.uniform(0, inside.length)
            a, b = road.line.coords[0], road.line.coords[-1]
            tangent = np.subtract(b, a) / road.line.length
            return road, np.array(road.line.interpolate(pos).coords[0]), tangent
        return None

    def _site(self, at, tangent, outward, offset, frontage, depth):
        center = at + outward * (offset + depth / 2)
        angle = math.atan2(tangent[1], tangent[0])
        return center, angle, _rect(center, frontage, depth, angle)

    def _plan_commercial(self, crossings) -> None:
        rng = self.rng
        for _ in range(25):
            if crossings and rng.random() < 0.7:
                s_c, t_c = crossings[int(rng.integers(len(crossings)))]
                sign_s, sign_t = rng.choice([-1, 1]), rng.choice([-1, 1])
                frontage, depth = rng.uniform(80.0, 140.0), rng.uniform(65.0, 110.0)
                corner_s = s_c + sign_s * (6.0 + frontage / 2)
                tangent, outward = self.e1 * sign_s, self.e2 * sign_t
                at = self.frame(corner_s, t_c)
                hw = 4.2
            else:
                found = self._road_point()
                if found is None:
                    return
                road, at, tangent = found
                outward = rng.choice([-1, 1]) * np.array([-tangent[1], tangent[0]])
                frontage, depth = rng.uniform(70.0, 130.0), rng.uniform(60.0, 100.0)
                hw = road.half_width + 1.3
            center, angle, site = self._site(at, tangent, outward, hw + 2.0, frontage, depth)
            if not self._lot_ok(site) or not self.inner.contains(Point(*center)):
                continue
            self.parcel_block.add(site)
            self._build_commercial(center, angle, tangent, outward, frontage, depth)
            return

    def _build_commercial(self, center, angle, tangent, outward, frontage, depth) -> None:
        rng = self.rng
        asphalt = _jitter(rng, (112, 113, 114), 0.06)
        self.late_ground.append((_rect(center, frontage, depth, angle), _rgbn(asphalt, "man"),
                                 dict(noise=0.035, mottle=0.04, patch=0.06)))
        strip = _rect(center - outward * (depth / 2 - 2.5), frontage, 5.0, angle)
        self.late_ground.append((strip, _rgbn((96, 124, 62), "veg"), dict(noise=0.05, mottle=0.08)))
        kind = str(rng.choice(["commercial", "industrial", "retail"], p=[0.4, 0.35, 0.25]))
        count = 1 if rng.random() < 0.6 else 2
        back = depth * rng.uniform(0.45, 0.6)
        along = frontage - 10.0
        for i in range(count):
            length = along / count - 6.0 if count > 1 else along * rng.uniform(0.5, 0.85)
            width = back - 6.0
            offset_a = (i - (count - 1) / 2) * (along / count) + (
                rng.uniform(-1, 1) * (along - length) / 2 * 0.5 if count == 1 else 0.0)
            c = center + tangent * offset_a + outward * (depth / 2 - back / 2 - 3.0)
            pitched = kind == "retail" and length < 30 and rng.random() < 0.5
            self._building(kind, [(c, length, width, angle)],
                           roof="gable" if pitched else "flat",
                           palette="shingle" if pitched else "flat",
                           height=rng.uniform(5.0, 9.0))
        self._parking(center - outward * (back / 2 - 4.0), angle, tangent, outward,
                      frontage - 12.0, depth - back - 14.0)
        for _ in range(int(rng.integers(2, 7))):
            spot = center - outward * (depth / 2 - 2.5) + tangent * rng.uniform(-frontage, frontage) / 2
            self._tree(spot, rng.uniform(2.5, 4.5))

    def _parking(self, center, angle, tangent, outward, length, depth) -> None:
        rng = self.rng
        stall_w, stall_d = 2.75, 5.5
        rows = max(0, int(depth // (2 * stall_d + 7.0)) * 2)
        stalls = int(length // stall_w)
        if rows == 0 or stalls < 2:
            return
        start = center - tangent * (stalls * stall_w / 2) - outward * ((rows // 2) * (2 * stall_d + 7.0) / 2)
        occupancy = rng.uniform(0.25, 0.75)
        for row in range(rows):
            pair, upper = divmod(row, 2)
            base = start + outward * (pair * (2 * stall_d + 7.0) + upper * stall_d)
            for k in range(stalls + 1):
                p = base + tangent * (k * stall_w)
                self.late_ground.append((LineString([p, p + outward * stall_d]),
                                         _rgbn((176, 176, 170), "man"), dict(noise=0.03)))
                if k < stalls and rng.random() < occupancy:
                    c = p + tangent * (stall_w / 2) + outward * (stall_d / 2)
                    self._car(c, angle + math.pi / 2 + rng.normal(0, 0.04))

    def _car(self, center, angle) -> None:
        rng = self.rng
        body = _rect(center, 4.6, 1.85, angle)
        rgb = _CAR[int(rng.integers(len(_CAR)))]
        self.objects.add(body, _rgbn(_jitter(rng, rgb, 0.05), "man"), noise=0.05)
        self.objects.add(_rect(center + _unit(angle) * 0.2, 1.9, 1.5, angle),
                         _rgbn(np.array(rgb) * 0.45 + 15, "man"), noise=0.04)
        self.shadows.append(_hull_shadow(body, self.shadow_per_m * 1.5))

    def _plan_apartments(self) -> None:
        rng = self.rng
        for _ in range(20):
            found = self._road_point(40.0)
            if found is None:
                return
            road, at, tangent = found
            outward = rng.choice([-1, 1]) * np.array([-tangent[1], tangent[0]])
            frontage, depth = rng.uniform(75.0, 115.0), rng.uniform(60.0, 85.0)
            center, angle, site = self._site(at, tangent, outward, road.half_width + 3.0,
                                             frontage, depth)
            if not self._lot_ok(site) or not self.inner.contains(Point(*center)):
                continue
            self.parcel_block.add(site)
            self.late_ground.append((site, _rgbn(_jitter(rng, (102, 128, 66)), "veg"),
                                     dict(noise=0.04, mottle=0.05, patch=0.08)))
            lot = _rect(center - outward * (depth / 2 - 12.0), frontage - 8.0, 18.0, angle)
            self.late_ground.append((lot, _rgbn((108, 109, 110), "man"), dict(noise=0.035)))
            self._parking(center - outward * (depth / 2 - 12.0), angle, tangent, outward,
                          frontage - 14.0, 18.0)
            count = int(rng.integers(2, 4))
            flat = rng.random() < 0.5
            for i in range(count):
                length = min(rng.uniform(26.0, 44.0), (frontage - 8.0) / count * 1.6)
                width = rng.uniform(12.0, 16.0)
                turn = math.pi / 2 if count == 3 and i == 1 else 0.0
                c = center + tangent * ((i - (count - 1) / 2) * frontage / count) + outward * 12.0
                self._building("apartments", [(c, length, width, angle + turn)],
                               roof="flat" if flat else str(rng.choice(["gable", "hip"])),
                               palette="flat" if flat else "shingle",
                               height=rng.uniform(9.0, 13.0))
            for _ in range(int(rng.integers(3, 9))):
                spot = center + tangent * rng.uniform(-0.5, 0.5) * frontage + outward * rng.uniform(0, 0.5) * depth
                self._tree(spot, rng.uniform(2.5, 5.0))
            return

    def _plan_farmstead(self) -> None:
        rng = self.rng
        for _ in range(25):
            found = self._road_point(30.0)
            if found is None:
                return
            road, at, tangent = found
            outward = rng.choice([-1, 1]) * np.array([-tangent[1], tangent[0]])
            frontage, depth = rng.uniform(60.0, 100.0), rng.uniform(50.0, 85.0)
            setback = rng.uniform(20.0, 60.0)
            center, angle, yard = self._site(at, tangent, outward,
                                             road.half_width + setback, frontage, depth)
            if not self._lot_ok(yard.buffer(6.0)) or not self.inner.contains(Point(*center)):
                continue
            self.parcel_block.add(yard.buffer(6.0))
            self._build_farmstead(road, at, center, angle, tangent, outward, frontage, depth,
                                  setback)
            return

    def _build_farmstead(self, road, at, center, angle, tangent, outward, frontage, depth,
                         setback) -> None:
        rng = self.rng
        self.late_ground.append((_rect(center, frontage, depth, angle),
                                 _rgbn(_jitter(rng, (150, 140, 120), 0.07), "soil"),
                                 dict(noise=0.06, mottle=0.12, patch=0.15)))
        lane_at = at + tangent * rng.uniform(-frontage / 3, frontage / 3)
        lane_len = setback + road.half_width + 2.0
        self.late_ground.append((_rect(lane_at + outward * (lane_len / 2), 4.0, lane_len, angle),
                                 _rgbn((158, 146, 124), "soil"), dict(noise=0.06, mottle=0.06)))
        frame = (center, tangent, outward, frontage, depth, angle)
        if rng.random() < 0.85:
            lawn_c = center - outward * (depth / 2 - 14.0) + tangent * rng.uniform(-0.3, 0.3) * frontage
            self.late_ground.append((_rect(lawn_c, 30.0, 26.0, angle),
                                     _rgbn(_jitter(rng, (100, 126, 62)), "veg"),
                                     dict(noise=0.04, mottle=0.06, patch=0.08)))
            self._place_in(frame, "house", rng.uniform(10.0, 18.0), rng.uniform(8.0, 11.0),
                           near=lawn_c, spread=6.0)
        for _ in range(int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))):
            small = rng.random() < 0.35
            length = rng.uniform(8.0, 15.0) if small else rng.uniform(16.0, 38.0)
            self._place_in(frame, "barn", length, length * rng.uniform(0.45, 0.75))
        if rng.random() < 0.6:
            self._grain_bins(frame)
        for _ in range(int(rng.integers(0, 3))):
            length = rng.uniform(12.0, 28.0)
            self._place_in(frame, "farm_auxiliary", length, length * rng.uniform(0.5, 0.7))
        for _ in range(int(rng.integers(0, 3))):
            self._place_in(frame, "shed", rng.uniform(3.0, 7.0), rng.uniform(2.5, 5.0))
        # A windbreak of conifers on the yard's back and one side.
        back = center + outward * (depth / 2 + 6.0)
        for k in np.arange(-frontage / 2, frontage / 2, rng.uniform(4.0, 6.0)):
            self._tree(back + tangent * k + rng.normal(0, 0.6, 2), rng.uniform(2.8, 4.2), conifer=True)
        side = center + tangent * rng.choice([-1, 1]) * (frontage / 2 + 6.0)
        for k in np.arange(-depth / 2, depth / 2, rng.uniform(4.0, 6.0)):
            self._tree(side + outward * k + rng.normal(0, 0.6, 2), rng.uniform(2.8, 4.2), conifer=True)

    def _grain_bins(self, frame) -> None:
        rng = self.rng
        center, tangent, outward, frontage, depth, _ = frame
        count = int(rng.integers(1, 6))
        diameter = rng.uniform(6.0, 11.0)
        start = center + outward * (depth / 2 - diameter / 2 - 3.0) + tangent * rng.uniform(-frontage / 4, 0)
        for k in range(count):
            c = start + tangent * (k * (diameter + 1.5))
            shape = _circle(c, diameter / 2)
            if not self.inner.contains(shape) or self.built.hits(shape.buffer(1.0)) or self.road_block.hits(shape):
                continue
            rgb = _jitter(rng, (182, 186, 188), 0.05)
            self.objects.add(shape, _rgbn(rgb, "metal"), noise=0.03, center=c,
                             radius=diameter / 2, radial=_CONE)
            self.shadows.append(_hull_shadow(shape, self.shadow_per_m * rng.uniform(8, 12)))
            self._record(shape, "farm_auxiliary")

    def _place_in(self, frame, kind: str, length: float, width: float, *, near=None,
                  spread: float = 0.0) -> bool:
        rng = self.rng
        center, tangent, outward, frontage, depth, angle = frame
        for _ in range(30):
            if near is not None:
                c = near + rng.normal(0, spread, 2)
            else:
                c = (center + tangent * rng.uniform(-0.5, 0.5) * (frontage - length)
                     + outward * rng.uniform(-0.5, 0.5) * (depth - width))
            turn = angle + (math.pi / 2 if rng.random() < 0.3 else 0.0) + rng.normal(0, 0.03)
            if self._building(kind, [(c, length, width, turn)], check=True):
                return True
        return False

    def _plan_rural_houses(self) -> None:
        rng = self.rng
        for road in self.roads:
            inside = road.line.intersection(self.area)
            if inside.is_empty:
                continue
            a, b = road.line.coords[0], road.line.coords[-1]
            tangent = np.subtract(b, a) / road.line.length
            start = road.line.project(Point(inside.coords[0]))
            pos = start + rng.uniform(0, 30)
            while pos < start + inside.length:
                at = np.array(road.line.interpolate(pos).coords[0])
                for side in (-1, 1):
                    if rng.random() < min(0.9, 0.55 * self.config.density):
                        outward = side * np.array([-tangent[1], tangent[0]])
                        self._house_lot(at, tangent, outward, road.half_width + 1.5,
                                        rng.uniform(30.0, 45.0), rng.uniform(35.0, 55.0),
                                        suburban=False,
                                        driveway_rgb=(158, 148, 128) if not road.paved or rng.random() < 0.4
                                        else (104, 105, 106))
                pos += rng.uniform(40.0, 80.0) / max(self.config.density, 0.2)

    def _house_lot(self, at, tangent, outward, offset, frontage, depth, *, suburban: bool,
                   driveway_rgb) -> bool:
        rng = self.rng
        center, angle, lot = self._site(at, tangent, outward, offset, frontage, depth)
        if not self._lot_ok(lot):
            return False
        # The house decides whether the lot is used: no house, no lawn.
        large = rng.random() < 0.12
        length = rng.uniform(19.0, 27.0) if large else rng.uniform(7.5, 18.0)
        width = rng.uniform(11.0, 15.0) if large else rng.uniform(6.5, min(12.0, length))
        length = min(length, frontage - 5.0)
        setback = rng.uniform(7.0, 11.0) if suburban else rng.uniform(9.0, 22.0)
        along_road = rng.random() < 0.8
        across = width if along_road else length
        shift = rng.uniform(-0.15, 0.15) * frontage
        house_c = at + tangent * shift + outward * (offset + setback + across / 2)
        house_angle = angle + (0.0 if along_road else math.pi / 2) + rng.normal(0, 0.015 if suburban else 0.05)
        parts = [(house_c, length, width, house_angle)]
        if length >= 12.0 and rng.random() < 0.3:
            # A wing (often the attached garage): same roof, L- or T-shaped footprint.
            wing_w = rng.uniform(6.0, min(9.0, length / 2))
            wing_l = width / 2 + rng.uniform(4.0, 8.0)
            axis, normal = _unit(house_angle), _unit(house_angle + math.pi / 2)
            end = rng.choice([-1, 1]) * (length / 2 - wing_w / 2)
            side = rng.choice([-1.0, 1.0])
            wing_c = house_c + axis * end + normal * side * (wing_l / 2)
            parts.append((wing_c, wing_l, wing_w, house_angle + math.pi / 2))
        kind = str(rng.choice(["house", "detached", "residential"], p=[0.5, 0.3, 0.2]))
        roof = str(rng.choice(["gable", "hip", "flat"], p=[0.55, 0.4, 0.05]))
        colour = self._roof_colour("shingle")
        if not self._building(kind, parts, roof=roof, colour=colour, check=True,
                              height=rng.uniform(5.5, 9.0)):
            return False
        self.parcel_block.add(lot)
        lawn = _rgbn(_jitter(rng, (98, 128, 62), 0.1), "veg")
        mow = (angle + rng.choice([0.0, math.pi / 2]), rng.uniform(1.8, 3.0), 0.04, False) \
            if rng.random() < 0.4 else None
        self.late_ground.append((lot, lawn, dict(noise=0.04, mottle=0.06, patch=0.1, stripes=mow)))
        # Driveway to the garage end of the house, or to a detached garage.
        drive_shift = shift + rng.choice([-1, 1]) * (length / 2 - 2.5 if along_road else width / 2)
        drive_len = setback + 1.5
        garage_at = None
        if rng.random() < 0.4:
            garage_at = at + tangent * (shift + np.sign(drive_shift - shift) * (length / 2 + 6.0)) \
                + outward * (offset + setback + rng.uniform(3.0, 8.0))
            drive_shift = shift + np.sign(drive_shift - shift) * (length / 2 + 6.0)
        heading = math.atan2(outward[1], outward[0])
        drive_c = at + tangent * drive_shift + outward * (offset - 1.5 + drive_len / 2)
        self.late_ground.append((_rect(drive_c, drive_len, rng.uniform(3.5, 5.5), heading),
                                 _rgbn(_jitter(rng, driveway_rgb, 0.05), "man"),
                                 dict(noise=0.035, mottle=0.03)))
        if garage_at is not None:
            g_len, g_w = rng.uniform(6.0, 12.5), rng.uniform(6.0, 9.0)
            same = rng.random() < 0.7
            self._building("garage", [(garage_at, g_len, g_w, angle + rng.normal(0, 0.03))],
                           roof=str(rng.choice(["gable", "hip"])),
                           colour=colour if same else None, check=True, height=4.0)
        if rng.random() < 0.7 and rng.random() < 0.5:
            self._car(drive_c + outward * rng.uniform(-2, 2), heading)
        if rng.random() < (0.25 if suburban else 0.4):
            shed_c = house_c + outward * (across / 2 + rng.uniform(5.0, 12.0)) + tangent * rng.uniform(-8, 8)
            self._building("shed", [(shed_c, rng.uniform(2.5, 6.5), rng.uniform(2.4, 4.5),
                                     angle + rng.normal(0, 0.1))], check=True, height=2.8)
        for _ in range(int(rng.integers(0, 5 if suburban else 6))):
            spot = at + tangent * rng.uniform(-0.5, 0.5) * frontage + outward * (offset + rng.uniform(2, depth))
            self._tree(spot, rng.uniform(2.2, 5.5))
        return True

    def _plan_road_trees(self) -> None:
        rng = self.rng
        for road in self.roads:
            inside = road.line.intersection(self.area)
            if inside.is_empty or rng.random() < 0.4:
                continue
            for _ in range(int(inside.length / 35.0)):
                at = np.array(inside.interpolate(rng.uniform(0, inside.length)).coords[0])
                a, b = road.line.coords[0], road.line.coords[-1]
                tangent = np.subtract(b, a) / road.line.length
                normal = np.array([-tangent[1], tangent[0]])
                self._tree(at + normal * rng.choice([-1, 1]) * (road.half_width + rng.uniform(5, 10)),
                           rng.uniform(2.5, 5.0))

    def _ensure_classes(self) -> None:
        """Puts at least one residential and one non-residential building in the area."""
        rng = self.rng
        for group, kind in ((RESIDENTIAL_CLASSES, "house"), (NON_RESIDENTIAL_CLASSES, "barn")):
            if any(f.building in group for f in self.footprints):
                continue
            for _ in range(200):
                c = np.array([rng.uniform(15, self.w - 15), rng.uniform(-self.h + 15, -15)])
                if self._building(kind, [(c, rng.uniform(10, 16), rng.uniform(8, 11),
                                          self.theta + rng.normal(0, 0.05))], check=True):
                    break

    def _ensure_straddlers(self) -> None:
        """Makes sure some buildings cross internal tile edges, as real ones do."""
        c = self.config
        span = c.tile_size * c.pixel_size
        edges = ([LineString([(k * span, 0), (k * span, -self.h)]) for k in range(1, c.tiles_x)]
                 + [LineString([(0, -k * span), (self.w, -k * span)]) for k in range(1, c.tiles_y)])
        if not edges:
            return
        lines = shapely.union_all(edges)
        crossing = sum(1 for f in self.footprints if f.geom.intersects(lines))
        rng = self.rng
        for _ in range(300):
            if crossing >= 3:
                return
            edge = edges[int(rng.integers(len(edges)))]
            at = np.array(edge.interpolate(rng.uniform(0.05, 0.95) * edge.length).coords[0])
            kind = str(rng.choice(["shed", "farm_auxiliary", "house"]))
            size = rng.uniform(4.0, 7.0) if kind == "shed" else rng.uniform(9.0, 16.0)
            if self._building(kind, [(at + rng.normal(0, 1.0, 2), size, size * 0.7,
                                      self.theta + rng.normal(0, 0.3))], check=True):
                crossing += 1

    # -- buildings and trees --------------------------------------------------

    def _roof_colour(self, palette: str) -> tuple[tuple, str]:
        rng = self.rng
        if palette == "shingle":
            roll = rng.random()
            for rgb, material, p in _HOUSE_SPECIAL:
                if roll < p:
                    return _jitter(rng, rgb, 0.06), material
                roll -= p
            return _jitter(rng, _pick(rng, _SHINGLES)[0], 0.07), "man"
        if palette == "barn":
            rgb, material, _ = _pick(rng, _BARN)
            return _jitter(rng, rgb, 0.06), material
        if palette == "flat":
            return _jitter(rng, _pick(rng, _FLAT)[0], 0.04), "man"
        rgb, material, _ = _pick(rng, _SHED)
        return _jitter(rng, rgb, 0.08), material

    _DEFAULTS = {  # building value -> (roof choices with weights, palette, height range)
        "house": ({"gable": 0.55, "hip": 0.4, "flat": 0.05}, "shingle", (5.5, 9.0)),
        "detached": ({"gable": 0.55, "hip": 0.4, "flat": 0.05}, "shingle", (5.5, 9.0)),
        "residential": ({"gable": 0.55, "hip": 0.4, "flat": 0.05}, "shingle", (5.5, 9.0)),
        "apartments": ({"flat": 0.5, "gable": 0.3, "hip": 0.2}, "flat", (9.0, 13.0)),
        "barn": ({"gable": 0.6, "gambrel": 0.28, "shed": 0.12}, "barn", (7.0, 12.0)),
        "farm_auxiliary": ({"gable": 0.75, "shed": 0.25}, "barn", (5.0, 8.0)),
        "shed": ({"gable": 0.45, "shed": 0.35, "flat": 0.2}, "shed", (2.5, 3.5)),
        "garage": ({"gable": 0.6, "hip": 0.4}, "shingle", (3.5, 4.5)),
        "commercial": ({"flat": 1.0}, "flat", (5.0, 9.0)),
        "industrial": ({"flat": 1.0}, "flat", (6.0, 10.0)),
        "retail": ({"flat": 1.0}, "flat", (5.0, 8.0)),
    }

    def _building(self, kind: str, parts, *, roof: str | None = None, palette: str | None = None,
                  colour=None, height: float | None = None, check: bool = False) -> bool:
        """Adds a building made of rectangular parts (center, length, width, angle)."""
        rng = self.rng
        roofs, default_palette, heights = self._DEFAULTS[kind]
        rects = [_rect(c, length, width, angle) for c, length, width, angle in parts]
        footprint = shapely.union_all(rects) if len(rects) > 1 else rects[0]
        if footprint.geom_type != "Polygon":
            return False
        if check and (not self.inner.contains(footprint) or self.built.hits(footprint.buffer(1.5))
                      or self.road_block.hits(footprint)):
            return False
        if roof is None:
            names = list(roofs)
            weights = np.array([roofs[n] for n in names])
            roof = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if colour is None:
            colour = self._roof_colour(palette or default_palette)
        rgb, material = colour
        if height is None:
            height = rng.uniform(*heights)
        # Barns and sheds in red are painted metal; a red house roof is tile or shingle.
        metal = material == "metal" or (material == "red" and kind not in RESIDENTIAL_CLASSES)
        panel = (rng.uniform(1.6, 2.6), rng.uniform(0.05, 0.1)) if metal else None
        for rect in rects:
            # Most of a pitched roof's shadow comes from the eaves, not the ridge.
            self.shadows.append(_hull_shadow(rect, self.shadow_per_m * height * 0.7))
        for c, length, width, angle in parts:
            self._roof(np.asarray(c, float), length, width, angle, roof, rgb, material, panel)
        self._record(footprint, kind)
        return True

    def _facet_gain(self, direction: np.ndarray | None, pitch_deg: float) -> float:
        # Lambert shading of a roof facet, relative to a flat roof in the same sun.
        elev = math.radians(self.sun_elevation)
        sun = np.array([*(self.sun_h * math.cos(elev)), math.sin(elev)])
        if direction is None:
            normal = np.array([0.0, 0.0, 1.0])
        else:
            p = math.radians(pitch_deg)
            normal = np.array([*(direction * math.sin(p)), math.cos(p)])
        ambient, diffuse = 0.35, 0.65
        return (ambient + diffuse * max(0.0, float(normal @ sun))) / (ambient + diffuse * math.sin(elev))

    def _roof(self, c, length, width, angle, roof, rgb, material, panel) -> None:
        rng = self.rng
        axis, normal = _unit(angle), _unit(angle + math.pi / 2)
        hl, hw = length / 2, width / 2
        tex = dict(noise=0.05, mottle=0.05, patch=0.03, center=c)
        if panel is not None:
            # Metal panels run down the slope: seams across the ridge.
            tex.update(stripes=(angle, panel[0], panel[1], True), noise=0.03, mottle=0.02)
        base = np.array(rgb, float)
        if roof == "flat":
            self.objects.add(_rect(c, length, width, angle), _rgbn(base * 0.78, material), **tex)
            inner = _rect(c, length - 1.0, width - 1.0, angle)
            self.objects.add(inner, _rgbn(base, material), noise=0.03, mottle=0.05, patch=0.06)
            for _ in range(int(length * width / 180.0 * rng.uniform(0.5, 1.5))):
                unit_c = c + axis * rng.uniform(-hl + 3, hl - 3) + normal * rng.uniform(-hw + 3, hw - 3)
                hvac = _rect(unit_c, rng.uniform(1.2, 3.2), rng.uniform(1.0, 2.4), angle)
                self.objects.add(shapely.affinity.translate(hvac, *(self.shadow_per_m * 1.2)).intersection(inner),
                                 _rgbn(base * 0.55, material), noise=0.03)
                self.objects.add(hvac, _rgbn(_jitter(rng, (178, 180, 180), 0.1), "metal"), noise=0.04)
            return
        pitch = rng.uniform(22.0, 38.0)
        if roof == "shed":
            side = rng.choice([-1.0, 1.0])
            self.objects.add(_rect(c, length, width, angle),
                             _rgbn(base * self._facet_gain(normal * side, 10.0), material), **tex)
            return
        if roof == "hip" and length >= width:
            inset = hw
            r0, r1 = c - axis * (hl - inset), c + axis * (hl - inset)
            p0, p1 = c - axis * hl - normal * hw, c + axis * hl - normal * hw
            p2, p3 = c + axis * hl + normal * hw, c - axis * hl + normal * hw
            facets = [([p0, p1, r1, r0], -normal), ([p1, p2, r1], axis),
                      ([p2, p3, r0, r1], normal), ([p3, p0, r0], -axis)]
            for corners, facing in facets:
                self.objects.add(Polygon(corners),
                                 _rgbn(base * self._facet_gain(facing, pitch), material), **tex)
            if hl > hw:
                self.objects.add(LineString([r0, r1]), _rgbn(base * 1.15, material), noise=0.03)
            return
        if roof == "gambrel":
            strips = [(-hw, -0.3 * width, -1, 60.0), (-0.3 * width, 0.0, -1, 20.0),
                      (0.0, 0.3 * width, 1, 20.0), (0.3 * width, hw, 1, 60.0)]
        else:  # gable: the ridge runs along the length
            strips = [(-hw, 0.0, -1, pitch), (0.0, hw, 1, pitch)]
        for f0, f1, side, slope in strips:
            self.objects.add(_strip(c, axis, hl, f0, f1),
                             _rgbn(base * self._facet_gain(normal * side, slope), material), **tex)
        self.objects.add(LineString([c - axis * hl, c + axis * hl]),
                         _rgbn(base * 1.12, material), noise=0.03)

    def _record(self, footprint: Polygon, kind: str) -> None:
        self.footprints.append(_Footprint(shapely.normalize(footprint), kind))
        self.built.add(footprint.buffer(0.5))

    def _tree(self, at, radius: float, *, conifer: bool = False, dense: bool = False) -> None:
        rng = self.rng
        at = np.asarray(at, float)
        if not self.area.buffer(radius).contains(Point(*at)):
            return
        probe = Point(*at).buffer(max(radius * 0.35, 0.5))
        if self.road_block.hits(probe) or (not dense and self.built.hits(probe)):
            return
        shape = _circle(at, radius)
        if not conifer and rng.random() < 0.35:
            # A lobed crown: two overlapping circles read less like a stamp.
            lobe = _circle(at + rng.normal(0, radius * 0.45, 2), radius * rng.uniform(0.6, 0.9))
            shape = shapely.union(shape, lobe)
        rgb = (34, 56, 38) if conifer else (48, 72, 40)
        self.trees.add(shape, _rgbn(_jitter(rng, rgb, 0.15), "tree"), noise=0.1, mottle=0.22,
                       patch=0.05, center=at, radius=radius, radial=_CANOPY)
        # The crown shades the ground around the trunk; only its offset shows.
        height = radius * rng.uniform(1.6, 2.6)
        self.shadows.append(_hull_shadow(shape, self.shadow_per_m * height * 0.6))

    # -- output ------------------------------------------------------------------

    def _freeze(self) -> _Plan:
        # Lots, yards and lots' driveways sit on the fields; roads go over them.
        for geom, rgbn, kwargs in self.late_ground:
            self.ground.add(geom, rgbn, **kwargs)
        self._draw_roads()
        x0, y0 = self.config.origin
        shadows = np.array(self.shadows, dtype=object)
        if len(shadows):
            shadows = shapely.transform(shadows, lambda xy: xy + np.array([x0, y0]))
        return _Plan(ground=self.ground.freeze(x0, y0), shadows=shadows,
                     objects=self.objects.freeze(x0, y0), trees=self.trees.freeze(x0, y0),
                     footprints=self.footprints,
                     sun={"azimuth_deg": round(self.sun_azimuth, 2),
                          "elevation_deg": round(self.sun_elevation, 2)})


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


class _ValueNoise:
    """Smooth noise: a seeded coarse grid, bilinearly (smoothstep) sampled per tile."""

    def __init__(self, rng: np.random.Generator, height_px: int, width_px: int, cell_px: float):
        self.cell = max(float(cell_px), 1.0)
        shape = (int(height_px / self.cell) + 3, int(width_px / self.cell) + 3)
        self.grid = rng.standard_normal(shape).astype(np.float32)

    def sample(self, row0: int, col0: int, size: int) -> np.ndarray:
        coords = []
        for start in (row0, col0):
            pos = (start + np.arange(size) + 0.5) / self.cell
            idx = pos.astype(np.int64)
            frac = (pos - idx).astype(np.float32)
            coords.append((idx, frac * frac * (3 - 2 * frac)))
        (iy, fy), (ix, fx) = coords
        g = self.grid
        top = g[iy][:, ix] * (1 - fx) + g[iy][:, ix + 1] * fx
        bottom = g[iy + 1][:, ix] * (1 - fx) + g[iy + 1][:, ix + 1] * fx
        return top * (1 - fy)[:, None] + bottom * fy[:, None]


@dataclasses.dataclass
class _Tile:
    row: int
    col: int
    size: int
    pixel_size: float
    transform: Affine

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, y1 = self.transform.c, self.transform.f
        span = self.size * self.pixel_size
        return x0, y1 - span, x0 + span, y1


def _burn(layer: dict, tile: _Tile) -> np.ndarray:
    x0, y0, x1, y1 = tile.bounds
    b = layer["bounds"]
    idx = np.nonzero((b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0))[0]
    if not idx.size:
        return np.zeros((tile.size, tile.size), np.int32)
    geoms = layer["geoms"]
    return rasterio.features.rasterize(
        ((geoms[i], int(i) + 1) for i in idx), out_shape=(tile.size, tile.size),
        transform=tile.transform, fill=0, dtype="int32")


def _paint(canvas: np.ndarray, layer: dict, tile: _Tile, fields: dict, sun_h: np.ndarray) -> None:
    """Burns one draw list into ``canvas`` (H, W, 4) with its colours and textures."""
    ids = _burn(layer, tile)
    rows, cols = np.nonzero(ids)
    if not rows.size:
        return
    k = ids[rows, cols] - 1
    gain = (1.0 + layer["noise"][k] * fields["fine"][rows, cols]
            + layer["mottle"][k] * fields["mottle"][rows, cols]
            + layer["patch"][k] * fields["patch"][rows, cols])
    ps = tile.pixel_size
    # Pixel centres in the planner's local frame (metres from the area's corner).
    lx = (tile.col * tile.size + cols + 0.5) * ps
    ly = -(tile.row * tile.size + rows + 0.5) * ps
    sel = np.nonzero(layer["s_amp"][k] > 0)[0]
    if sel.size:
        ks = k[sel]
        ang = layer["s_angle"][ks]
        u = (lx[sel] - layer["cx"][ks]) * np.cos(ang) + (ly[sel] - layer["cy"][ks]) * np.sin(ang)
        phase = u / layer["s_period"][ks] + layer["s_phase"][ks]
        wave = np.where(layer["s_sharp"][ks] > 0, np.where(phase % 1.0 < 0.22, -1.0, 0.3),
                        np.sin(2 * np.pi * phase))
        gain[sel] *= 1.0 + layer["s_amp"][ks] * wave
    sel = np.nonzero(layer["radial"][k] > 0)[0]
    if sel.size:
        ks = k[sel]
        dx, dy = lx[sel] - layer["cx"][ks], ly[sel] - layer["cy"][ks]
        dist = np.hypot(dx, dy)
        rr = np.clip(dist / np.maximum(layer["radius"][ks], 0.1), 0.0, 1.3)
        toward_sun = (dx * sun_h[0] + dy * sun_h[1]) / (dist + 1e-6)
        canopy = (1 - 0.38 * rr**2) * (1 + 0.3 * toward_sun * rr)
        cone = (1 + 0.3 * toward_sun * np.minimum(rr * 1.3, 1.0)) * np.where(rr < 0.12, 1.12, 1.0)
        gain[sel] *= np.where(layer["radial"][ks] == _CANOPY, canopy, cone)
    canvas[rows, cols, :] = layer["rgbn"][k] * gain[:, None].astype(np.float32)


def _blur(canvas: np.ndarray) -> np.ndarray:
    # A [1, 2, 1] kernel each way: the slight softness of a real camera and
    # orthorectification resampling.
    p = np.pad(canvas, ((1, 1), (0, 0), (0, 0)), mode="edge")
    canvas = (p[:-2] + 2 * p[1:-1] + p[2:]) * 0.25
    p = np.pad(canvas, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * 0.25


class _Renderer:
    """Renders tiles of a plan; the noise fields span the whole area."""

    def __init__(self, plan: _Plan, config: SampleAreaConfig):
        self.plan, self.config = plan, config
        rng = np.random.default_rng([config.seed, 1])
        h_px, w_px = config.tiles_y * config.tile_size, config.tiles_x * config.tile_size
        ps = config.pixel_size
        self.mottle = [_ValueNoise(rng, h_px, w_px, 1.2 / ps), _ValueNoise(rng, h_px, w_px, 3.5 / ps)]
        self.patch = [_ValueNoise(rng, h_px, w_px, 12.0 / ps), _ValueNoise(rng, h_px, w_px, 40.0 / ps)]
        # Each tile of a mosaic comes from a different exposure: a small gain
        # and colour cast per tile, as in real county orthophotos.
        count = config.tiles_x * config.tiles_y
        self.gains = rng.normal(1.0, 0.025, count)
        self.casts = rng.normal(1.0, 0.012, (count, 4))
        self.haze = rng.uniform(8.0, 16.0)
        self.shadow = np.array([0.42, 0.46, 0.56, 0.5], np.float32)
        az = math.radians(plan.sun["azimuth_deg"])
        self.sun_h = np.array([math.sin(az), math.cos(az)])

    def render(self, row: int, col: int) -> np.ndarray:
        """Tile (row, col) as float32 (H, W, 4) in 8-bit units, bands R, G, B, NIR."""
        c = self.config
        size = c.tile_size
        tile = _Tile(row, col, size, c.pixel_size, c.tile_transform(row, col))
        rng = np.random.default_rng([c.seed, 2, row, col])
        r0, c0 = row * size, col * size
        fields = {
            "fine": rng.standard_normal((size, size), dtype=np.float32),
            "mottle": 0.8 * self.mottle[0].sample(r0, c0, size) + 0.6 * self.mottle[1].sample(r0, c0, size),
            "patch": 0.6 * self.patch[0].sample(r0, c0, size) + 0.8 * self.patch[1].sample(r0, c0, size),
        }
        canvas = np.empty((size, size, 4), np.float32)
        canvas[:] = (110, 128, 70, 170)  # grass, should any pixel escape every parcel
        _paint(canvas, self.plan.ground, tile, fields, self.sun_h)
        if len(self.plan.shadows):
            shade = rasterio.features.rasterize(
                ((g, 1) for g in self.plan.shadows), out_shape=(size, size),
                transform=tile.transform, fill=0, dtype="uint8").astype(bool)
            canvas[shade] *= self.shadow
        _paint(canvas, self.plan.objects, tile, fields, self.sun_h)
        _paint(canvas, self.plan.trees, tile, fields, self.sun_h)
        canvas = _blur(canvas)
        # Aerial cameras record muted colours: pull chroma toward luminance.
        lum = canvas[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        canvas[..., :3] = lum[..., None] + (canvas[..., :3] - lum[..., None]) * 0.8
        index = row * c.tiles_x + col
        canvas = canvas * (self.gains[index] * self.casts[index]).astype(np.float32) * 0.93 + self.haze
        canvas += rng.normal(0.0, 1.6, canvas.shape).astype(np.float32)
        return canvas


def _to_bands(canvas: np.ndarray, bands: str, dtype: str) -> np.ndarray:
    """(H, W, 4) float in 8-bit units -> (bands, H, W) integers of ``dtype``."""
    if bands == "gray":
        data = (0.299 * canvas[..., 0] + 0.587 * canvas[..., 1] + 0.114 * canvas[..., 2])[None]
    else:
        data = np.moveaxis(canvas[..., :len(BAND_NAMES[bands])], -1, 0)
    top = DTYPE_MAX[dtype]
    scaled = data * (top / 255.0) if top != 255 else data
    return np.clip(np.rint(scaled), 0, top).astype(dtype)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _tmp_path(final: str) -> str:
    folder, name = os.path.split(final)
    return os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{name}")


def _write_geotiff(path: str, data: np.ndarray, config: SampleAreaConfig, transform: Affine,
                   descriptions: Sequence[str], photometric: str | None) -> None:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=config.crs, transform=transform, tiled=True,
                   blockxsize=config.block_size, blockysize=config.block_size,
                   compress="deflate", predictor=2)
    if photometric:
        profile["photometric"] = photometric
    tmp = _tmp_path(path)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = tuple(descriptions)
            dst.update_tags(generator="footprints.sample_area", seed=str(config.seed))
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


def _write_footprints(root: str, geoms: np.ndarray, attrs: dict[str, list[str]], crs: str,
                      fmt: str) -> str:
    driver, ext = FOOTPRINT_FORMATS[fmt]
    final = os.path.join(root, "footprints" + ext)
    staging = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root)
    try:
        target = os.path.join(staging, "footprints" + ext)
        if driver is None:
            _write_geoparquet(target, geoms, attrs, crs)
        else:
            pyogrio.raw.write(
                target, shapely.to_wkb(geoms), [np.array(v, dtype=object) for v in attrs.values()],
                list(attrs), layer="footprints", driver=driver, geometry_type="Polygon", crs=crs,
                **({"encoding": "UTF-8"} if fmt == "shp" else {}))
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
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                 "crs": pyproj.CRS.from_user_input(crs).to_json_dict(),
                                 **({"bbox": bbox} if bbox else {})}},
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


def generate_sample_area(out_dir: str, config: SampleAreaConfig = SampleAreaConfig()) -> SampleArea:
    """Generates a sample area into ``out_dir`` and returns where everything is.

    Example::

        area = generate_sample_area("/tmp/area", SampleAreaConfig(seed=3, tiles_x=3))
        area.tiles[0]     # '/tmp/area/tiles/tile_r0_c0.tif'
        area.counts       # {'barn': 4, 'house': 21, ..., 'total': 77}

    Args:
        out_dir: Folder to write; created if missing. Outputs of an earlier
            run there are replaced.
        config: What to generate.

    Returns:
        The :class:`SampleArea` written.

    Raises:
        ConfigError: ``config`` is not a :class:`SampleAreaConfig`, or
            ``out_dir`` exists and is not a folder.
    """
    if not isinstance(config, SampleAreaConfig):
        raise ConfigError(f"config {config!r} is not a SampleAreaConfig; build one with "
                          "SampleAreaConfig(...)")
    root = os.path.abspath(out_dir)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(f"output {out_dir!r} exists and is not a folder; pick another path")
    started = time.perf_counter()
    for sub in ("tiles", "masks"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    manifest = os.path.join(root, MANIFEST_NAME)
    if os.path.exists(manifest):
        # Until the new manifest is written, the folder must not look complete.
        os.remove(manifest)

    plan = _Planner(config).plan()
    x0, y0 = config.origin
    local = np.array([f.geom for f in plan.footprints], dtype=object)
    world = shapely.transform(local, lambda xy: xy + np.array([x0, y0])) if len(local) else local
    regions = config.region_names
    centroid_x = shapely.get_x(shapely.centroid(local)) if len(local) else np.empty(0)
    region_index = np.clip((centroid_x / config.width_m * config.regions).astype(int), 0,
                           config.regions - 1)
    attrs = {"id": [f"fp-{i + 1:06d}" for i in range(len(local))],
             "building": [f.building for f in plan.footprints],
             "region": [regions[i] for i in region_index]}

    renderer = _Renderer(plan, config)
    tiles, masks, names, tile_entries = [], [], set(), []
    photometric = "RGB" if config.bands == "rgb" else None
    bounds = shapely.bounds(world) if len(world) else np.empty((0, 4))
    for row in range(config.tiles_y):
        for col in range(config.tiles_x):
            name = f"tile_r{row}_c{col}.tif"
            transform = config.tile_transform(row, col)
            tile_path = os.path.join(root, "tiles", name)
            mask_path = os.path.join(root, "masks", name)
            data = _to_bands(renderer.render(row, col), config.bands, config.dtype)
            _write_geotiff(tile_path, data, config, transform, BAND_NAMES[config.bands], photometric)
            tile = _Tile(row, col, config.tile_size, config.pixel_size, transform)
            mask = _burn({"geoms": world, "bounds": bounds}, tile)
            _write_geotiff(mask_path, (mask > 0).astype(np.uint8)[None], config, transform,
                           ("building",), None)
            tiles.append(tile_path)
            masks.append(mask_path)
            names.add(name)
            tile_entries.append({"row": row, "col": col, "tile": f"tiles/{name}",
                                 "mask": f"masks/{name}", "transform": list(transform)[:6]})

    out_crs = config.footprints_crs or config.crs
    footprints = _write_footprints(root, _reproject(world, config.crs, config.footprints_crs),
                                   attrs, out_crs, config.footprints_format)
    _remove_stale(root, names, footprints)

    counts: dict[str, int] = {}
    for value in attrs["building"]:
        counts[value] = counts.get(value, 0) + 1
    counts = dict(sorted(counts.items()))
    counts["total"] = len(attrs["building"])
    _write_json(manifest, {
        "generator": "footprints.sample_area",
        "config": dataclasses.asdict(config),
        "crs": config.crs,
        "footprints_crs": out_crs,
        "bounds": [x0, y0 - config.height_m, x0 + config.width_m, y0],
        "pixel_size": config.pixel_size,
        "bands": list(BAND_NAMES[config.bands]),
        "dtype": config.dtype,
        "max_value": DTYPE_MAX[config.dtype],
        "nodata": None,
        "tiles": tile_entries,
        "footprints": os.path.basename(footprints),
        "counts": counts,
        "regions": list(regions),
        "residential_classes": list(RESIDENTIAL_CLASSES),
        "non_residential_classes": list(NON_RESIDENTIAL_CLASSES),
        "sun": plan.sun,
    })
    logger.info("sample area of %d tiles and %d footprints in %s (%.1f s)", len(tiles),
                counts["total"], root, time.perf_counter() - started)
    return SampleArea(root=root, tiles=tuple(tiles), masks=tuple(masks), footprints=footprints,
                      crs=config.crs, config=config, counts=counts)


__all__ = [
    "BAND_NAMES", "DTYPE_MAX", "FOOTPRINT_FORMATS", "MANIFEST_NAME", "NON_RESIDENTIAL_CLASSES",
    "RESIDENTIAL_CLASSES", "SampleArea", "SampleAreaConfig", "generate_sample_area",
    "is_residential",
]
