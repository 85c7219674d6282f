"""A spatial index of orthophoto tiles, for finding the tiles under a footprint.

The driver never opens the rasters: workers read each tile's header into a
:class:`TileInfo` (a small, picklable value), bad tiles become dead letters,
and the good ones travel to the chipping step as a side input. There a
:class:`TileIndex` answers "which tiles does this polygon touch, and what is
the polygon in each tile's CRS" with one shapely STRtree per CRS, so an area
that spans UTM zones, or mixes projected and geographic tiles, needs no
special case.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import affine
import shapely
import shapely.ops

from footprints.contracts import ErrorRecord


@dataclasses.dataclass(frozen=True)
class TileInfo:
    """The header of one orthophoto tile.

    Attributes:
        path: Where the GeoTIFF is.
        crs: Its CRS, as ``EPSG:nnnn`` or WKT.
        transform: The affine geotransform as a 6-tuple (a, b, c, d, e, f).
        width: Columns.
        height: Rows.
        count: Bands.
        dtype: Pixel type of band 1 (``uint8``, ``uint16``, ...).
        nodata: The nodata value, or None.
    """

    path: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None = None

    @property
    def affine(self) -> affine.Affine:
        """The tile's geotransform as an Affine."""
        return affine.Affine(*self.transform)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel width and height in CRS units."""
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The tile's extent as ``(minx, miny, maxx, maxy)`` in its CRS."""
        a = self.affine
        x0, y0 = a * (0, 0)
        x1, y1 = a * (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def box(self) -> shapely.Polygon:
        """The tile's extent as a polygon."""
        return shapely.box(*self.bounds)


def crs_string(crs) -> str:
    """``EPSG:nnnn`` when the CRS has a code, else its WKT.

    Takes a rasterio CRS, a pyproj CRS, PROJJSON or any text pyproj reads.
    """
    import pyproj

    crs = pyproj.CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def read_tile_info(path: str) -> TileInfo | ErrorRecord:
    """Reads a tile's header, or explains why the tile cannot be used."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    try:
        with rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
            info = dict(
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                nodata=src.nodata,
            )
            # One pixel of the last block: a truncated file fails here, at the
            # cost of a single block read, instead of in the middle of chipping.
            src.read(1, window=Window(src.width - 1, src.height - 1, 1, 1))
    except (RasterioIOError, OSError) as exc:
        return ErrorRecord(
            path,
            "",
            "read_raster",
            "unreadable_raster",
            f"not a readable raster ({exc}); check the file is a complete GeoTIFF",
        )
    if crs is None:
        return ErrorRecord(
            path,
            "",
            "read_raster",
            "no_crs",
            "the raster has no CRS; assign one, e.g. gdal_edit.py -a_srs EPSG:26915 tile.tif",
        )
    if transform.is_identity:
        return ErrorRecord(
            path,
            "",
            "read_raster",
            "no_transform",
            "the raster has no geotransform; georeference it first",
        )
    if transform.b != 0 or transform.d != 0:
        return ErrorRecord(
            path,
            "",
            "read_raster",
            "rotated_transform",
            "rotated rasters are not supported; warp it north-up with gdalwarp",
        )
    return TileInfo(path=path, crs=crs_string(crs), transform=tuple(transform)[:6], **info)


@functools.lru_cache(maxsize=256)
def _transformer(src_crs: str, dst_crs: str):
    import pyproj

    return pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def reproject_geometry(geom: shapely.Geometry, src_crs: str, dst_crs: str) -> shapely.Geometry:
    """``geom`` from ``src_crs`` to ``dst_crs`` (a no-op when they are equal)."""
    if src_crs == dst_crs:
        return geom
    return shapely.ops.transform(_transformer(src_crs, dst_crs).transform, geom)


class TileHit(NamedTuple):
    """A tile under a polygon: the tile, the polygon in its CRS, the share inside it."""

    tile: TileInfo
    geometry: shapely.Geometry
    fraction: float


class TileIndex:
    """Finds the tiles a polygon touches, across any number of CRSs.

    Picklable: the STRtrees are built on first use in each worker.
    """

    def __init__(self, tiles: list[TileInfo]):
        self.tiles = sorted(tiles, key=lambda t: t.path)
        self._trees: dict[str, tuple[shapely.STRtree, list[TileInfo]]] | None = None

    def __getstate__(self):
        return {"tiles": self.tiles, "_trees": None}

    def _by_crs(self) -> dict[str, tuple[shapely.STRtree, list[TileInfo]]]:
        if self._trees is None:
            groups: dict[str, list[TileInfo]] = {}
            for tile in self.tiles:
                groups.setdefault(tile.crs, []).append(tile)
            self._trees = {
                crs: (shapely.STRtree([t.box for t in group]), group)
                for crs, group in groups.items()
            }
        return self._trees

    def __len__(self):
        return len(self.tiles)

    def touching(self, geom: shapely.Geometry, geom_crs: str) -> list[TileHit]:
        """Tiles whose extent intersects ``geom``, each with ``geom`` in its CRS.

        Sorted by the area of the polygon inside the tile, largest first, then
        by path, so the first entry is the tile a chip is cut on.
        """
        found = []
        for crs, (tree, group) in self._by_crs().items():
            local = reproject_geometry(geom, geom_crs, crs)
            for i in tree.query(local, predicate="intersects"):
                tile = group[int(i)]
                found.append(TileHit(tile, local, local.intersection(tile.box).area / local.area))
        found.sort(key=lambda hit: (-hit.fraction, hit.tile.path))
        return found
