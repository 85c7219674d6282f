"""The plan handed from the planner to the renderer.

A :class:`_DrawList` collects shapes in drawing order, each with a colour
(R, G, B, NIR) and texture parameters; frozen, it becomes a dict of numpy
columns that the renderer indexes per pixel. A :class:`_Plan` is three draw
lists (ground, objects, trees), the cast shadows, the true footprints and the
sun.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import Polygon

_NO_RADIAL, _CANOPY, _CONE = 0, 1, 2


class _DrawList:
    """Shapes drawn in order, each with a colour (R, G, B, NIR) and a texture.

    Texture parameters: ``noise`` (per-pixel), ``mottle`` (about 1.5 m) and
    ``patch`` (about 25 m) are relative amplitudes of noise fields;
    ``stripes`` = (angle, period m, amplitude, sharp) draws tillage rows,
    mower stripes or metal panel seams; ``radial`` shades a tree canopy or a
    grain-bin cone around ``center``.
    """

    _TEX = (
        "noise",
        "mottle",
        "patch",
        "s_amp",
        "s_period",
        "s_angle",
        "s_phase",
        "s_sharp",
        "cx",
        "cy",
        "radius",
        "radial",
    )

    def __init__(self) -> None:
        self.geoms: list = []
        self.rgbn: list = []
        self.tex: list = []

    def add(
        self,
        geom,
        rgbn,
        *,
        noise: float = 0.03,
        mottle: float = 0.0,
        patch: float = 0.0,
        stripes: tuple[float, float, float, bool] | None = None,
        phase: float = 0.0,
        center: Sequence[float] = (0.0, 0.0),
        radius: float = 0.0,
        radial: int = _NO_RADIAL,
    ) -> None:
        if geom is None or geom.is_empty:
            return
        angle, period, amp, sharp = stripes or (0.0, 1.0, 0.0, False)
        self.geoms.append(geom)
        self.rgbn.append(rgbn)
        self.tex.append(
            (
                noise,
                mottle,
                patch,
                amp,
                period,
                angle,
                phase,
                float(sharp),
                float(center[0]),
                float(center[1]),
                radius,
                radial,
            )
        )

    def freeze(self, x0: float, y0: float) -> dict[str, np.ndarray]:
        geoms = np.array(self.geoms, dtype=object)
        if len(geoms):
            geoms = shapely.transform(geoms, lambda xy: xy + np.array([x0, y0]))
        arrays = {
            "geoms": geoms,
            "bounds": shapely.bounds(geoms).reshape(-1, 4) if len(geoms) else np.empty((0, 4)),
            "rgbn": np.array(self.rgbn, np.float32).reshape(-1, 4),
        }
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
