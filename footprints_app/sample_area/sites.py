"""Where buildings go: house lots, subdivisions, farmsteads, commercial and apartment lots.

Each ``_plan_*`` step looks for a free site (:meth:`_SitePlanner._lot_ok`
checks it against roads and earlier parcels) and its ``_build_*`` partner
lays it out: the lot's ground (lawn, gravel yard, asphalt) goes to
``late_ground`` so it is drawn over the fields but under the roads, then
buildings, parking, cars and trees are added with the primitives of
:class:`~footprints_app.sample_area.builder._PlanBuilder`.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon

from footprints_app.sample_area.builder import _PlanBuilder
from footprints_app.sample_area.drawlists import _CONE
from footprints_app.sample_area.geometry import _circle, _hull_shadow, _rect, _unit
from footprints_app.sample_area.palettes import _jitter, _rgbn


class _SitePlanner(_PlanBuilder):
    """The planning steps that place lots and the buildings on them."""

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
            street = LineString([self.frame(a, b) for a, b in zip(s, t, strict=True)])
            inside = street.intersection(self.area).length / street.length
            others = [
                r for r in self.roads if r.line.distance(Point(*self.frame(s_c, start_t))) > 6.0
            ]
            if (
                inside < 0.85
                or any(r.line.distance(street) < 40.0 for r in others)
                or self.parcel_block.hits(street.buffer(20.0))
            ):
                continue
            self._build_subdivision(street)
            return

    def _build_subdivision(self, street: LineString) -> None:
        rng = self.rng
        hw = 3.6
        concrete = rng.random() < 0.5
        zone = shapely.union(
            street.buffer(hw + 42.0, cap_style="flat"), _circle(np.array(street.coords[-1]), 40.0)
        )
        self.ground.add(
            zone, _rgbn(_jitter(rng, (100, 128, 64)), "veg"), noise=0.04, mottle=0.05, patch=0.1
        )
        bulb = _circle(np.array(street.coords[-1]), 12.0)
        pavement = shapely.union(street.buffer(hw, cap_style="flat"), bulb)
        paving = (168, 166, 160) if concrete else (100, 101, 102)
        self.late_ground.append(
            (pavement, _rgbn(paving, "man"), dict(noise=0.03, mottle=0.04, patch=0.04))
        )
        for side in (-1, 1):
            walk = street.offset_curve(side * (hw + 3.2)).buffer(0.8, cap_style="flat")
            self.late_ground.append(
                (walk.difference(bulb.buffer(3)), _rgbn((176, 174, 168), "man"), dict(noise=0.03))
            )
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
                    self._house_lot(
                        at,
                        tangent,
                        outward,
                        hw + 1.0,
                        spacing - 1.0,
                        rng.uniform(34.0, 42.0),
                        suburban=True,
                        driveway_rgb=paving,
                    )
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
        self.late_ground.append(
            (
                _rect(center, frontage, depth, angle),
                _rgbn(asphalt, "man"),
                dict(noise=0.035, mottle=0.04, patch=0.06),
            )
        )
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
                rng.uniform(-1, 1) * (along - length) / 2 * 0.5 if count == 1 else 0.0
            )
            c = center + tangent * offset_a + outward * (depth / 2 - back / 2 - 3.0)
            pitched = kind == "retail" and length < 30 and rng.random() < 0.5
            self._building(
                kind,
                [(c, length, width, angle)],
                roof="gable" if pitched else "flat",
                palette="shingle" if pitched else "flat",
                height=rng.uniform(5.0, 9.0),
            )
        self._parking(
            center - outward * (back / 2 - 4.0),
            angle,
            tangent,
            outward,
            frontage - 12.0,
            depth - back - 14.0,
        )
        for _ in range(int(rng.integers(2, 7))):
            spot = (
                center
                - outward * (depth / 2 - 2.5)
                + tangent * rng.uniform(-frontage, frontage) / 2
            )
            self._tree(spot, rng.uniform(2.5, 4.5))

    def _parking(self, center, angle, tangent, outward, length, depth) -> None:
        rng = self.rng
        stall_w, stall_d = 2.75, 5.5
        rows = max(0, int(depth // (2 * stall_d + 7.0)) * 2)
        stalls = int(length // stall_w)
        if rows == 0 or stalls < 2:
            return
        start = (
            center
            - tangent * (stalls * stall_w / 2)
            - outward * ((rows // 2) * (2 * stall_d + 7.0) / 2)
        )
        occupancy = rng.uniform(0.25, 0.75)
        for row in range(rows):
            pair, upper = divmod(row, 2)
            base = start + outward * (pair * (2 * stall_d + 7.0) + upper * stall_d)
            for k in range(stalls + 1):
                p = base + tangent * (k * stall_w)
                self.late_ground.append(
                    (
                        LineString([p, p + outward * stall_d]),
                        _rgbn((176, 176, 170), "man"),
                        dict(noise=0.03),
                    )
                )
                if k < stalls and rng.random() < occupancy:
                    c = p + tangent * (stall_w / 2) + outward * (stall_d / 2)
                    self._car(c, angle + math.pi / 2 + rng.normal(0, 0.04))

    def _plan_apartments(self) -> None:
        rng = self.rng
        for _ in range(20):
            found = self._road_point(40.0)
            if found is None:
                return
            road, at, tangent = found
            outward = rng.choice([-1, 1]) * np.array([-tangent[1], tangent[0]])
            frontage, depth = rng.uniform(75.0, 115.0), rng.uniform(60.0, 85.0)
            center, angle, site = self._site(
                at, tangent, outward, road.half_width + 3.0, frontage, depth
            )
            if not self._lot_ok(site) or not self.inner.contains(Point(*center)):
                continue
            self.parcel_block.add(site)
            self.late_ground.append(
                (
                    site,
                    _rgbn(_jitter(rng, (102, 128, 66)), "veg"),
                    dict(noise=0.04, mottle=0.05, patch=0.08),
                )
            )
            lot = _rect(center - outward * (depth / 2 - 12.0), frontage - 8.0, 18.0, angle)
            self.late_ground.append((lot, _rgbn((108, 109, 110), "man"), dict(noise=0.035)))
            self._parking(
                center - outward * (depth / 2 - 12.0),
                angle,
                tangent,
                outward,
                frontage - 14.0,
                18.0,
            )
            count = int(rng.integers(2, 4))
            flat = rng.random() < 0.5
            for i in range(count):
                length = min(rng.uniform(26.0, 44.0), (frontage - 8.0) / count * 1.6)
                width = rng.uniform(12.0, 16.0)
                turn = math.pi / 2 if count == 3 and i == 1 else 0.0
                c = center + tangent * ((i - (count - 1) / 2) * frontage / count) + outward * 12.0
                self._building(
                    "apartments",
                    [(c, length, width, angle + turn)],
                    roof="flat" if flat else str(rng.choice(["gable", "hip"])),
                    palette="flat" if flat else "shingle",
                    height=rng.uniform(9.0, 13.0),
                )
            for _ in range(int(rng.integers(3, 9))):
                spot = (
                    center
                    + tangent * rng.uniform(-0.5, 0.5) * frontage
                    + outward * rng.uniform(0, 0.5) * depth
                )
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
            center, angle, yard = self._site(
                at, tangent, outward, road.half_width + setback, frontage, depth
            )
            if not self._lot_ok(yard.buffer(6.0)) or not self.inner.contains(Point(*center)):
                continue
            self.parcel_block.add(yard.buffer(6.0))
            self._build_farmstead(
                road, at, center, angle, tangent, outward, frontage, depth, setback
            )
            return

    def _build_farmstead(
        self, road, at, center, angle, tangent, outward, frontage, depth, setback
    ) -> None:
        rng = self.rng
        self.late_ground.append(
            (
                _rect(center, frontage, depth, angle),
                _rgbn(_jitter(rng, (150, 140, 120), 0.07), "soil"),
                dict(noise=0.06, mottle=0.12, patch=0.15),
            )
        )
        lane_at = at + tangent * rng.uniform(-frontage / 3, frontage / 3)
        lane_len = setback + road.half_width + 2.0
        self.late_ground.append(
            (
                _rect(lane_at + outward * (lane_len / 2), 4.0, lane_len, angle),
                _rgbn((158, 146, 124), "soil"),
                dict(noise=0.06, mottle=0.06),
            )
        )
        frame = (center, tangent, outward, frontage, depth, angle)
        if rng.random() < 0.85:
            lawn_c = (
                center - outward * (depth / 2 - 14.0) + tangent * rng.uniform(-0.3, 0.3) * frontage
            )
            self.late_ground.append(
                (
                    _rect(lawn_c, 30.0, 26.0, angle),
                    _rgbn(_jitter(rng, (100, 126, 62)), "veg"),
                    dict(noise=0.04, mottle=0.06, patch=0.08),
                )
            )
            self._place_in(
                frame,
                "house",
                rng.uniform(10.0, 18.0),
                rng.uniform(8.0, 11.0),
                near=lawn_c,
                spread=6.0,
            )
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
            self._tree(
                back + tangent * k + rng.normal(0, 0.6, 2), rng.uniform(2.8, 4.2), conifer=True
            )
        side = center + tangent * rng.choice([-1, 1]) * (frontage / 2 + 6.0)
        for k in np.arange(-depth / 2, depth / 2, rng.uniform(4.0, 6.0)):
            self._tree(
                side + outward * k + rng.normal(0, 0.6, 2), rng.uniform(2.8, 4.2), conifer=True
            )

    def _grain_bins(self, frame) -> None:
        rng = self.rng
        center, tangent, outward, frontage, depth, _ = frame
        count = int(rng.integers(1, 6))
        diameter = rng.uniform(6.0, 11.0)
        start = (
            center
            + outward * (depth / 2 - diameter / 2 - 3.0)
            + tangent * rng.uniform(-frontage / 4, 0)
        )
        for k in range(count):
            c = start + tangent * (k * (diameter + 1.5))
            shape = _circle(c, diameter / 2)
            if (
                not self.inner.contains(shape)
                or self.built.hits(shape.buffer(1.0))
                or self.road_block.hits(shape)
            ):
                continue
            rgb = _jitter(rng, (182, 186, 188), 0.05)
            self.objects.add(
                shape, _rgbn(rgb, "metal"), noise=0.03, center=c, radius=diameter / 2, radial=_CONE
            )
            self.shadows.append(_hull_shadow(shape, self.shadow_per_m * rng.uniform(8, 12)))
            self._record(shape, "farm_auxiliary")

    def _place_in(
        self, frame, kind: str, length: float, width: float, *, near=None, spread: float = 0.0
    ) -> bool:
        rng = self.rng
        center, tangent, outward, frontage, depth, angle = frame
        for _ in range(30):
            if near is not None:
                c = near + rng.normal(0, spread, 2)
            else:
                c = (
                    center
                    + tangent * rng.uniform(-0.5, 0.5) * (frontage - length)
                    + outward * rng.uniform(-0.5, 0.5) * (depth - width)
                )
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
                        self._house_lot(
                            at,
                            tangent,
                            outward,
                            road.half_width + 1.5,
                            rng.uniform(30.0, 45.0),
                            rng.uniform(35.0, 55.0),
                            suburban=False,
                            driveway_rgb=(158, 148, 128)
                            if not road.paved or rng.random() < 0.4
                            else (104, 105, 106),
                        )
                pos += rng.uniform(40.0, 80.0) / max(self.config.density, 0.2)

    def _house_lot(
        self, at, tangent, outward, offset, frontage, depth, *, suburban: bool, driveway_rgb
    ) -> bool:
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
        house_angle = (
            angle
            + (0.0 if along_road else math.pi / 2)
            + rng.normal(0, 0.015 if suburban else 0.05)
        )
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
        if not self._building(
            kind, parts, roof=roof, colour=colour, check=True, height=rng.uniform(5.5, 9.0)
        ):
            return False
        self.parcel_block.add(lot)
        lawn = _rgbn(_jitter(rng, (98, 128, 62), 0.1), "veg")
        mow = (
            (angle + rng.choice([0.0, math.pi / 2]), rng.uniform(1.8, 3.0), 0.04, False)
            if rng.random() < 0.4
            else None
        )
        self.late_ground.append((lot, lawn, dict(noise=0.04, mottle=0.06, patch=0.1, stripes=mow)))
        # Driveway to the garage end of the house, or to a detached garage.
        drive_shift = shift + rng.choice([-1, 1]) * (length / 2 - 2.5 if along_road else width / 2)
        drive_len = setback + 1.5
        garage_at = None
        if rng.random() < 0.4:
            garage_at = (
                at
                + tangent * (shift + np.sign(drive_shift - shift) * (length / 2 + 6.0))
                + outward * (offset + setback + rng.uniform(3.0, 8.0))
            )
            drive_shift = shift + np.sign(drive_shift - shift) * (length / 2 + 6.0)
        heading = math.atan2(outward[1], outward[0])
        drive_c = at + tangent * drive_shift + outward * (offset - 1.5 + drive_len / 2)
        self.late_ground.append(
            (
                _rect(drive_c, drive_len, rng.uniform(3.5, 5.5), heading),
                _rgbn(_jitter(rng, driveway_rgb, 0.05), "man"),
                dict(noise=0.035, mottle=0.03),
            )
        )
        if garage_at is not None:
            g_len, g_w = rng.uniform(6.0, 12.5), rng.uniform(6.0, 9.0)
            same = rng.random() < 0.7
            self._building(
                "garage",
                [(garage_at, g_len, g_w, angle + rng.normal(0, 0.03))],
                roof=str(rng.choice(["gable", "hip"])),
                colour=colour if same else None,
                check=True,
                height=4.0,
            )
        if rng.random() < 0.7 and rng.random() < 0.5:
            self._car(drive_c + outward * rng.uniform(-2, 2), heading)
        if rng.random() < (0.25 if suburban else 0.4):
            shed_c = (
                house_c
                + outward * (across / 2 + rng.uniform(5.0, 12.0))
                + tangent * rng.uniform(-8, 8)
            )
            self._building(
                "shed",
                [
                    (
                        shed_c,
                        rng.uniform(2.5, 6.5),
                        rng.uniform(2.4, 4.5),
                        angle + rng.normal(0, 0.1),
                    )
                ],
                check=True,
                height=2.8,
            )
        for _ in range(int(rng.integers(0, 5 if suburban else 6))):
            spot = (
                at
                + tangent * rng.uniform(-0.5, 0.5) * frontage
                + outward * (offset + rng.uniform(2, depth))
            )
            self._tree(spot, rng.uniform(2.2, 5.5))
        return True
