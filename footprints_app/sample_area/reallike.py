"""A "real-like" orthophoto tile: the hard parts of real imagery, with known truth.

The default sample area (:mod:`.generator`) is built for the classifier and
the pipelines: colour roofs on clean ground, every pixel imaged. A segmenter
that learns there has learnt little about a county orthophoto, where what
gives a building away is geometry and shading, not colour. This module draws
one tile with the properties that made the seed study's real tiles hard:

* **one 12-bit band** (``uint16``, values ~150..3600), or four (R, G, B, NIR)
  whose roof colours are drawn independently of anything (no colour cue);
* **roof brightness all over the range**: some roofs darker than the ground,
  many as bright as it, gable roofs as two facets lit differently by the sun;
* **off-nadir lean**: each roof is drawn displaced from its footprint by
  ``height * tan(view angle)``, away from a nadir point west of the tile, and
  the wall between base and roof is visible; the labels are the footprint
  (ground) outline, as in cadastral or hand-digitized data, so the model
  must learn where the base is, not only where the roof is;
* **cast shadows** (one sun), **trees** that overlap roofs, roads and parcels
  of varied ground, an optical blur and **sensor noise** (photon plus read
  noise);
* an **irregular nodata collar** (value 0, declared in the profile) along the
  north and east edges, as at the edge of a flight strip;
* 0.5 m pixels in a UTM CRS, the labels written in **another CRS** (EPSG:4326
  GeoJSON by default).

The tile is written as two halves, ``tiles/west.tif`` and ``tiles/east.tif``,
each holding about ``buildings_per_half`` buildings (none straddles the
cut), so one half trains and the other is a held-out test of the same
scene; ``masks/`` holds the true footprint masks on each half's grid.
:func:`generate_real_like` is the whole job; everything random comes from
``numpy.random.default_rng(seed)``, so the same config gives the same bytes
on one machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
import rasterio.features
import shapely
import shapely.affinity
from rasterio.transform import Affine, from_origin

from footprints.errors import ConfigError
from footprints_app.sample_area.config import (
    BAND_NAMES,
    FOOTPRINT_FORMATS,
    MANIFEST_NAME,
    _check_float,
    _check_int,
    _parse_crs,
)
from footprints_app.sample_area.geometry import _Blocker, _rect
from footprints_app.sample_area.writing import (
    _reproject,
    _write_footprints,
    _write_geotiff,
    _write_json,
)

#: Bands a real-like tile can have.
REAL_LIKE_BANDS = ("gray", "rgbn")
#: The value of pixels outside the imaged area (declared as the tiles' nodata).
NODATA = 0
_HALVES = ("west", "east")


@dataclasses.dataclass(frozen=True)
class RealLikeConfig:
    """What real-like tile to make; validated on construction.

    Attributes:
        seed: Seed of every random choice.
        width: Tile width in pixels (the two halves are half of it each).
        height: Tile height in pixels (default: half the width).
        pixel_size: Metres per pixel.
        crs: Projected CRS of the tile, in metres.
        origin: Upper-left corner (x, y) in ``crs``.
        bands: ``gray`` (one 12-bit band) or ``rgbn`` (four).
        buildings_per_half: Buildings placed in each half.
        footprints_crs: CRS the footprints are written in (not the tile's, on
            purpose: the trainer must reproject).
        footprints_format: ``geojson``, ``gpkg``, ``shp`` or ``parquet``.
        block_size: Internal GeoTIFF block side (multiple of 16).
    """

    seed: int = 0
    width: int = 1536
    height: int | None = None
    pixel_size: float = 0.5
    crs: str = "EPSG:32615"
    origin: tuple[float, float] = (500000.0, 4650000.0)
    bands: str = "gray"
    buildings_per_half: int = 40
    footprints_crs: str = "EPSG:4326"
    footprints_format: str = "geojson"
    block_size: int = 256

    def __post_init__(self):
        _check_int("seed", self.seed, 0, 2**63 - 1, "use a non-negative integer such as 0")
        _check_int("width", self.width, 256, 4096, "use 256 to 4096 pixels, e.g. 1536")
        if self.width % 32:
            raise ConfigError(
                f"width {self.width} must be a multiple of 32 (two halves of "
                "whole GeoTIFF blocks); use e.g. 1024 or 1536"
            )
        if self.height is None:
            object.__setattr__(self, "height", self.width // 2)
        _check_int("height", self.height, 128, 4096, "use 128 to 4096 pixels")
        _check_int("buildings_per_half", self.buildings_per_half, 1, 400, "use 1 to 400")
        _check_int("block_size", self.block_size, 16, 4096, "use a multiple of 16, e.g. 256")
        object.__setattr__(
            self,
            "pixel_size",
            _check_float("pixel_size", self.pixel_size, 0.1, 2.0, "use metres per pixel, e.g. 0.5"),
        )
        tile_crs = _parse_crs("crs", self.crs)
        if not tile_crs.is_projected:
            raise ConfigError(
                f"crs {self.crs!r} is not projected; use a UTM zone such as 'EPSG:32615'"
            )
        _parse_crs("footprints_crs", self.footprints_crs)
        if self.bands not in REAL_LIKE_BANDS:
            raise ConfigError(
                f"bands {self.bands!r} is not one of {REAL_LIKE_BANDS} for the real-like style"
            )
        if self.footprints_format not in FOOTPRINT_FORMATS:
            raise ConfigError(
                f"footprints_format {self.footprints_format!r} is not one of "
                f"{', '.join(FOOTPRINT_FORMATS)}"
            )
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))

    @property
    def tile_height(self) -> int:
        """Height in pixels: ``height``, or half the width when that is None."""
        return self.width // 2 if self.height is None else self.height


@dataclasses.dataclass(frozen=True)
class RealLikeArea:
    """A real-like tile on disk.

    Attributes:
        root: Absolute folder.
        tiles: ``(west, east)`` GeoTIFF halves.
        masks: True footprint masks (uint8 0/1) on each half's grid.
        footprints: The footprints file, in ``config.footprints_crs``.
        counts: Buildings per half (``west``, ``east``) and ``total``.
        config: What made it.
    """

    root: str
    tiles: tuple[str, str]
    masks: tuple[str, str]
    footprints: str
    counts: dict
    config: RealLikeConfig


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur by FFT (periodic edges, which noise fields do not mind)."""
    fy = np.fft.fftfreq(field.shape[0])[:, None]
    fx = np.fft.rfftfreq(field.shape[1])[None, :]
    gain = np.exp(-2 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(field) * gain, s=field.shape)


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-spread smooth noise of feature size ``sigma`` pixels."""
    field = _smooth(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-9)


def _burn(shapes, shape: tuple[int, int], dtype="float32", fill=0) -> np.ndarray:
    """Rasterizes ``(geometry, value)`` pairs given in pixel coordinates (x=col, y=row)."""
    shapes = [(g, v) for g, v in shapes if g is not None and not g.is_empty]
    if not shapes:
        return np.full(shape, fill, dtype)
    return rasterio.features.rasterize(
        shapes, out_shape=shape, transform=Affine.identity(), fill=fill, dtype=dtype
    )


def _sweep(part, offset: Sequence[float] | np.ndarray):
    """The area a convex part covers when moved by ``offset`` (its hull with the copy)."""
    moved = shapely.affinity.translate(part, *offset)
    return shapely.convex_hull(shapely.union(part, moved))


@dataclasses.dataclass
class _Building:
    parts: list  # convex rectangles (pixels) whose union is the footprint
    height_m: float
    roof: float  # roof reflectance 0..1
    gable: bool
    axis: float  # long-axis angle, radians
    colour: np.ndarray  # per-band multipliers (rgbn)

    @property
    def footprint(self):
        return shapely.union_all(self.parts)


def _place_buildings(
    rng: np.random.Generator, config: RealLikeConfig, blocker: _Blocker
) -> list[_Building]:
    """Rejection-samples buildings in each half, clear of the cut and of each other."""
    px = config.pixel_size
    half = config.width / 2
    margin = 12.0 / px
    out = []
    for side in range(2):
        placed, tries = 0, 0
        while placed < config.buildings_per_half and tries < 4000:
            tries += 1
            length = rng.uniform(9, 26) / px
            width = rng.uniform(7, min(15, length * px)) / px
            axis = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.25)
            x = rng.uniform(side * half + margin, (side + 1) * half - margin)
            y = rng.uniform(margin, config.tile_height - margin)
            parts = [_rect((x, y), length, width, axis)]
            if rng.random() < 0.3:  # an L-shaped wing along one end
                wing = rng.uniform(0.35, 0.6) * length
                end = np.array([math.cos(axis), math.sin(axis)]) * (length / 2 - wing / 2)
                normal = np.array([-math.sin(axis), math.cos(axis)]) * width * 0.75
                parts.append(_rect(np.array([x, y]) + end + normal, wing, width * 0.8, axis))
            footprint = shapely.union_all(parts)
            halo = footprint.buffer(4.0 / px)
            if blocker.hits(halo) or not shapely.box(
                side * half + 2, 2, (side + 1) * half - 2, config.tile_height - 2
            ).contains(halo):
                continue
            blocker.add(footprint)
            kind = rng.random()
            # A third darker than the ground, half about as bright, the rest bright.
            roof = (
                rng.uniform(0.10, 0.24)
                if kind < 0.33
                else rng.uniform(0.28, 0.5)
                if kind < 0.83
                else rng.uniform(0.6, 0.85)
            )
            out.append(
                _Building(
                    parts,
                    rng.uniform(3.0, 11.0),
                    roof,
                    rng.random() < 0.6,
                    axis,
                    rng.uniform(0.8, 1.2, 4),
                )
            )
            placed += 1
    return out


def _collar(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Valid-pixel mask with an irregular nodata collar along the north and east edges."""

    def edge(length: int, depth: float) -> np.ndarray:
        walk = np.cumsum(rng.normal(0, 1.5, length))
        walk = _smooth(walk[None, :], 6)[0]
        return np.clip(depth + walk - walk.mean(), 2, 3 * depth).astype(int)

    valid = np.ones((height, width), bool)
    top = edge(width, height * 0.04)
    right = edge(height, width * 0.02)
    rows, cols = np.indices((height, width))
    valid &= rows >= top[None, :]
    valid &= cols < (width - right[:, None])
    return valid


def _render(
    rng: np.random.Generator, config: RealLikeConfig, buildings: list[_Building]
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance bands ``[B, H, W]`` (0..1) and the valid mask of the whole tile."""
    h, w, px = config.tile_height, config.width, config.pixel_size
    shape = (h, w)
    nbands = len(BAND_NAMES[config.bands])

    # Ground: parcels of different brightness, low-frequency variation, grass texture.
    ground = 0.36 + 0.05 * _noise(rng, shape, 40 / px) + 0.02 * _noise(rng, shape, 1.5)
    parcels = []
    for _ in range(12):
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        parcels.append(
            (
                _rect(
                    centre, rng.uniform(40, 160) / px, rng.uniform(30, 120) / px, rng.normal(0, 0.2)
                ),
                rng.uniform(-0.1, 0.1),
            )
        )
    ground += _burn(parcels, shape)
    vegetation = np.clip(0.5 + 0.3 * _noise(rng, shape, 20 / px), 0, 1)  # for NIR
    # Roads: long straight strips, asphalt dark or concrete bright.
    roads = []
    for _ in range(3):
        vertical = rng.random() < 0.5
        pos = rng.uniform(0.1, 0.9) * (w if vertical else h)
        angle = math.pi / 2 + rng.normal(0, 0.05) if vertical else rng.normal(0, 0.05)
        centre = (pos, h / 2) if vertical else (w / 2, pos)
        road = _rect(centre, 3 * max(w, h), rng.uniform(6, 9) / px, angle)
        road = shapely.difference(
            road, shapely.union_all([b.footprint.buffer(3 / px) for b in buildings])
        )
        roads.append((road, rng.choice([0.2, 0.55])))
    road_value = _burn(roads, shape, fill=-1)
    ground = np.where(road_value >= 0, road_value + 0.01 * _noise(rng, shape, 1.0), ground)
    vegetation = np.where(road_value >= 0, 0.05, vegetation)

    # One sun for the scene; a nadir point west of the tile gives the lean.
    sun = rng.uniform(0.6, 1.0) * math.pi  # shadows fall towards the north-west-ish
    shadow_dir = np.array([math.cos(sun), -math.sin(sun)])
    nadir = np.array([-0.4 * w, h * rng.uniform(0.3, 0.7)])
    shadows, walls, roofs, facet = [], [], [], []
    for b in buildings:
        middle = np.array(b.footprint.centroid.coords[0])
        away = middle - nadir
        view = math.radians(6 + 16 * middle[0] / w)  # 6..22 degrees off nadir
        lean = away / np.linalg.norm(away) * b.height_m * math.tan(view) / px
        cast = shadow_dir * b.height_m * rng.uniform(0.7, 1.1) / px
        shadows += [(_sweep(p, cast), 1) for p in b.parts]
        roof_parts = [shapely.affinity.translate(p, *lean) for p in b.parts]
        walls += [(_sweep(p, lean), rng.uniform(0.25, 0.5)) for p in b.parts]
        roofs += [(r, b.roof) for r in roof_parts]
        if b.gable:
            # The half of the roof facing away from the sun is darker.
            normal = np.array([-math.sin(b.axis), math.cos(b.axis)])
            side = 1 if normal @ shadow_dir > 0 else -1
            for r in roof_parts:
                c = np.array(r.centroid.coords[0]) + normal * side * 1e3
                half = shapely.intersection(r, _rect(c, 4e3, 2e3, b.axis))
                facet.append((half, 1))
    shadow = _burn(shadows, shape) > 0
    image = np.repeat(ground[None], nbands, axis=0)
    image[:, shadow] *= 0.45
    wall = _burn(walls, shape, fill=-1)
    image = np.where(wall[None] >= 0, wall[None], image)
    roof = _burn(roofs, shape, fill=-1)
    texture = 0.03 * _noise(rng, shape, 0.8)
    dark_facet = _burn(facet, shape) > 0
    roof_value = np.where(dark_facet, roof * 0.75, roof) + texture
    is_roof = roof >= 0
    image = np.where(is_roof[None], roof_value[None], image)
    if nbands == 4:
        # Roof colours independent of anything; vegetation bright in NIR.
        ids = _burn([(r, i + 1) for i, (r, _) in enumerate(roofs)], shape, "int32")
        gains = np.ones((len(roofs) + 1, 4))
        part_colour = [b.colour for b in buildings for _ in b.parts]
        gains[1:] = np.array(part_colour)
        image = image * np.moveaxis(gains[ids], -1, 0)
        green = (~is_roof) & (road_value < 0)
        image[3] = np.where(green, image[3] * (1 + 0.8 * vegetation), image[3])

    # Trees: some in the open, some on purpose at roof edges.
    trees = []
    for _ in range(int(2.2 * len(buildings))):
        trees.append((rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 5) / px))
    for b in rng.choice(len(buildings), size=len(buildings) // 3, replace=False):
        x0, y0, x1, y1 = buildings[b].footprint.bounds
        trees.append((rng.choice([x0, x1]), rng.uniform(y0, y1), rng.uniform(2.5, 5) / px))
    canopy_shadow = (
        _burn(
            [
                (shapely.Point(x, y).buffer(r).buffer(0), 1)
                for x, y, r in [
                    (x + shadow_dir[0] * r, y + shadow_dir[1] * r, r) for x, y, r in trees
                ]
            ],
            shape,
        )
        > 0
    )
    image[:, canopy_shadow & ~is_roof] *= 0.7
    canopy = (
        _burn([(shapely.Point(x, y).buffer(r, quad_segs=8), 1) for x, y, r in trees], shape) > 0
    )
    leaves = 0.25 + 0.05 * _noise(rng, shape, 1.2 / px)
    for band in range(nbands):
        value = leaves * (2.2 if band == 3 else 1.0)
        image[band] = np.where(canopy, value, image[band])

    # Optics, then the sensor: photon noise grows with the signal, plus read noise.
    image = np.stack([_smooth(band, 0.7) for band in image])
    dn = 150 + 3300 * np.clip(image, 0, 1.1)
    dn = dn + rng.standard_normal(dn.shape) * np.sqrt(dn) * 0.9 + rng.normal(0, 10, dn.shape)
    valid = _collar(rng, h, w)
    dn = np.where(valid[None], np.clip(np.rint(dn), 1, 4095), NODATA)
    return dn.astype(np.uint16), valid


def generate_real_like(out_dir: str, config: RealLikeConfig = RealLikeConfig()) -> RealLikeArea:
    """Writes a real-like tile as two halves, their masks and the footprints.

    Args:
        out_dir: Folder to write (created).
        config: What to generate.

    Returns:
        The :class:`RealLikeArea` written.
    """
    root = os.path.abspath(out_dir)
    for sub in ("tiles", "masks"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    manifest = os.path.join(root, MANIFEST_NAME)
    if os.path.exists(manifest):
        os.remove(manifest)
    rng = np.random.default_rng(config.seed)
    blocker = _Blocker()
    buildings = _place_buildings(rng, config, blocker)
    data, _ = _render(rng, config, buildings)

    px = config.pixel_size
    x0, y0 = config.origin
    to_world = Affine(px, 0, x0, 0, -px, y0)
    local = np.array([b.footprint for b in buildings], dtype=object)
    world = shapely.transform(local, lambda xy: np.column_stack(to_world * (xy[:, 0], xy[:, 1])))
    half = config.width // 2
    sides = np.array([0 if b.footprint.centroid.x < half else 1 for b in buildings])
    attrs = {
        "id": [f"rl-{i + 1:04d}" for i in range(len(buildings))],
        "building": ["yes"] * len(buildings),
        "half": [_HALVES[s] for s in sides],
    }
    full_mask = _burn([(g, 1) for g in local], (config.tile_height, config.width), "uint8")
    tiles, masks, entries = [], [], []
    names = BAND_NAMES[config.bands]
    for i, name in enumerate(_HALVES):
        cols = slice(i * half, (i + 1) * half)
        transform = from_origin(x0 + i * half * px, y0, px, px)
        tile, mask = (os.path.join(root, sub, f"{name}.tif") for sub in ("tiles", "masks"))
        _write_geotiff(tile, data[:, :, cols], config, transform, names, None, nodata=NODATA)
        _write_geotiff(mask, full_mask[None, :, cols], config, transform, ("building",), None)
        tiles.append(tile)
        masks.append(mask)
        entries.append(
            {
                "half": name,
                "tile": f"tiles/{name}.tif",
                "mask": f"masks/{name}.tif",
                "transform": list(transform)[:6],
            }
        )
    footprints = _write_footprints(
        root,
        _reproject(world, config.crs, config.footprints_crs),
        attrs,
        config.footprints_crs,
        config.footprints_format,
    )
    counts = {
        "west": int((sides == 0).sum()),
        "east": int((sides == 1).sum()),
        "total": len(buildings),
    }
    _write_json(
        manifest,
        {
            "generator": "footprints.sample_area.reallike",
            "config": dataclasses.asdict(config),
            "crs": config.crs,
            "footprints_crs": config.footprints_crs,
            "pixel_size": px,
            "bands": list(names),
            "dtype": "uint16",
            "max_value": 4095,
            "nodata": NODATA,
            "tiles": entries,
            "footprints": os.path.basename(footprints),
            "counts": counts,
            "labels": "footprint (ground) outlines; roofs lean off nadir and may not cover them",
        },
    )
    return RealLikeArea(
        root, (tiles[0], tiles[1]), (masks[0], masks[1]), footprints, counts, config
    )
