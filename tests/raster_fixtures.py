"""Tiny GeoTIFFs and vector files with a real CRS, for tests that need exact control.

The sample area (``footprints_app.sample_area``) is realistic; these are the
opposite: a few pixels of seeded noise, so a test can say exactly which
pixel must land where.
"""

from __future__ import annotations

import os

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from affine import Affine
from rasterio.transform import from_origin

UTM = "EPSG:32615"
X0, Y0, RES = 500_000.0, 4_650_000.0, 0.5


def write_geotiff(
    path,
    data: np.ndarray,
    *,
    crs: str | None = UTM,
    transform: Affine | None = None,
    origin: tuple[float, float] = (X0, Y0),
    pixel_size: float = RES,
    nodata: float | None = None,
    tiled: bool = True,
    blocksize: int = 64,
    compress: str | None = None,
    mask: np.ndarray | None = None,
) -> str:
    """Writes band-first ``data`` ([bands, H, W]) as a GeoTIFF; returns ``str(path)``.

    The one GeoTIFF writer of the tests: every test that needs a tile on disk
    calls it, so all of them are written the same way (a real CRS and
    geotransform, internal 64 x 64 blocks).

    Args:
        path: Where to write; missing parent folders are created.
        data: Pixels, band first; its dtype is the file's.
        crs: The CRS; ``None`` writes a tile without one (and without a
            geotransform unless ``transform`` is given).
        transform: The geotransform; default: north-up from ``origin`` (the
            top-left corner) with square ``pixel_size`` pixels.
        origin: Top-left corner, used when ``transform`` is None.
        pixel_size: Pixel size in CRS units, used when ``transform`` is None.
        nodata: The nodata value, or None.
        tiled: Internal blocks of ``blocksize``; False writes 4-row strips.
        blocksize: Block width and height when ``tiled``.
        compress: GDAL compression (``"deflate"``, ...), or None for none.
        mask: An internal (per-dataset) mask, 255 valid / 0 invalid, [H, W],
            written as NAIP COGs carry theirs (``GDAL_TIFF_INTERNAL_MASK``).
    """
    count, height, width = data.shape
    profile: dict = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
    }
    if compress is not None:
        profile["compress"] = compress
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = transform or from_origin(*origin, pixel_size, pixel_size)
    elif transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    else:
        profile.update(tiled=False, blockysize=4)
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=mask is not None):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(mask)
    return str(path)


def noise_tiles(folder, n=2, size=200, seed=0, count=3, dtype="uint8") -> list[str]:
    """``n`` side-by-side tiles of seeded noise on one UTM grid (west to east)."""
    rng = np.random.default_rng(seed)
    high = 255 if dtype == "uint8" else 4095
    paths = []
    for i in range(n):
        data = rng.integers(0, high, (count, size, size)).astype(dtype)
        paths.append(
            write_geotiff(
                folder / f"t{i}.tif", data, transform=from_origin(X0 + i * size * RES, Y0, RES, RES)
            )
        )
    return paths


def write_footprints(path, geoms, ids, classes=None, regions=None, crs=UTM, driver="GPKG") -> str:
    """Writes polygons with ``id``/``building``/``region`` attributes via pyogrio."""
    fields, values = ["id"], [np.array(ids, dtype=object)]
    if classes is not None:
        fields.append("building")
        values.append(np.array(classes, dtype=object))
    if regions is not None:
        fields.append("region")
        values.append(np.array(regions, dtype=object))
    pyogrio.raw.write(
        str(path),
        np.array(shapely.to_wkb(geoms), dtype=object),
        values,
        fields=fields,
        geometry_type="Unknown",
        crs=crs,
        driver=driver,
    )
    return str(path)


def read_shards(pattern: str) -> list:
    """Every chip record in the shards matching ``pattern``, decoded."""
    import glob

    import tensorflow as tf

    from footprints import contracts

    chips = []
    for path in sorted(glob.glob(pattern)):
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            chips.append(contracts.decode_chip(record.numpy()))
    return chips


def decode_png(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> H x W x C uint8."""
    import io

    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[..., None] if arr.ndim == 2 else arr


def footprint_rows(rows, crs):
    """``rows`` (footprint_id, tile, area_m2, mean_probability, geometry WKB) completed
    with the provenance columns of ``footprints.contracts.FOOTPRINTS_SCHEMA``."""
    import shapely

    from pipeline.writers.geo import lonlat_centroids

    lon, lat = lonlat_centroids([shapely.from_wkb(r["geometry"]) for r in rows], crs)
    return [
        {
            **r,
            "centroid_lon": float(x),
            "centroid_lat": float(y),
            "segmenter_model_id": "segmenter",
            "run_id": "test-run",
        }
        for r, x, y in zip(rows, lon, lat, strict=True)
    ]


# --------------------------------------------------------------------------
# Two tiles in neighbouring UTM zones, each with a nodata collar
# --------------------------------------------------------------------------

#: The meridian between UTM zones 15 and 16 (zone 15: -96..-90 deg).
ZONE_EDGE_LON = -90.0
#: A latitude near West Memphis, where NAIP quarter-quads of both zones meet.
ZONE_EDGE_LAT = 35.15


class ZonePair:
    """Two uint16 single-band tiles, UTM 15N west and 16N east of -90 deg, as NAIP ships them.

    Each tile is a north-up rectangle on its own zone's grid around the
    meridian; its pixels on the far side of the meridian are a nodata
    collar (0), so the valid data of the two tiles meet along the meridian
    while the rectangles overlap. Both sample one world: a smooth ground
    texture plus ``building`` (a lon/lat polygon) at a bright value, so a
    pixel that either tile holds has the same value in both.

    Attributes:
        west: Path of the EPSG:32615 tile.
        east: Path of the EPSG:32616 tile.
        building: The building across the meridian, lon/lat (EPSG:4326).
        crs: ``{path: crs}``.
    """

    GROUND, ROOF, NODATA = 800, 3500, 0

    def __init__(self, folder, size: int = 240, res: float = 0.6, collar_m: float = 24.0):
        import pyproj

        self.res, self.size = res, size
        # A 48 x 42 m roof, 26 m west and 22 m east of the meridian (about 2,000 m^2).
        self.building = self.lonlat_box(-26.0, -20.0, 22.0, 22.0)
        self.west = self._tile(folder / "west_15n.tif", "EPSG:32615", -(size * res - collar_m))
        self.east = self._tile(folder / "east_16n.tif", "EPSG:32616", -collar_m)
        self.crs = {self.west: "EPSG:32615", self.east: "EPSG:32616"}
        self._geod = pyproj.Geod(ellps="WGS84")

    @staticmethod
    def lonlat(east_m, north_m):
        """Metres east/north of (ZONE_EDGE_LON, ZONE_EDGE_LAT) -> lon, lat (local tangent plane)."""
        lat = ZONE_EDGE_LAT + np.asarray(north_m) / 110_950.0
        lon = ZONE_EDGE_LON + np.asarray(east_m) / (111_320.0 * np.cos(np.radians(ZONE_EDGE_LAT)))
        return lon, lat

    def lonlat_box(self, west_m, south_m, east_m, north_m):
        """A box given in metres around the meridian's reference point, as a lon/lat polygon."""
        xs, ys = [west_m, east_m, east_m, west_m], [south_m, south_m, north_m, north_m]
        return shapely.Polygon(np.column_stack(self.lonlat(xs, ys)))

    def true_area_m2(self) -> float:
        """The building's geodesic area on the WGS 84 ellipsoid, independent of any tile."""
        return abs(self._geod.geometry_area_perimeter(self.building)[0])

    def world(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The scene's value at lon/lat: smooth ground, bright roof."""
        east_m = (lon - ZONE_EDGE_LON) * 111_320.0 * np.cos(np.radians(ZONE_EDGE_LAT))
        north_m = (lat - ZONE_EDGE_LAT) * 110_950.0
        ground = self.GROUND + 150 * np.sin(east_m / 9.0) * np.cos(north_m / 7.0)
        roof = shapely.contains_xy(self.building, lon, lat)
        return np.where(roof, self.ROOF, ground).astype(np.uint16)

    def _tile(self, path, crs: str, west_of_edge_m: float) -> str:
        import pyproj

        to_utm = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        # The grid: whole pixels, its west edge ``west_of_edge_m`` from the meridian.
        edge_x, edge_y = to_utm.transform(ZONE_EDGE_LON, ZONE_EDGE_LAT)
        x0 = np.floor((edge_x + west_of_edge_m) / self.res) * self.res
        y0 = np.ceil((edge_y + self.size * self.res / 2) / self.res) * self.res
        transform = from_origin(x0, y0, self.res, self.res)
        cols, rows = np.meshgrid(np.arange(self.size) + 0.5, np.arange(self.size) + 0.5)
        lon, lat = to_lonlat.transform(x0 + cols * self.res, y0 - rows * self.res)
        values = self.world(lon, lat)
        mine = (lon < ZONE_EDGE_LON) if crs.endswith("15") else (lon >= ZONE_EDGE_LON)
        values[~mine] = self.NODATA  # the collar: the other zone's side of the meridian
        return write_geotiff(
            path, values[None], crs=crs, transform=transform, nodata=self.NODATA, blocksize=64
        )

    def valid(self, path: str) -> np.ndarray:
        """Where the tile holds data (outside its collar)."""
        with rasterio.open(path) as src:
            return src.read_masks(1) > 0

    def roof(self, path: str) -> np.ndarray:
        """The building's pixels in the tile (a perfect segmenter's mask), collar excluded."""
        with rasterio.open(path) as src:
            return (src.read(1) == self.ROOF) & (src.read_masks(1) > 0)


def write_sparse_geotiff(
    path,
    height: int,
    width: int,
    blocks: dict[tuple[int, int], np.ndarray],
    *,
    count: int = 1,
    dtype: str = "uint16",
    blocksize: int = 256,
    nodata: float | None = None,
    crs: str = UTM,
    origin: tuple[float, float] = (X0, Y0),
    pixel_size: float = RES,
) -> str:
    """A tiled GeoTIFF of any declared size that stores only ``blocks`` (GDAL's ``SPARSE_OK``).

    What a sparse export or a partly filled mosaic looks like: the header
    declares ``height`` x ``width`` pixels, the file holds a few blocks, and
    GDAL makes up the rest (nodata, or 0) when read. Not :func:`write_geotiff`,
    which takes the whole array: a 200000 x 200000 tile is never one array.

    Args:
        path: Where to write.
        height: Declared rows.
        width: Declared columns.
        blocks: ``{(block_row, block_col): pixels [count, blocksize, blocksize]}``,
            the blocks stored.
        count: Bands.
        dtype: The pixels' type.
        blocksize: Block width and height.
        nodata: The nodata value, or None.
        crs: The CRS.
        origin: Top-left corner.
        pixel_size: Square pixel size in CRS units.
    """
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=from_origin(*origin, pixel_size, pixel_size),
        tiled=True,
        blockxsize=blocksize,
        blockysize=blocksize,
        sparse_ok=True,
        bigtiff="IF_SAFER",
    )
    if nodata is not None:
        profile["nodata"] = nodata
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        for (row, col), pixels in sorted(blocks.items()):
            window = Window(col * blocksize, row * blocksize, blocksize, blocksize)
            dst.write(pixels.astype(dtype), window=window)
    return str(path)
