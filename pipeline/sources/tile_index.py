"""A spatial index of orthophoto tiles, for finding the tiles under a footprint.

The driver never opens the rasters: workers read each tile's header into a
:class:`~footprints.tiles.TileInfo` (a small, picklable value; see
:class:`pipeline.sources.rasters.ReadTiles`), bad tiles become dead letters,
and the good ones travel to the chipping step as a side input. There a
:class:`TileIndex` answers "which tiles does this polygon touch, and what is
the polygon in each tile's CRS" with one shapely STRtree per CRS, so an area
that spans UTM zones, or mixes projected and geographic tiles, needs no
special case.

It runs twice per footprint (the footprint, then its chip's square), so it
is kept lean: a polygon is reprojected as one coordinate array through a
cached ``pyproj`` transformer, the tiles' boxes are built once (prepared for
repeated predicates), and a polygon wholly inside a tile gets the share 1.0
without an intersection.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import shapely

from footprints.tiles import TileInfo

if TYPE_CHECKING:
    import pyproj


@functools.lru_cache(maxsize=256)
def _transformer(src_crs: str, dst_crs: str) -> pyproj.Transformer:
    import pyproj

    return pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def reproject_geometry(geom: shapely.Geometry, src_crs: str, dst_crs: str) -> shapely.Geometry:
    """``geom`` from ``src_crs`` to ``dst_crs`` (a no-op when they are equal)."""
    if src_crs == dst_crs:
        return geom
    transformer = _transformer(src_crs, dst_crs)

    def project(coords: np.ndarray) -> np.ndarray:
        # All of the polygon's vertices in one call: the same PROJ arithmetic
        # as point by point, without a Python call per ring or coordinate.
        return np.column_stack(transformer.transform(*coords.T))

    return shapely.transform(geom, project, include_z=None)


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
        self._trees: dict[str, tuple[shapely.STRtree, list[TileInfo], np.ndarray]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"tiles": self.tiles, "_trees": None}

    def _by_crs(self) -> dict[str, tuple[shapely.STRtree, list[TileInfo], np.ndarray]]:
        if self._trees is None:
            groups: dict[str, list[TileInfo]] = {}
            for tile in self.tiles:
                groups.setdefault(tile.crs, []).append(tile)
            self._trees = {}
            for crs, group in groups.items():
                boxes = np.array([t.box for t in group], dtype=object)
                shapely.prepare(boxes)
                self._trees[crs] = (shapely.STRtree(boxes), group, boxes)
        return self._trees

    def __len__(self) -> int:
        return len(self.tiles)

    def touching(self, geom: shapely.Geometry, geom_crs: str) -> list[TileHit]:
        """Tiles whose extent intersects ``geom``, each with ``geom`` in its CRS.

        Sorted by the area of the polygon inside the tile, largest first, then
        by path, so the first entry is the tile a chip is cut on.
        """
        found = []
        for crs, (tree, group, boxes) in self._by_crs().items():
            local = reproject_geometry(geom, geom_crs, crs)
            for i in tree.query(local, predicate="intersects"):
                box = boxes[i]
                if box.contains(local):  # the usual case: no intersection to compute
                    fraction = 1.0
                else:
                    fraction = local.intersection(box).area / local.area
                found.append(TileHit(group[int(i)], local, fraction))
        found.sort(key=lambda hit: (-hit.fraction, hit.tile.path))
        return found
