"""The layout planner: the whole area as vector geometry, from one seed.

:meth:`_Planner.plan` runs the steps in a fixed order: a slightly rotated
grid of rural roads, crop-field parcels (and woodlots and fencerows) between
them, a curved suburban street at some crossings, commercial and apartment
lots, farmsteads, rural houses along the roads, roadside trees; then it makes
sure both classes are present and that some buildings straddle tile edges,
and freezes the draw lists into a :class:`~footprints_app.sample_area.drawlists._Plan`
in the CRS's coordinates. The lots and buildings come from
:mod:`footprints_app.sample_area.sites`, the primitives from
:mod:`footprints_app.sample_area.builder`.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, Point, Polygon

from footprints_app.sample_area.builder import _Road
from footprints_app.sample_area.config import NON_RESIDENTIAL_CLASSES, RESIDENTIAL_CLASSES
from footprints_app.sample_area.drawlists import _Plan
from footprints_app.sample_area.palettes import _FIELD_WEIGHTS, _FIELDS, _jitter, _pick, _rgbn
from footprints_app.sample_area.sites import _SitePlanner


class _Planner(_SitePlanner):
    """Plans one area: roads, parcels, sites, buildings, trees and shadows.

    :meth:`plan` runs the steps in a fixed order so that one seed gives one
    area; the state and the primitives come from the base classes.
    """

    # -- the steps -----------------------------------------------------------

    def plan(self) -> _Plan:
        s_roads, t_roads = self._plan_roads()
        self._plan_fields(s_roads, t_roads)
        crossings = [
            (s, t)
            for s in s_roads
            for t in t_roads
            if self.inner.contains(Point(*self.frame(s, t)))
        ]
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
            positions.append(
                sorted(
                    first + k * spacing
                    for k in range(-12, 13)
                    if abs(first + k * spacing) < self.reach - 30
                )
            )
        s_roads, t_roads = positions
        r = self.reach
        lines = [LineString([self.frame(s, -r), self.frame(s, r)]) for s in s_roads] + [
            LineString([self.frame(-r, t), self.frame(r, t)]) for t in t_roads
        ]
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
        for s0, s1 in zip(s_cuts[:-1], s_cuts[1:], strict=True):
            for t0, t1 in zip(t_cuts[:-1], t_cuts[1:], strict=True):
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
            self.ground.add(
                poly,
                _rgbn(_jitter(self.rng, rgb, 0.1), material),
                noise=0.035,
                mottle=0.03,
                patch=patch,
                stripes=stripe,
                phase=self.rng.random(),
            )

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
        self.ground.add(
            poly,
            _rgbn(_jitter(self.rng, (62, 78, 46)), "tree"),
            noise=0.06,
            mottle=0.15,
            patch=0.08,
        )
        clipped = poly.intersection(self.area.buffer(10))
        if clipped.is_empty:
            return
        self.parcel_block.add(poly)  # no house hides under a wood
        x0, y0, x1, y1 = clipped.bounds
        count = int(clipped.area / 38.0)
        xs = self.rng.uniform(x0, x1, count)
        ys = self.rng.uniform(y0, y1, count)
        inside = shapely.contains_xy(clipped, xs, ys)
        for x, y in zip(xs[inside], ys[inside], strict=True):
            self._tree(np.array([x, y]), self.rng.uniform(2.5, 5.5), dense=True)

    # -- roads are drawn last on the ground, over lots and yards -------------

    def _draw_roads(self) -> None:
        for road in self.roads:
            hw = road.half_width
            if road.paved:
                self.ground.add(
                    road.line.buffer(hw + 1.3, cap_style="flat"),
                    _rgbn((150, 142, 126), "soil"),
                    noise=0.06,
                    mottle=0.05,
                )
                self.ground.add(
                    road.line.buffer(hw, cap_style="flat"),
                    _rgbn(_jitter(self.rng, (98, 99, 100), 0.06), "man"),
                    noise=0.04,
                    mottle=0.04,
                    patch=0.05,
                )
                self._dashes(road.line, (172, 158, 104))
                for side in (-1, 1):
                    self.ground.add(
                        road.line.offset_curve(side * (hw - 0.35)),
                        _rgbn((150, 150, 146), "man"),
                        noise=0.03,
                    )
            else:
                self.ground.add(
                    road.line.buffer(hw, cap_style="flat"),
                    _rgbn(_jitter(self.rng, (166, 152, 128), 0.05), "soil"),
                    noise=0.06,
                    mottle=0.06,
                    patch=0.05,
                )
                for side in (-1, 1):
                    self.ground.add(
                        road.line.offset_curve(side * 1.0).buffer(0.5),
                        _rgbn((146, 134, 114), "soil"),
                        noise=0.05,
                    )

    def _dashes(self, line: LineString, rgb) -> None:
        dash, gap = 3.0, 9.0
        pos = float(self.rng.uniform(0, gap))
        while pos + dash < line.length:
            self.ground.add(
                shapely.ops.substring(line, pos, pos + dash), _rgbn(rgb, "man"), noise=0.02
            )
            pos += dash + gap

    # -- making sure of the classes and of buildings across tile edges ------------

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
                self._tree(
                    at + normal * rng.choice([-1, 1]) * (road.half_width + rng.uniform(5, 10)),
                    rng.uniform(2.5, 5.0),
                )

    def _ensure_classes(self) -> None:
        """Puts at least one residential and one non-residential building in the area."""
        rng = self.rng
        for group, kind in ((RESIDENTIAL_CLASSES, "house"), (NON_RESIDENTIAL_CLASSES, "barn")):
            if any(f.building in group for f in self.footprints):
                continue
            for _ in range(200):
                c = np.array([rng.uniform(15, self.w - 15), rng.uniform(-self.h + 15, -15)])
                if self._building(
                    kind,
                    [
                        (
                            c,
                            rng.uniform(10, 16),
                            rng.uniform(8, 11),
                            self.theta + rng.normal(0, 0.05),
                        )
                    ],
                    check=True,
                ):
                    break

    def _ensure_straddlers(self) -> None:
        """Makes sure some buildings cross internal tile edges, as real ones do."""
        c = self.config
        span = c.tile_size * c.pixel_size
        edges = [LineString([(k * span, 0), (k * span, -self.h)]) for k in range(1, c.tiles_x)] + [
            LineString([(0, -k * span), (self.w, -k * span)]) for k in range(1, c.tiles_y)
        ]
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
            if self._building(
                kind,
                [(at + rng.normal(0, 1.0, 2), size, size * 0.7, self.theta + rng.normal(0, 0.3))],
                check=True,
            ):
                crossing += 1

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
        return _Plan(
            ground=self.ground.freeze(x0, y0),
            shadows=shadows,
            objects=self.objects.freeze(x0, y0),
            trees=self.trees.freeze(x0, y0),
            footprints=self.footprints,
            sun={
                "azimuth_deg": round(self.sun_azimuth, 2),
                "elevation_deg": round(self.sun_elevation, 2),
            },
        )
