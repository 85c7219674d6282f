"""Cutting a chip around a footprint from the orthophoto tiles under it.

The chip is a square around the footprint's bounding box, ``margin`` of the
footprint's larger side wider on each side and never narrower than
``min_extent`` (ground units), so a small shed keeps its surroundings (yard,
road, field) and a barn keeps its true size relative to a house: scale is one
of the strongest cues between the classes.

The square is laid on the pixel grid of the *primary* tile (the one holding
most of the footprint), so a chip inside one tile is an exact windowed read.
Where the square runs over the tile's edge the rest is filled from the
neighbouring tiles: an exact read for tiles on the same grid, a
``rasterio.warp.reproject`` for tiles in another CRS or grid. Neighbours must
give the same bands in the same data type (a 4-band NAIP tile beside a 3-band
one gives bands 1,2,3 of both); otherwise the footprint is dead-lettered as
``band_mismatch``: pasting a 3-band uint8 tile into a 1-band uint16 chip has
no meaning.

Nodata is never data: each tile's masks (nodata values, internal mask bands
as NAIP COGs carry them, alpha) are read with the pixels, and pixels no tile
covers are masked too. Nodata is not coverage either: a pixel that is nodata
in one tile (the collar of a NAIP quarter-quad reprojected to its UTM zone) is
taken from the next tile that holds data there, so a chip across the edge of
two UTM zones is whole. Nodata never enters a resampling kernel (GDAL's
warper skips it), and a neighbour's data is extended by one pixel over its
own edge, which closes the seam two staircase edges on two grids leave.
A footprint whose own pixels are less than ``min_coverage`` valid is
dead-lettered (``nodata``); a chip with some masked pixels carries its mask
(``image/mask``, see :mod:`footprints.contracts`) and the masked pixels are 0.
Then the chip is converted to 8 bits (when the rasters are not), resized to
``size`` and encoded as PNG or JPEG.

Everything here is a plain function over rasterio datasets, tested without
Beam; :mod:`pipeline.prepare` runs it in a DoFn.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely
from affine import Affine
from rasterio import windows

from footprints.contracts import Rejected
from footprints.errors import Reason
from footprints.tiles import TileInfo, readable_headers
from pipeline.settings.chips import (  # noqa: F401 (their home: how chips are cut is a setting)
    CHIP_SIZE,
    IMAGE_FORMATS,
    RESAMPLING,
    ChipSpec,
)
from pipeline.sources.tile_index import TileHit

if TYPE_CHECKING:
    from numpy.typing import DTypeLike
    from rasterio.io import DatasetReader

LOG = logging.getLogger(__name__)


class ChipError(Rejected):
    """A footprint cannot be chipped; ``reason`` is its code for ``errors/``."""


def bands_for(spec: ChipSpec, count: int) -> tuple[int, ...]:
    """The bands of ``spec`` to read from a raster with ``count`` bands."""
    bands = spec.bands or ((1, 2, 3) if count >= 3 else (1,))
    if max(bands) > count:
        raise ChipError(
            Reason.BAND_MISMATCH, f"the raster has {count} bands, --bands asks for {bands}"
        )
    return bands


@functools.lru_cache(maxsize=64)
def _unit_scale(crs: str) -> tuple[bool, float]:
    import pyproj

    parsed = pyproj.CRS.from_user_input(crs)
    if parsed.is_geographic:
        return True, 1.0
    return False, float(parsed.axis_info[0].unit_conversion_factor or 1.0)


def metres_per_unit(crs: str, y: float) -> tuple[float, float]:
    """Metres per CRS unit along x and y near latitude (or northing) ``y``.

    Projected CRSs: the axis unit (1 for metres, 0.3048006 for US survey
    feet). Geographic CRSs: a degree's length at latitude ``y`` on the WGS84
    mean radius, accurate to well under 1% over a chip.
    """
    geographic, factor = _unit_scale(crs)
    if not geographic:
        return factor, factor
    metres_per_degree = 111_320.0
    return metres_per_degree * max(math.cos(math.radians(y)), 1e-6), metres_per_degree


def chip_window(geom: shapely.Geometry, tile: TileInfo, spec: ChipSpec) -> windows.Window:
    """The chip's pixel window on ``tile``'s grid (it may reach past the tile).

    Args:
        geom: The footprint, in the tile's CRS.
        tile: The primary tile.
        spec: Margin and minimum extent.
    """
    minx, miny, maxx, maxy = geom.bounds
    # Sizes are compared in metres, so min_extent means the same on a UTM tile,
    # a State Plane tile in US feet and a lon/lat tile.
    mx, my = metres_per_unit(tile.crs, (miny + maxy) / 2)
    side = max(spec.min_extent, max((maxx - minx) * mx, (maxy - miny) * my) * (1 + 2 * spec.margin))
    res_x, res_y = tile.resolution
    cols = max(1, math.ceil(side / (res_x * mx)))
    rows = max(1, math.ceil(side / (res_y * my)))
    col_c, row_c = ~tile.affine @ ((minx + maxx) / 2, (miny + maxy) / 2)
    return windows.Window(round(col_c - cols / 2), round(row_c - rows / 2), cols, rows)


# Affine's ``*`` warns (PendingDeprecationWarning) on every call, and rasterio's
# window helpers use it: several warnings per chip. These two compute exactly
# what ``rasterio.windows.transform`` and ``rasterio.windows.bounds`` do, with ``@``.


def window_transform(window: windows.Window, affine: Affine) -> Affine:
    """The geotransform of ``window`` on a grid (``rasterio.windows.transform``)."""
    x, y = affine @ (window.col_off, window.row_off)
    return Affine.translation(x - affine.c, y - affine.f) @ affine


def window_bounds(window: windows.Window, affine: Affine) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of ``window`` (``rasterio.windows.bounds``)."""
    left, bottom = affine @ (window.col_off, window.row_off + window.height)
    right, top = affine @ (window.col_off + window.width, window.row_off)
    return left, bottom, right, top


def _grid_offset(tile: TileInfo, primary: TileInfo) -> tuple[int, int] | None:
    """Whole-pixel offset of ``tile``'s grid from ``primary``'s, or None if not aligned."""
    if tile.crs != primary.crs or tile.resolution != primary.resolution:
        return None
    # The plain (a, b, c, d, e, f) tuples: an Affine's attribute access is slow.
    a, p = tile.transform, primary.transform
    dx, dy = (a[2] - p[2]) / p[0], (a[5] - p[5]) / p[4]
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return None
    return round(dx), round(dy)


def _all_valid(ds: DatasetReader, bands: Sequence[int]) -> bool:
    """Whether the bands have no mask at all (GDAL's ``all_valid``): reading one gives all 255."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums
    return all(flags[b - 1] == [MaskFlags.all_valid] for b in bands)


def _paste_aligned(
    out: np.ndarray,
    valid: np.ndarray,
    ds: DatasetReader,
    tile: TileInfo,
    offset: tuple[int, int],
    window: windows.Window,
    bands: Sequence[int],
) -> None:
    """Reads the part of ``window`` that ``tile`` holds, exactly, into ``out``.

    Only pixels not yet ``valid`` are taken, and only where ``tile`` holds
    data there: a tile's nodata (a collar, an internal mask) never hides what
    a neighbour holds.
    """
    dx, dy = offset
    local = windows.Window(window.col_off - dx, window.row_off - dy, window.width, window.height)
    try:
        inside = local.intersection(windows.Window(0, 0, tile.width, tile.height))
    except windows.WindowError:
        return
    r0, c0 = int(inside.row_off - local.row_off), int(inside.col_off - local.col_off)
    h, w = int(inside.height), int(inside.width)
    data = ds.read(bands, window=inside)
    if _all_valid(ds, bands):  # no nodata, mask band or alpha: every pixel holds data
        good = np.ones((h, w), bool)
    else:
        good = np.all(ds.read_masks(bands, window=inside) > 0, axis=0)
    region = (slice(r0, r0 + h), slice(c0, c0 + w))
    if (h, w) == valid.shape and not valid.any():  # the usual chip: one read fills it all
        out[:] = data
        valid[:] = good
        return
    todo = good & ~valid[region]
    out[:, region[0], region[1]][:, todo] = data[:, todo]
    valid[region] |= todo


def _paste_warped(
    out: np.ndarray,
    valid: np.ndarray,
    ds: DatasetReader,
    tile: TileInfo,
    window: windows.Window,
    primary: TileInfo,
    bands: Sequence[int],
    resampling: str,
) -> None:
    """Reprojects what ``tile`` holds of the chip onto the chip grid, where the chip lacks data."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds

    dst_transform = window_transform(window, primary.affine)
    bounds = window_bounds(window, primary.affine)
    src_bounds = transform_bounds(primary.crs, tile.crs, *bounds, densify_pts=21)
    src_win = windows.from_bounds(*src_bounds, transform=tile.affine)
    # Whole pixels, one more on each side, so bilinear has its neighbours.
    col0, row0 = math.floor(src_win.col_off) - 1, math.floor(src_win.row_off) - 1
    col1 = math.ceil(src_win.col_off + src_win.width) + 1
    row1 = math.ceil(src_win.row_off + src_win.height) + 1
    src_win = windows.Window(col0, row0, col1 - col0, row1 - row0)
    try:
        src_win = src_win.intersection(windows.Window(0, 0, tile.width, tile.height))
    except windows.WindowError:
        return
    data = ds.read(bands, window=src_win)
    good = np.all(ds.read_masks(bands, window=src_win) > 0, axis=0)
    src_transform = window_transform(src_win, tile.affine)
    shape = out.shape[1:]
    common = dict(
        src_transform=src_transform,
        src_crs=tile.crs,
        dst_transform=dst_transform,
        dst_crs=primary.crs,
    )
    if good.all():
        warped = np.zeros((len(bands), *shape), dtype=out.dtype)
        reproject(data, warped, resampling=Resampling[resampling], **common)
        # 1 on the tile; nearest, so the tile's edge does not blur.
        covered = np.zeros(shape, dtype=np.uint8)
        reproject(
            np.ones(good.shape, np.uint8),
            covered,
            resampling=Resampling.nearest,
            dst_nodata=0,
            **common,
        )
        todo = (covered > 0) & ~valid
    else:
        # Nodata pixels (a collar) are NaN, which GDAL's warper leaves out of
        # every resampling kernel, so no pixel is blended with a nodata value.
        # The data is first extended by one pixel over its own edge: the
        # staircase edges of two tiles' data on two grids leave a seam of
        # pixels that neither holds by its centre.
        extended, holds_source = _extend_edge(data, good)
        source = np.where(holds_source, extended.astype(np.float32), np.nan)
        floats = np.full((len(bands), *shape), np.nan, np.float32)
        reproject(
            source,
            floats,
            resampling=Resampling[resampling],
            src_nodata=np.nan,
            dst_nodata=np.nan,
            **common,
        )
        warped = _as_dtype(np.nan_to_num(floats), out.dtype)
        todo = np.isfinite(floats).all(axis=0) & ~valid
    out[:, todo] = warped[:, todo]
    valid |= todo


def _extend_edge(data: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` [bands, H, W] with each invalid pixel next to valid ones set to one of them.

    Returns the extended pixels and where they now hold data (``good`` grown
    by one pixel, 8-connected).
    """
    out, grown = data.copy(), good.copy()
    height, width = good.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if not (dy or dx):
                continue
            # Target pixels (r, c) take the source (r + dy, c + dx).
            rt = slice(max(0, -dy), height - max(0, dy))
            ct = slice(max(0, -dx), width - max(0, dx))
            rs = slice(max(0, dy), height - max(0, -dy))
            cs = slice(max(0, dx), width - max(0, -dx))
            take = good[rs, cs] & ~grown[rt, ct]
            out[:, rt, ct][:, take] = data[:, rs, cs][:, take]
            grown[rt, ct] |= take
    return out, grown


def _as_dtype(values: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """Float pixels as ``dtype``: rounded and clipped to its range for integer types."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        return values.astype(dtype)
    info = np.iinfo(dtype)
    clipped: np.ndarray = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return clipped


def _check_coverage(footprint_hits: Sequence[TileHit], spec: ChipSpec) -> None:
    """Raises ChipError unless the tiles cover ``spec.min_coverage`` of the footprint."""
    if not footprint_hits:
        raise ChipError(
            Reason.NO_RASTER,
            "no raster tile lies under the footprint; check that "
            "--rasters covers the footprints and both CRSs are right",
        )
    coverage = min(1.0, sum(hit.fraction for hit in footprint_hits))
    if coverage < spec.min_coverage:
        raise ChipError(
            Reason.PARTLY_OUTSIDE_RASTERS,
            f"only {coverage:.0%} of the footprint lies on the rasters "
            f"(--min-coverage {spec.min_coverage})",
        )


def read_chip(
    footprint_hits: Sequence[TileHit],
    chip_hits: Sequence[TileHit],
    open_dataset: Callable[[str], object],
    spec: ChipSpec,
) -> np.ndarray:
    """Reads the raw chip pixels, band-first, from every tile under the chip.

    Returns:
        The pixels as a masked array (``numpy.ma``): masked where every tile
        under the pixel has nodata there, or no tile covers it; masked pixels
        hold 0.

    Args:
        footprint_hits: Tiles under the footprint, primary first
            (:meth:`TileIndex.touching` of the footprint).
        chip_hits: Tiles under the chip's square (:meth:`TileIndex.touching`
            of :func:`chip_box`).
        open_dataset: Returns an open rasterio dataset for a path (cached by
            the caller, so a tile is opened once per worker).
        spec: How to cut.

    Raises:
        ChipError: no raster under the footprint, too little coverage, a
            band the rasters lack (``band_mismatch``, also for neighbours
            with another band count or data type), or a footprint mostly on
            nodata (``nodata``).
    """
    _check_coverage(footprint_hits, spec)
    primary_hit = footprint_hits[0]
    primary = primary_hit.tile
    bands = bands_for(spec, primary.count)
    window = chip_window(primary_hit.geometry, primary, spec)
    out = np.zeros((len(bands), int(window.height), int(window.width)), dtype=primary.dtype)
    valid = np.zeros(out.shape[1:], dtype=bool)
    # The primary tile first, so that where tiles overlap its pixels win; a
    # pixel that is nodata in it (a collar, a masked area) is taken from the
    # next tile that holds data there.
    ordered = [primary] + sorted({h.tile for h in chip_hits} - {primary}, key=lambda t: t.path)
    for tile in ordered:
        try:
            same = bands_for(spec, tile.count) == bands and tile.dtype == primary.dtype
        except ChipError:
            same = False
        if not same:  # e.g. a 1-band uint16 tile beside a 3-band uint8 one
            raise ChipError(
                Reason.BAND_MISMATCH,
                f"the chip spans {primary.path!r} ({primary.count} bands, {primary.dtype}) "
                f"and its neighbour {tile.path!r} ({tile.count} bands, {tile.dtype}), which "
                f"cannot give the same bands {bands}: convert the tiles to one layout "
                "(e.g. gdal_translate -b 1 -b 2 -b 3) or prepare them in separate runs",
            )
        ds = open_dataset(tile.path)
        offset = _grid_offset(tile, primary)
        if offset is not None:
            _paste_aligned(out, valid, ds, tile, offset, window, bands)
        else:
            _paste_warped(out, valid, ds, tile, window, primary, bands, spec.resampling)
        if valid.all():
            break
    share = valid_share(
        primary_hit.geometry, valid, lambda: window_transform(window, primary.affine)
    )
    if share < spec.min_coverage:
        raise ChipError(
            Reason.NODATA,
            f"only {share:.0%} of the footprint's pixels hold data (the rest is "
            f"nodata or masked; --min-coverage {spec.min_coverage}); the tiles "
            "have no usable imagery there",
        )
    out[:, ~valid] = 0
    return np.ma.MaskedArray(out, mask=np.broadcast_to(~valid, out.shape))


def valid_share(
    geom: shapely.Geometry, valid: np.ndarray, transform: Affine | Callable[[], Affine]
) -> float:
    """Share of the footprint's pixels (all it touches) that hold data.

    Args:
        geom: The footprint, in the chip's CRS.
        valid: The chip's validity, True where a pixel holds data.
        transform: The chip's geotransform, or a function that makes it
            (called only when some pixel is invalid).
    """
    from rasterio.features import geometry_mask

    if valid.all():  # the share of valid pixels under the footprint is 1 whatever it covers
        return 1.0
    if callable(transform):
        transform = transform()
    inside = geometry_mask([geom], valid.shape, transform, all_touched=True, invert=True)
    if not inside.any():  # a degenerate polygon: judge by the pixel under its centre
        col, row = ~transform @ (geom.centroid.x, geom.centroid.y)
        row = min(max(int(row), 0), valid.shape[0] - 1)
        col = min(max(int(col), 0), valid.shape[1] - 1)
        return float(valid[row, col])
    return float(valid[inside].mean())


def chip_box(footprint_hits: Sequence[TileHit], spec: ChipSpec) -> tuple[shapely.Polygon, str]:
    """The chip's square as a polygon in the primary tile's CRS, and that CRS."""
    primary_hit = footprint_hits[0]
    tile = primary_hit.tile
    window = chip_window(primary_hit.geometry, tile, spec)
    return shapely.box(*window_bounds(window, tile.affine)), tile.crs


def to_uint8(chip: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Maps raw pixels to 0..255: as they are for uint8, else linearly from ``value_range``."""
    if chip.dtype == np.uint8 and value_range is None:
        return chip
    mask = np.ma.getmask(chip)
    chip = np.ma.getdata(chip)
    if value_range is None:
        info = np.iinfo(chip.dtype) if chip.dtype.kind in "ui" else None
        value_range = (0.0, float(info.max)) if info else (0.0, 1.0)
    low, high = value_range
    scaled = (chip.astype(np.float32) - low) * (255.0 / (high - low))
    out: np.ndarray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if mask is not np.ma.nomask:  # masked pixels stay 0 and masked
        out[mask] = 0
        return np.ma.MaskedArray(out, mask=mask)
    return out


def encode_image(chip: np.ndarray, spec: ChipSpec) -> bytes:
    """Band-first uint8 pixels -> resized PNG/JPEG bytes."""
    from PIL import Image

    hwc = np.ascontiguousarray(np.moveaxis(np.ma.getdata(chip), 0, -1))
    image = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
    if spec.size and image.size != (spec.size, spec.size):
        method = {
            "nearest": Image.Resampling.NEAREST,
            "bilinear": Image.Resampling.BILINEAR,
            "cubic": Image.Resampling.BICUBIC,
            "average": Image.Resampling.BOX,
        }
        image = image.resize((spec.size, spec.size), method[spec.resampling])
    buf = io.BytesIO()
    if spec.image_format == "jpeg":
        image.save(buf, format="JPEG", quality=95)
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()


def encode_mask(chip: np.ndarray, spec: ChipSpec) -> bytes | None:
    """The chip's validity mask as a one-band PNG (255 data, 0 masked), or None if all valid.

    Resized like the image, but with nearest neighbour, so it stays 0/255.
    """
    from PIL import Image

    masked = np.ma.getmaskarray(chip)
    if not masked.any():
        return None
    image = Image.fromarray(np.where(masked.any(axis=0), 0, 255).astype(np.uint8))
    if spec.size and image.size != (spec.size, spec.size):
        image = image.resize((spec.size, spec.size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def estimate_value_range(
    tiles: Sequence[TileInfo], bands: tuple[int, ...], max_tiles: int = 8
) -> tuple[float, float]:
    """A (0.5%, 99.5%) percentile stretch for non-uint8 rasters, from decimated reads.

    Computed once in the driver over at most ``max_tiles`` tiles (sorted by
    path, so it is deterministic) and used for every chip, so brightness stays
    comparable across the area: a per-chip stretch would erase it.
    """
    import rasterio

    samples = []
    for tile in sorted(tiles, key=lambda t: t.path)[:max_tiles]:
        with rasterio.open(tile.path) as src:
            shape = (min(256, src.height), min(256, src.width))
            data = src.read([b for b in bands if b <= src.count], out_shape=shape, masked=True)
            samples.append(data.compressed())
    values = np.concatenate(samples) if samples else np.array([0, 1])
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1))


def with_area_stretch(spec: ChipSpec, paths: Sequence[str]) -> ChipSpec:
    """``spec`` with one 8-bit stretch fixed for the whole area, when the rasters need one.

    Unchanged when ``spec`` has a ``value_range`` already, or when the first
    tiles (``paths`` sorted, at most 8 read) are all uint8 or none can be
    read. Otherwise the stretch is :func:`estimate_value_range` over those
    tiles, so chip brightness is comparable across the area; ``prepare`` and
    ``segment --classifier`` fix it once, before the job starts.
    """
    if spec.value_range is not None:
        return spec
    infos = readable_headers(sorted(paths)[:8])
    if not infos or all(i.dtype == "uint8" for i in infos):
        return spec
    bands = bands_for(spec, min(i.count for i in infos))
    value_range = estimate_value_range(infos, bands)
    LOG.info("rasters are %s: stretching %s to 0..255", infos[0].dtype, value_range)
    return dataclasses.replace(spec, value_range=value_range)
