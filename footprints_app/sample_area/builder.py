"""The state of a plan in progress and the primitives that add to it.

:class:`_PlanBuilder` holds everything the planning steps share: the seeded
random generator, the rotated road-grid frame, the sun, the draw lists, the
cast shadows, the true footprints and the blockers that keep roads, parcels
and buildings apart. Its primitives add one thing each, with its roof,
shadow and footprint: a building made of rectangular parts (:meth:`_building`,
which draws its roof facets lit by the sun), a tree and a car.

The planning steps that decide *where* things go live in subclasses:
:mod:`footprints_app.sample_area.sites` (house lots, farmsteads, commercial and
apartment lots) and :mod:`footprints_app.sample_area.planning` (roads, fields and
the order of the steps). Every random draw goes through ``self.rng`` in a
fixed order, so one seed gives one area.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import LineString, Point, Polygon

from footprints_app.sample_area.config import RESIDENTIAL_CLASSES, SampleAreaConfig
from footprints_app.sample_area.drawlists import _CANOPY, _DrawList, _Footprint
from footprints_app.sample_area.geometry import (
    _Blocker,
    _circle,
    _hull_shadow,
    _rect,
    _strip,
    _unit,
)
from footprints_app.sample_area.palettes import (
    _BARN,
    _CAR,
    _FLAT,
    _HOUSE_SPECIAL,
    _SHED,
    _SHINGLES,
    _jitter,
    _pick,
    _rgbn,
)


@dataclasses.dataclass
class _Road:
    line: LineString
    half_width: float
    paved: bool


class _PlanBuilder:
    """State shared by the planning steps, and the primitives that add buildings and trees.

    State lives here (the random generator, the draw lists, the blockers that
    keep sites and buildings apart); subclasses add the steps.
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
        return Polygon(
            [self.frame(s0, t0), self.frame(s1, t0), self.frame(s1, t1), self.frame(s0, t1)]
        )

    # -- buildings, cars and trees -----------------------------------------------

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

    def _building(
        self,
        kind: str,
        parts,
        *,
        roof: str | None = None,
        palette: str | None = None,
        colour=None,
        height: float | None = None,
        check: bool = False,
    ) -> bool:
        """Adds a building made of rectangular parts (center, length, width, angle)."""
        rng = self.rng
        roofs, default_palette, heights = self._DEFAULTS[kind]
        rects = [_rect(c, length, width, angle) for c, length, width, angle in parts]
        footprint = shapely.union_all(rects) if len(rects) > 1 else rects[0]
        if footprint.geom_type != "Polygon":
            return False
        if check and (
            not self.inner.contains(footprint)
            or self.built.hits(footprint.buffer(1.5))
            or self.road_block.hits(footprint)
        ):
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
        return (ambient + diffuse * max(0.0, float(normal @ sun))) / (
            ambient + diffuse * math.sin(elev)
        )

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
                unit_c = (
                    c + axis * rng.uniform(-hl + 3, hl - 3) + normal * rng.uniform(-hw + 3, hw - 3)
                )
                hvac = _rect(unit_c, rng.uniform(1.2, 3.2), rng.uniform(1.0, 2.4), angle)
                self.objects.add(
                    shapely.affinity.translate(hvac, *(self.shadow_per_m * 1.2)).intersection(
                        inner
                    ),
                    _rgbn(base * 0.55, material),
                    noise=0.03,
                )
                self.objects.add(
                    hvac, _rgbn(_jitter(rng, (178, 180, 180), 0.1), "metal"), noise=0.04
                )
            return
        pitch = rng.uniform(22.0, 38.0)
        if roof == "shed":
            side = rng.choice([-1.0, 1.0])
            self.objects.add(
                _rect(c, length, width, angle),
                _rgbn(base * self._facet_gain(normal * side, 10.0), material),
                **tex,
            )
            return
        if roof == "hip" and length >= width:
            inset = hw
            r0, r1 = c - axis * (hl - inset), c + axis * (hl - inset)
            p0, p1 = c - axis * hl - normal * hw, c + axis * hl - normal * hw
            p2, p3 = c + axis * hl + normal * hw, c - axis * hl + normal * hw
            facets = [
                ([p0, p1, r1, r0], -normal),
                ([p1, p2, r1], axis),
                ([p2, p3, r0, r1], normal),
                ([p3, p0, r0], -axis),
            ]
            for corners, facing in facets:
                self.objects.add(
                    Polygon(corners), _rgbn(base * self._facet_gain(facing, pitch), material), **tex
                )
            if hl > hw:
                self.objects.add(LineString([r0, r1]), _rgbn(base * 1.15, material), noise=0.03)
            return
        if roof == "gambrel":
            strips = [
                (-hw, -0.3 * width, -1, 60.0),
                (-0.3 * width, 0.0, -1, 20.0),
                (0.0, 0.3 * width, 1, 20.0),
                (0.3 * width, hw, 1, 60.0),
            ]
        else:  # gable: the ridge runs along the length
            strips = [(-hw, 0.0, -1, pitch), (0.0, hw, 1, pitch)]
        for f0, f1, side, slope in strips:
            self.objects.add(
                _strip(c, axis, hl, f0, f1),
                _rgbn(base * self._facet_gain(normal * side, slope), material),
                **tex,
            )
        self.objects.add(
            LineString([c - axis * hl, c + axis * hl]), _rgbn(base * 1.12, material), noise=0.03
        )

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
        self.trees.add(
            shape,
            _rgbn(_jitter(rng, rgb, 0.15), "tree"),
            noise=0.1,
            mottle=0.22,
            patch=0.05,
            center=at,
            radius=radius,
            radial=_CANOPY,
        )
        # The crown shades the ground around the trunk; only its offset shows.
        height = radius * rng.uniform(1.6, 2.6)
        self.shadows.append(_hull_shadow(shape, self.shadow_per_m * height * 0.6))

    def _car(self, center, angle) -> None:
        rng = self.rng
        body = _rect(center, 4.6, 1.85, angle)
        rgb = _CAR[int(rng.integers(len(_CAR)))]
        self.objects.add(body, _rgbn(_jitter(rng, rgb, 0.05), "man"), noise=0.05)
        self.objects.add(
            _rect(center + _unit(angle) * 0.2, 1.9, 1.5, angle),
            _rgbn(np.array(rgb) * 0.45 + 15, "man"),
            noise=0.04,
        )
        self.shadows.append(_hull_shadow(body, self.shadow_per_m * 1.5))
