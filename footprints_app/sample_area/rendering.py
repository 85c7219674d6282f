"""Drawing a plan into tiles: textures, shadows, lighting and camera effects.

Each tile is rendered on its own from the frozen plan, so tiles can be made
in any order with the same bytes: ground, then cast shadows, then objects
(roofs, cars, grain bins), then tree canopies, each draw list burnt with
:func:`rasterio.features.rasterize` and textured with numpy noise. The
smooth noise fields span the whole area (seeded with ``[seed, 1]``), the
per-pixel noise is seeded per tile (``[seed, 2, row, col]``), and each tile
gets a small exposure gain and colour cast, as a real mosaic does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import rasterio.features
from rasterio.transform import Affine

from footprints_app.sample_area.config import BAND_NAMES, DTYPE_MAX, SampleAreaConfig
from footprints_app.sample_area.drawlists import _CANOPY, _Plan


class _ValueNoise:
    """Smooth noise: a seeded coarse grid, bilinearly (smoothstep) sampled per tile."""

    def __init__(self, rng: np.random.Generator, height_px: int, width_px: int, cell_px: float):
        self.cell = max(float(cell_px), 1.0)
        shape = (int(height_px / self.cell) + 3, int(width_px / self.cell) + 3)
        self.grid = rng.standard_normal(shape).astype(np.float32)

    def sample(self, row0: int, col0: int, size: int) -> np.ndarray:
        coords = []
        for start in (row0, col0):
            pos = (start + np.arange(size) + 0.5) / self.cell
            idx = pos.astype(np.int64)
            frac = (pos - idx).astype(np.float32)
            coords.append((idx, frac * frac * (3 - 2 * frac)))
        (iy, fy), (ix, fx) = coords
        g = self.grid
        top = g[iy][:, ix] * (1 - fx) + g[iy][:, ix + 1] * fx
        bottom = g[iy + 1][:, ix] * (1 - fx) + g[iy + 1][:, ix + 1] * fx
        return top * (1 - fy)[:, None] + bottom * fy[:, None]


@dataclasses.dataclass
class _Tile:
    row: int
    col: int
    size: int
    pixel_size: float
    transform: Affine

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, y1 = self.transform.c, self.transform.f
        span = self.size * self.pixel_size
        return x0, y1 - span, x0 + span, y1


def _burn(layer: dict, tile: _Tile) -> np.ndarray:
    x0, y0, x1, y1 = tile.bounds
    b = layer["bounds"]
    idx = np.nonzero((b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0))[0]
    if not idx.size:
        return np.zeros((tile.size, tile.size), np.int32)
    geoms = layer["geoms"]
    return rasterio.features.rasterize(
        ((geoms[i], int(i) + 1) for i in idx),
        out_shape=(tile.size, tile.size),
        transform=tile.transform,
        fill=0,
        dtype="int32",
    )


def _paint(canvas: np.ndarray, layer: dict, tile: _Tile, fields: dict, sun_h: np.ndarray) -> None:
    """Burns one draw list into ``canvas`` (H, W, 4) with its colours and textures."""
    ids = _burn(layer, tile)
    rows, cols = np.nonzero(ids)
    if not rows.size:
        return
    k = ids[rows, cols] - 1
    gain = (
        1.0
        + layer["noise"][k] * fields["fine"][rows, cols]
        + layer["mottle"][k] * fields["mottle"][rows, cols]
        + layer["patch"][k] * fields["patch"][rows, cols]
    )
    ps = tile.pixel_size
    # Pixel centres in the planner's local frame (metres from the area's corner).
    lx = (tile.col * tile.size + cols + 0.5) * ps
    ly = -(tile.row * tile.size + rows + 0.5) * ps
    sel = np.nonzero(layer["s_amp"][k] > 0)[0]
    if sel.size:
        ks = k[sel]
        ang = layer["s_angle"][ks]
        u = (lx[sel] - layer["cx"][ks]) * np.cos(ang) + (ly[sel] - layer["cy"][ks]) * np.sin(ang)
        phase = u / layer["s_period"][ks] + layer["s_phase"][ks]
        wave = np.where(
            layer["s_sharp"][ks] > 0,
            np.where(phase % 1.0 < 0.22, -1.0, 0.3),
            np.sin(2 * np.pi * phase),
        )
        gain[sel] *= 1.0 + layer["s_amp"][ks] * wave
    sel = np.nonzero(layer["radial"][k] > 0)[0]
    if sel.size:
        ks = k[sel]
        dx, dy = lx[sel] - layer["cx"][ks], ly[sel] - layer["cy"][ks]
        dist = np.hypot(dx, dy)
        rr = np.clip(dist / np.maximum(layer["radius"][ks], 0.1), 0.0, 1.3)
        toward_sun = (dx * sun_h[0] + dy * sun_h[1]) / (dist + 1e-6)
        canopy = (1 - 0.38 * rr**2) * (1 + 0.3 * toward_sun * rr)
        cone = (1 + 0.3 * toward_sun * np.minimum(rr * 1.3, 1.0)) * np.where(rr < 0.12, 1.12, 1.0)
        gain[sel] *= np.where(layer["radial"][ks] == _CANOPY, canopy, cone)
    canvas[rows, cols, :] = layer["rgbn"][k] * gain[:, None].astype(np.float32)


def _blur(canvas: np.ndarray) -> np.ndarray:
    # A [1, 2, 1] kernel each way: the slight softness of a real camera and
    # orthorectification resampling.
    p = np.pad(canvas, ((1, 1), (0, 0), (0, 0)), mode="edge")
    canvas = (p[:-2] + 2 * p[1:-1] + p[2:]) * 0.25
    p = np.pad(canvas, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * 0.25


class _Renderer:
    """Renders tiles of a plan; the noise fields span the whole area."""

    def __init__(self, plan: _Plan, config: SampleAreaConfig):
        self.plan, self.config = plan, config
        rng = np.random.default_rng([config.seed, 1])
        h_px, w_px = config.tiles_y * config.tile_size, config.tiles_x * config.tile_size
        ps = config.pixel_size
        self.mottle = [
            _ValueNoise(rng, h_px, w_px, 1.2 / ps),
            _ValueNoise(rng, h_px, w_px, 3.5 / ps),
        ]
        self.patch = [
            _ValueNoise(rng, h_px, w_px, 12.0 / ps),
            _ValueNoise(rng, h_px, w_px, 40.0 / ps),
        ]
        # Each tile of a mosaic comes from a different exposure: a small gain
        # and colour cast per tile, as in real county orthophotos.
        count = config.tiles_x * config.tiles_y
        self.gains = rng.normal(1.0, 0.025, count)
        self.casts = rng.normal(1.0, 0.012, (count, 4))
        self.haze = rng.uniform(8.0, 16.0)
        self.shadow = np.array([0.42, 0.46, 0.56, 0.5], np.float32)
        az = math.radians(plan.sun["azimuth_deg"])
        self.sun_h = np.array([math.sin(az), math.cos(az)])

    def render(self, row: int, col: int) -> np.ndarray:
        """Tile (row, col) as float32 (H, W, 4) in 8-bit units, bands R, G, B, NIR."""
        c = self.config
        size = c.tile_size
        tile = _Tile(row, col, size, c.pixel_size, c.tile_transform(row, col))
        rng = np.random.default_rng([c.seed, 2, row, col])
        r0, c0 = row * size, col * size
        fields = {
            "fine": rng.standard_normal((size, size), dtype=np.float32),
            "mottle": 0.8 * self.mottle[0].sample(r0, c0, size)
            + 0.6 * self.mottle[1].sample(r0, c0, size),
            "patch": 0.6 * self.patch[0].sample(r0, c0, size)
            + 0.8 * self.patch[1].sample(r0, c0, size),
        }
        canvas = np.empty((size, size, 4), np.float32)
        canvas[:] = (110, 128, 70, 170)  # grass, should any pixel escape every parcel
        _paint(canvas, self.plan.ground, tile, fields, self.sun_h)
        if len(self.plan.shadows):
            shade = rasterio.features.rasterize(
                ((g, 1) for g in self.plan.shadows),
                out_shape=(size, size),
                transform=tile.transform,
                fill=0,
                dtype="uint8",
            ).astype(bool)
            canvas[shade] *= self.shadow
        _paint(canvas, self.plan.objects, tile, fields, self.sun_h)
        _paint(canvas, self.plan.trees, tile, fields, self.sun_h)
        canvas = _blur(canvas)
        # Aerial cameras record muted colours: pull chroma toward luminance.
        lum = canvas[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        canvas[..., :3] = lum[..., None] + (canvas[..., :3] - lum[..., None]) * 0.8
        index = row * c.tiles_x + col
        canvas = (
            canvas * (self.gains[index] * self.casts[index]).astype(np.float32) * 0.93 + self.haze
        )
        canvas += rng.normal(0.0, 1.6, canvas.shape).astype(np.float32)
        return canvas


def _to_bands(canvas: np.ndarray, bands: str, dtype: str) -> np.ndarray:
    """(H, W, 4) float in 8-bit units -> (bands, H, W) integers of ``dtype``."""
    if bands == "gray":
        data = (0.299 * canvas[..., 0] + 0.587 * canvas[..., 1] + 0.114 * canvas[..., 2])[None]
    else:
        data = np.moveaxis(canvas[..., : len(BAND_NAMES[bands])], -1, 0)
    top = DTYPE_MAX[dtype]
    scaled = data * (top / 255.0) if top != 255 else data
    return np.clip(np.rint(scaled), 0, top).astype(dtype)
