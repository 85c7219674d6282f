"""Shape helpers of the planner, in its local frame.

The local frame is in metres, x east from the area's west edge and y north
from its north edge, so the area is ``[0, W] x [-H, 0]``; the planner's
output is moved to the CRS's coordinates only when it is frozen. Rectangles
are built from one formula (:func:`_strip`) so that neighbouring roof
facets share exact vertices, and :class:`_Blocker` answers "does this new
shape touch anything placed so far?" quickly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import Point, Polygon


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _strip(
    center: np.ndarray, axis: np.ndarray, half_length: float, f0: float, f1: float
) -> Polygon:
    # Corners from one formula, so neighbouring strips share exact vertices and
    # their union is exactly the footprint rectangle (no pixel falls between).
    normal = np.array([-axis[1], axis[0]])
    a, b = axis * half_length, normal
    return Polygon(
        [center - a + b * f0, center + a + b * f0, center + a + b * f1, center - a + b * f1]
    )


def _rect(
    center: np.ndarray | Sequence[float], length: float, width: float, angle: float
) -> Polygon:
    return _strip(np.asarray(center, float), _unit(angle), length / 2, -width / 2, width / 2)


def _circle(center: np.ndarray, radius: float) -> Polygon:
    return Point(float(center[0]), float(center[1])).buffer(radius, quad_segs=6)


def _hull_shadow(shape: Polygon, offset: np.ndarray) -> Polygon:
    moved = shapely.affinity.translate(shape, float(offset[0]), float(offset[1]))
    return shapely.convex_hull(shapely.union(shape, moved))


class _Blocker:
    """Geometries that new ones must not touch; a bounding-box prefilter keeps it fast."""

    def __init__(self) -> None:
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
