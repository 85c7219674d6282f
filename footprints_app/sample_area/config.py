"""What sample area to make, what was made, and the contract of its outputs.

:class:`SampleAreaConfig` is the one input of the generator. It is frozen and
validated on construction, so a bad value fails before anything is planned
or written, with a message that shows the value and how to fix it.
:class:`SampleArea` is what :func:`~footprints_app.sample_area.generate_sample_area`
returns: where the tiles, masks and footprints were written.

The constants are the contract the rest of footprints reads the area by: the
OSM-style ``building`` values and which of them count as residential, the
band names and value range per ``bands`` and ``dtype``, and the vector
formats the footprints can be written in.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pyproj
from rasterio.transform import Affine, from_origin

from footprints.errors import ConfigError

#: ``building`` values counted as residential (label 1 in the chip contract).
RESIDENTIAL_CLASSES: tuple[str, ...] = ("house", "detached", "residential", "apartments")
#: ``building`` values counted as non-residential (label 0).
NON_RESIDENTIAL_CLASSES: tuple[str, ...] = (
    "barn",
    "shed",
    "garage",
    "farm_auxiliary",
    "commercial",
    "industrial",
    "retail",
)

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
        f"{RESIDENTIAL_CLASSES + NON_RESIDENTIAL_CLASSES}"
    )


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
                "tiling requires; use 128, 256 or 512"
            )
        pixels = self.tiles_x * self.tiles_y * self.tile_size**2
        if pixels > MAX_CANVAS_PIXELS:
            raise ConfigError(
                f"{self.tiles_x}x{self.tiles_y} tiles of {self.tile_size} px are {pixels:,} "
                f"pixels, more than the {MAX_CANVAS_PIXELS:,} this generator renders; "
                "use fewer or smaller tiles"
            )
        object.__setattr__(
            self,
            "pixel_size",
            _check_float(
                "pixel_size",
                self.pixel_size,
                0.1,
                2.0,
                "use metres per pixel between 0.1 and 2.0 (0.3 to 0.6 is typical)",
            ),
        )
        object.__setattr__(
            self,
            "density",
            _check_float("density", self.density, 0.1, 5.0, "use a multiplier between 0.1 and 5"),
        )
        _check_int("regions", self.regions, 1, 26, "use 1 to 26 regions")
        tile_crs = _parse_crs("crs", self.crs)
        if not tile_crs.is_projected or tile_crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise ConfigError(
                f"crs {self.crs!r} is not a projected CRS in metres; use a UTM zone "
                "such as 'EPSG:32615'"
            )
        if self.footprints_crs is not None:
            _parse_crs("footprints_crs", self.footprints_crs)
        try:
            origin = tuple(float(v) for v in self.origin)
        except (TypeError, ValueError):
            origin = ()
        if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
            raise ConfigError(
                f"origin {self.origin!r} is not an (x, y) pair of finite numbers; "
                "give the upper-left corner in the tiles' CRS, e.g. (500000.0, 4650000.0)"
            )
        object.__setattr__(self, "origin", origin)
        for name, value, allowed in (
            ("bands", self.bands, BAND_NAMES),
            ("dtype", self.dtype, DTYPE_MAX),
            ("footprints_format", self.footprints_format, FOOTPRINT_FORMATS),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"{name} {value!r} is not supported; use one of {', '.join(allowed)}"
                )

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
            "use an authority code such as 'EPSG:32615' or 'EPSG:4326'"
        ) from None


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
