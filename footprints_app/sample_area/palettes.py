"""Colours of the sample area: roofs, cars, crops, and their near infrared.

Values are sRGB as a hazy aerial camera records them; :func:`_rgbn` adds a
near-infrared value from the luminance and the material (vegetation is
bright in NIR, roofs are not). :func:`_pick` draws from a weighted palette
and :func:`_jitter` varies a colour, both from the planner's generator, so
the draws are part of the seeded sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _lum(rgb: Sequence[float] | np.ndarray) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


#: NIR reflectance relative to visible luminance, per material kind.
_NIR_GAIN = {"veg": 2.3, "tree": 2.5, "soil": 1.2, "man": 0.95, "red": 1.8, "metal": 1.05}


def _rgbn(rgb: Sequence[float] | np.ndarray, kind: str) -> tuple[float, float, float, float]:
    return (
        float(rgb[0]),
        float(rgb[1]),
        float(rgb[2]),
        float(min(235.0, _lum(rgb) * _NIR_GAIN[kind])),
    )


_SHINGLES = [
    ((68, 68, 70), 5),
    ((96, 95, 93), 5),
    ((118, 114, 108), 3),
    ((98, 82, 70), 4),
    ((78, 64, 56), 3),
    ((54, 54, 58), 3),
    ((138, 134, 126), 2),
    ((112, 96, 78), 2),
]
_HOUSE_SPECIAL = [
    ((148, 66, 52), "red", 0.07),
    ((178, 182, 184), "metal", 0.04),
    ((82, 104, 86), "metal", 0.02),
]
_BARN = [
    ((138, 48, 40), "red", 4),
    ((112, 42, 36), "red", 2),
    ((188, 191, 193), "metal", 3),
    ((160, 165, 168), "metal", 3),
    ((126, 128, 130), "metal", 2),
    ((204, 203, 197), "metal", 1),
    ((112, 92, 74), "man", 1),
]
_FLAT = [
    ((206, 206, 203), 4),
    ((220, 219, 214), 3),
    ((184, 185, 184), 3),
    ((166, 165, 160), 2),
    ((150, 145, 135), 1),
    ((96, 96, 100), 1),
]
_SHED = [
    ((150, 150, 146), "metal", 2),
    ((96, 86, 74), "man", 2),
    ((88, 102, 84), "metal", 1),
    ((196, 194, 186), "man", 1),
    ((70, 70, 72), "man", 2),
    ((140, 60, 50), "red", 1),
]
_CAR = [
    (210, 210, 212),
    (30, 32, 36),
    (150, 152, 156),
    (100, 102, 106),
    (140, 30, 30),
    (40, 60, 110),
    (200, 200, 196),
    (70, 72, 70),
]
_FIELDS = {  # rgb, material, (stripe period range m, amplitude), patchiness
    "corn": ((68, 98, 46), "veg", (5.0, 9.0, 0.04), 0.06),
    "soy": ((88, 122, 56), "veg", (3.0, 6.0, 0.05), 0.07),
    "tilled": ((122, 102, 82), "soil", (1.6, 3.2, 0.10), 0.08),
    "dark_soil": ((88, 74, 62), "soil", (1.6, 2.8, 0.09), 0.07),
    "stubble": ((178, 164, 120), "veg", (2.0, 4.0, 0.08), 0.06),
    "hay": ((132, 140, 84), "veg", (6.0, 12.0, 0.05), 0.08),
    "pasture": ((104, 126, 66), "veg", None, 0.12),
}
_FIELD_WEIGHTS = {
    "corn": 3,
    "soy": 3,
    "tilled": 1.2,
    "dark_soil": 0.6,
    "stubble": 1.2,
    "hay": 1,
    "pasture": 1,
    "woodlot": 0.35,
}


def _pick(rng: np.random.Generator, weighted: list) -> Any:
    weights = np.array([w[-1] for w in weighted], float)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))]


def _jitter(rng: np.random.Generator, rgb: Sequence[float], spread: float = 0.08) -> tuple:
    gain = rng.uniform(1 - spread, 1 + spread)
    return tuple(float(np.clip(c * gain + rng.normal(0, 3), 0, 255)) for c in rgb)
