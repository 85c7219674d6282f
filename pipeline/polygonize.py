"""From stitched masks to building footprints.

Per tile, block by block of its mask file (:func:`polygonize_raster`; an
in-memory mask: :func:`polygonize_tile`): threshold the probability, trace
the 4-connected building regions with ``rasterio.features.shapes`` (outer
rings and holes, exactly along pixel edges), and measure each region's pixels,
probability sum and pixels next to nodata from the pixels it covers, exactly,
without rasterizing it back: a traced ring runs along pixel edges, so the sum
of any pixel value over the ring's inside is a signed sum, over the ring's
vertical edges, of the block's summed-area table at their ends
(:func:`_region_sums`).
Regions cut by the edges between blocks are unioned as those cut by tile
edges are (below), so memory follows the block, not the tile.

Buildings cut by a tile boundary: a region that touches its tile's outer
edge, or the edge of the tile's data (a pixel next to it is nodata: the
collar of a NAIP quarter-quad reprojected to its UTM zone, where the
neighbouring tile holds the imagery), is a *part*. All parts are gathered
(:func:`merge_parts`): parts in one CRS are unioned on a fine snapping grid
(a thousandth of a pixel, so coordinates that differ by float noise between
neighbouring tiles meet); then parts in different CRSs (tiles of two UTM
zones) within about a pixel of each other are reprojected into the CRS of
the largest and closed across the seam their two pixel grids leave, so a
building split across two or four tiles, in any CRSs, becomes one footprint.
Parts are few (only those on edges), so this gathering is cheap. Tiles are
assumed not to overlap where both hold data; overlapping data would give
duplicate footprints.

Whole regions too small to reach the minimum area however they are
finished (specks: most of a noisy mask's regions; :func:`speck_size`) are
dropped with their block, sieved out before tracing or as they are traced,
and only counted.

Then each footprint is finished (:func:`finish`): simplified with a
tolerance in pixels (or, with ``--regularize``, given right-angle outlines by
``buildingregulariser``), repaired where that broke it (``make_valid``, every
polygonal part kept: a split building becomes a MultiPolygon, never a lost
lobe), reprojected, oriented (exterior rings counterclockwise, holes
clockwise) and only then measured in square metres (geodesic area on the
WGS 84 ellipsoid for geographic CRSs, planar area times the CRS unit
otherwise) and held to the minimum area: ``area_m2`` is the area of the
polygon in the table. Simplifying after merging keeps the shared edges of
parts exact until they are unioned.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import apache_beam as beam
import numpy as np
import shapely
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import AsDict, AsList, PCollection, TaggedOutput
from shapely.geometry import MultiPolygon, Polygon

from footprints import contracts
from footprints.contracts import ERRORS, METRICS_SEGMENT
from pipeline.chipping import metres_per_unit
from pipeline.chipping.transforms import CutChipDoFn
from pipeline.labels import ClassMap
from pipeline.ptransform import DataclassTransform
from pipeline.settings.chips import ChipSpec
from pipeline.sources.rasters import any_block_stored
from pipeline.sources.vectors import Footprint as VectorFootprint
from pipeline.values import WrittenMask, threshold_uint8
from pipeline.windows import Box

if TYPE_CHECKING:
    import pyproj
    from affine import Affine
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

    from footprints.tiles import TileInfo

#: A ``footprints/`` row (the columns of ``FOOTPRINTS_SCHEMA``): column -> value.
Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Footprint:
    """A traced building, or a part of one cut by a tile edge.

    Attributes:
        footprint_id: Deterministic id: ``<scene>-<n>`` for one tile's
            region; for merged buildings the smallest id of their parts.
        tile: The scene it belongs to (for merged ones, the tile holding most
            of it).
        crs: CRS of ``geometry``.
        geometry: Polygon (with holes) in CRS units.
        pixels: How many mask pixels it covers.
        probability_sum: Sum of those pixels' probabilities (0..1 each).
        pixel_size: The tile's pixel size in CRS units (for tolerances).
        on_edge: Whether it touches its tile's outer edge or the edge of the
            tile's data (a part, to merge with its neighbours').
        on_data_edge: Whether a pixel next to it is nodata (a collar).
    """

    footprint_id: str
    tile: str
    crs: str
    geometry: Polygon
    pixels: int
    probability_sum: float
    pixel_size: float
    on_edge: bool = False
    on_data_edge: bool = False

    @property
    def mean_probability(self) -> float:
        """Mean building probability over the polygon's pixels (0 for no pixels)."""
        return self.probability_sum / self.pixels if self.pixels else 0.0


def next_to_nodata(valid: np.ndarray) -> np.ndarray:
    """Pixels that are nodata or have a nodata neighbour (8-connected) inside ``valid``'s array.

    Example: ``valid`` all True but its first column -> the first two columns.
    """
    invalid = ~valid
    out = invalid.copy()
    out[1:] |= invalid[:-1]
    out[:-1] |= invalid[1:]
    grown = out.copy()
    out[:, 1:] |= grown[:, :-1]
    out[:, :-1] |= grown[:, 1:]
    return out


def _trace_pixels(
    probability: np.ndarray,
    valid: np.ndarray | None,
    threshold: float,
    near_nodata: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The building regions of a mask, in its pixel coordinates.

    Args:
        probability: uint8 probability x 255.
        valid: Validity, or None (all valid).
        threshold: Building probability threshold.
        near_nodata: Pixels next to nodata (:func:`next_to_nodata`, computed
            with the neighbours beyond the array's edges), or None (none).

    Returns:
        ``(polygons, counts, sums, on_data_edge)``: one shapely polygon per
        4-connected region (``rasterio.features.shapes``' scan order), its
        pixel count, the sum of its pixels' probabilities (0..1 each) and
        whether one of its pixels is next to nodata.
    """
    from rasterio import features
    from rasterio.transform import Affine

    building = probability >= threshold_uint8(threshold)
    if valid is not None:
        building &= valid
    if not building.any():
        return np.array([], dtype=object), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    # Traced in pixel coordinates first: edges are then exact integers, which
    # the region sums below read the summed-area tables at.
    polygons = _polygons(
        geom
        for geom, _ in features.shapes(
            building.view(np.uint8), mask=building, connectivity=4, transform=Affine.identity()
        )
    )
    # A region's pixels are exactly those inside its polygon: measured on
    # the polygons, so the background is never visited.
    values = [probability] + ([] if near_nodata is None else [near_nodata])
    counts, sums, *near = _region_sums(polygons, values)
    edge = near[0] > 0 if near else np.zeros(len(polygons), bool)
    return polygons, counts, sums / 255.0, edge


def _polygons(geojson: Iterable[dict[str, Any]]) -> np.ndarray:
    """Shapely polygons of GeoJSON-like polygons (shell first, then holes), built in one call.

    What ``shapely.geometry.shape`` gives for each, the same coordinates in
    the same order, without a Python object per ring and polygon on the
    way: a noisy mask traces tens of thousands of regions per megapixel.
    """
    geoms = list(geojson)
    if not geoms:
        return np.array([], dtype=object)
    rings = [ring for geom in geoms for ring in geom["coordinates"]]
    owner = np.repeat(np.arange(len(geoms)), [len(geom["coordinates"]) for geom in geoms])
    coords = np.concatenate([np.asarray(ring, dtype=float) for ring in rings])
    ring_of = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    polygons: np.ndarray = shapely.polygons(
        shapely.linearrings(coords, indices=ring_of), indices=owner
    )
    return polygons


def whole_specks(building: np.ndarray, size: int, keep: np.ndarray | None = None) -> np.ndarray:
    """The pixels of the 4-connected regions of ``building`` under ``size`` pixels, whole ones.

    "Whole": touching neither the array's edge nor a ``keep`` pixel (4-adjacent
    or on it). Found by GDAL's sieve (``rasterio.features.sieve``, in C),
    which merges every polygon under ``size`` pixels into its largest
    neighbour, run on the regions with the edge and ``keep`` set as building:
    regions joined to those are then part of a larger polygon. The sieve
    keeps a speck whose ground around it is itself a small polygon (merged
    into a building, the speck with it), as on a noisy mask, where ground is
    as fragmented as the buildings; so it runs again on what is left (the
    ground around those specks has grown), up to :data:`SIEVE_PASSES` times:
    on the noise of a random-weight U-Net, one pass finds 78% of the specks,
    three 93%. A region returned is always whole and small; not every such
    region is returned.

    Example: a 1-pixel region in the middle of a 9 x 9 array with ``size`` 2
    is returned; one on the array's first row is not.
    """
    from rasterio import features

    rows, cols = building.shape
    found = np.zeros(building.shape, bool)
    if rows < 3 or cols < 3 or 2 * (rows + cols) - 4 < size:
        return found  # the edge itself could be sieved away
    left = building
    for _ in range(SIEVE_PASSES):
        framed = left.astype(np.uint8)
        framed[0], framed[-1], framed[:, 0], framed[:, -1] = 1, 1, 1, 1
        if keep is not None:
            framed[keep] = 1
        specks = left & (features.sieve(framed, size, connectivity=4) == 0)
        if not specks.any() or keep is not None and (specks & keep).any():
            break  # none left, or a small kept area was sieved: these are not known whole
        found |= specks
        left = left & ~specks
    return found


#: Sieve passes of :func:`whole_specks` (each about 0.25 CPU s per 2048 x 2048 block).
SIEVE_PASSES = 3
#: Regions per pixel over which a block is sieved before it is traced: a pass costs
#: about what tracing 3,000 regions does (0.06 to 0.25 CPU s on a 2048 x 2048 block),
#: so a clean mask (hundreds of buildings a block) is only traced.
SIEVE_MIN_DENSITY = 1e-3


def regions_estimate(building: np.ndarray) -> int:
    """About how many 4-connected regions ``building`` has: its Euler number (regions - holes).

    Counted from its 2 x 2 pixel patterns (Gray's bit quads: (Q1 - Q3 + 2 QD) / 4
    for 4-connected regions), about 4 ms per megapixel. Example: two pixels
    touching at a corner give 2.
    """
    padded = np.zeros((building.shape[0] + 2, building.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = building
    a, b, c, d = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    total = a + b + c + d
    one, three = np.count_nonzero(total == 1), np.count_nonzero(total == 3)
    diagonal = np.count_nonzero((total == 2) & (a == d))
    return int(one - three + 2 * diagonal) // 4


def count_regions(pixels: np.ndarray) -> int:
    """The number of 4-connected regions of the True pixels of a 2-D array.

    Written here because nothing installed labels regions (no scipy or
    scikit-image) and tracing them to count them costs a Python object each:
    each pixel starts as its own label, and every step gives both ends of
    each 4-neighbour pair the smaller label, then lets each label follow its
    own (pointer jumping), until nothing changes; a region is counted once,
    at its first pixel. Specks are small, so this ends in a few steps (11 on
    2048 x 2048 pixels of random noise, 0.2 s).
    """
    rows, cols = np.nonzero(pixels)
    width = pixels.shape[1]
    flat = rows.astype(np.int64) * width + cols  # ascending: np.nonzero is row-major
    n = len(flat)
    if n == 0:
        return 0
    first, second = [], []
    for step, inside in ((1, cols + 1 < width), (width, rows + 1 < pixels.shape[0])):
        at = np.minimum(np.searchsorted(flat, flat + step), n - 1)
        pair = inside & (flat[at] == flat + step)
        first.append(np.flatnonzero(pair))
        second.append(at[pair])
    a, b = np.concatenate(first), np.concatenate(second)
    label = np.arange(n)
    while True:
        smaller = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, smaller)
        np.minimum.at(new, b, smaller)
        new = new[new]
        if np.array_equal(new, label):
            return int(np.count_nonzero(label == np.arange(n)))
        label = new


def summed_area(values: np.ndarray) -> np.ndarray:
    """The summed-area table of a 2-D array: ``out[r, c] == values[:r, :c].sum()``.

    Shaped one more row and column than ``values``; int32 where the total
    cannot overflow it (a 2048 x 2048 block of uint8), else int64.
    """
    rows, cols = values.shape
    top = int(np.iinfo(values.dtype).max) if values.dtype != bool else 1
    dtype = np.int32 if rows * cols * top < 2**31 else np.int64
    out = np.zeros((rows + 1, cols + 1), dtype)
    np.cumsum(values, axis=0, dtype=dtype, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
    return out


def _region_sums(polygons: np.ndarray, values: list[np.ndarray]) -> list[np.ndarray]:
    """Pixel count and the sum of each of ``values`` over each traced polygon's pixels.

    The polygons are in pixel coordinates with vertices on pixel corners (as
    ``rasterio.features.shapes`` traces them, holes included). Over the
    inside of such a ring, the sum of ``v`` is the signed sum, over its
    vertical edges ``(x, y0) -> (x, y1)``, of ``S[y1, x] - S[y0, x]`` with
    ``S`` the summed-area table of ``v`` (horizontal edges add nothing);
    with ``v = 1`` it is the ring's signed pixel area, whose sign orients
    every ring's sum. A polygon's sum is its exterior's less its holes'.
    Integer sums, so exact.

    Returns:
        ``[counts, sums of values[0], sums of values[1], ...]``, int64 per polygon.
    """
    rings, owner = shapely.get_rings(polygons, return_index=True)
    exterior = np.ones(len(rings), bool)
    exterior[1:] = owner[1:] != owner[:-1]  # get_rings lists each exterior first
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    xy = np.rint(xy).astype(np.int64)
    vertical = (ring[:-1] == ring[1:]) & (xy[:-1, 0] == xy[1:, 0])
    x, y0, y1, edge_ring = (
        xy[:-1, 0][vertical],
        xy[:-1, 1][vertical],
        xy[1:, 1][vertical],
        ring[:-1][vertical],
    )
    signed_area = np.bincount(edge_ring, weights=x * (y1 - y0), minlength=len(rings))
    sign = np.where(exterior, 1, -1) * np.sign(signed_area).astype(np.int64)
    out = [
        np.bincount(
            owner, weights=np.abs(signed_area) * np.where(exterior, 1, -1), minlength=len(polygons)
        )
    ]
    for v in values:
        table = summed_area(v)
        per_ring = np.bincount(
            edge_ring,
            weights=table[y1, x].astype(np.int64) - table[y0, x],
            minlength=len(rings),
        )
        del table  # one table alive at a time: 4 bytes per block pixel
        out.append(np.bincount(owner, weights=per_ring * sign, minlength=len(polygons)))
    return [np.rint(o).astype(np.int64) for o in out]


def _placed(
    parts: list[Footprint], transform: Affine, crs: str, rows: int, cols: int
) -> list[Footprint]:
    """Footprints traced in tile pixels, mapped to the CRS; ``on_edge``: on the tile's edge."""
    if not parts:
        return []
    polygons = np.array([p.geometry for p in parts], dtype=object)
    on_edge = _on_tile_edge(polygons, rows, cols) | np.array([p.on_data_edge for p in parts])
    t = transform
    # One vectorized affine map for all polygons: pixel (col, row) -> CRS (x, y).
    placed = shapely.transform(
        polygons,
        lambda xy: np.column_stack(
            (t.c + t.a * xy[:, 0] + t.b * xy[:, 1], t.f + t.d * xy[:, 0] + t.e * xy[:, 1])
        ),
    )
    pixel_size = max(abs(t.a), abs(t.e))
    return [
        dataclasses.replace(part, crs=crs, geometry=geom, pixel_size=pixel_size, on_edge=bool(edge))
        for part, geom, edge in zip(parts, placed, on_edge, strict=True)
    ]


def _on_tile_edge(polygons: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Which polygons (tile pixel coordinates) touch the outer edge of a rows x cols tile."""
    bounds = shapely.bounds(polygons)
    touches: np.ndarray = (
        (bounds[:, 0] <= 0) | (bounds[:, 1] <= 0) | (bounds[:, 2] >= cols) | (bounds[:, 3] >= rows)
    )
    return touches


def _pixel_parts(
    polygons: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    on_data_edge: np.ndarray,
    scene: str,
    numbers: Iterable[int],
) -> list[Footprint]:
    """One footprint per traced region; ``numbers``: the regions' numbers in the tile (ids)."""
    return [
        Footprint(
            footprint_id=f"{scene}-{number:06d}",
            tile=scene,
            crs=PIXELS,
            geometry=geom,
            pixels=int(n),
            probability_sum=float(total),
            pixel_size=1.0,
            on_data_edge=bool(near),
        )
        for geom, n, total, near, number in zip(
            polygons, counts, sums, on_data_edge, numbers, strict=True
        )
    ]


#: The "CRS" of footprints still in tile pixel coordinates.
PIXELS = "pixels"


def polygonize_tile(
    probability: np.ndarray,
    valid: np.ndarray | None,
    transform: Affine,
    threshold: float,
    scene: str,
    crs: str,
) -> list[Footprint]:
    """Traces the buildings of one tile's mask, held in memory.

    Args:
        probability: uint8 [rows, cols], probability x 255.
        valid: bool [rows, cols] or None (all valid); invalid pixels are
            never buildings.
        transform: The tile's affine geotransform.
        threshold: Probability at or above which a pixel is a building.
        scene: The tile's name (for ids).
        crs: The tile's CRS.

    Returns:
        One :class:`Footprint` per 4-connected building region, in a
        deterministic order (by ``rasterio.features.shapes``' scan order).
    """
    rows, cols = probability.shape
    near = None if valid is None else next_to_nodata(valid)
    traced = _trace_pixels(probability, valid, threshold, near)
    parts = _pixel_parts(*traced, scene, range(len(traced[0])))
    return _placed(parts, transform, crs, rows, cols)


#: Rows and columns of mask polygonized at a time (a multiple of the COG's
#: 512-pixel blocks): bounds polygonizing's memory to about 6 bytes per
#: block pixel (the probability, the building pixels, one int32 summed-area
#: table; 9 where the mask has nodata), whatever the tile's size.
POLYGONIZE_BLOCK = 2048


def polygonize_raster(
    path: str,
    threshold: float,
    scene: str,
    crs: str,
    transform: Affine | None = None,
    block: int = POLYGONIZE_BLOCK,
    speck_pixels: float = 0.0,
    dropped: Callable[[int], None] | None = None,
) -> Iterator[Footprint]:
    """Traces the buildings of a mask file, ``block`` x ``block`` pixels at a time.

    Regions that touch an edge between two blocks are unioned across it
    with :func:`merge_parts`, as parts cut by tile edges are, in tile pixel
    coordinates (where the shared edges are exact integers); so the
    footprints are those :func:`polygonize_tile` gives on the whole mask,
    and identical to it (ids, order) when the mask is one block.

    Specks: a region of fewer than ``speck_pixels`` pixels that touches no
    edge (block, tile or data; so it is whole) is dropped before any object
    is made for it: a noisy mask (a weak model's, on real imagery) has tens
    of thousands of them per megapixel. On such a block
    (:data:`SIEVE_MIN_DENSITY`) most are found by :func:`whole_specks` and
    never traced; the others are dropped as they are traced. The other
    regions are traced as without, but their ``<scene>-<n>`` numbers count
    only the regions traced.

    Args:
        path: A mask COG (band 1: probability x 255; its mask: validity).
        threshold: Probability at or above which a pixel is a building.
        scene: The tile's name (for ids: ``<scene>-<n>``, numbered in block
            order, then scan order).
        crs: The tile's CRS.
        transform: The tile's affine geotransform (None: the file's).
        block: Block size in pixels.
        speck_pixels: Whole regions of fewer pixels are dropped (0: none;
            :func:`speck_size` gives the size :func:`finish` surely drops).
        dropped: Called with the number of regions of each block dropped.

    Yields:
        The footprints of regions inside one block first, then the merged ones.
    """
    import rasterio
    from rasterio.enums import MaskFlags

    with rasterio.open(path) as src:
        rows, cols = src.height, src.width
        transform = transform or src.transform
        masked = MaskFlags.all_valid not in src.mask_flag_enums[0]
        count = 0
        cut: list[Footprint] = []
        for row in range(0, rows, block):
            for col in range(0, cols, block):
                box = Box(row, col, min(block, rows - row), min(block, cols - col))
                if not any_block_stored(src, box, [1]):
                    continue  # a sparse mask (a huge tile's) stores no block here: all 0
                traced = _trace_block(src, box, masked, threshold, speck_pixels, dropped)
                if traced is None:
                    continue
                numbers = count + traced.positions
                count += traced.traced
                parts = _pixel_parts(
                    traced.polygons, traced.counts, traced.sums, traced.on_data_edge, scene, numbers
                )
                cut += [p for p, i in zip(parts, traced.on_block_edge, strict=True) if i]
                inside = [p for p, i in zip(parts, traced.on_block_edge, strict=True) if not i]
                yield from _placed(inside, transform, crs, rows, cols)
    # A union keeps a vertex where each block edge crossed the outline; with
    # no tolerance, Douglas-Peucker drops exactly those (collinear) vertices,
    # so the outline is the one traced from the whole mask.
    merged = [
        dataclasses.replace(f, geometry=shapely.simplify(f.geometry, 0)) if f.on_edge else f
        for f in merge_parts(cut)
    ]
    yield from _placed(merged, transform, crs, rows, cols)


class _TracedBlock(NamedTuple):
    """The regions of one mask block kept by :func:`_trace_block`, tile pixel coordinates."""

    polygons: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    on_data_edge: np.ndarray
    on_block_edge: np.ndarray
    #: Each region's position among those traced (its number, from the block's first).
    positions: np.ndarray
    #: How many regions were traced, the specks dropped as traced included.
    traced: int


def _trace_block(
    src: DatasetReader,
    box: Box,
    masked: bool,
    threshold: float,
    speck_pixels: float,
    dropped: Callable[[int], None] | None,
) -> _TracedBlock | None:
    """One block of :func:`polygonize_raster`: read, specks dropped, traced; None if no building."""
    window = box.to_window()
    rows, cols = src.height, src.width
    probability = src.read(1, window=window)
    building = probability >= threshold_uint8(threshold)
    if not building.any():
        return None  # no building: skip the mask and the tracing
    valid = near = None
    if masked:
        valid = src.read_masks(1, window=window) > 0
        near = _near_nodata(src, window, rows, cols)
    if speck_pixels > 0:
        if valid is not None:
            building &= valid
        noisy = regions_estimate(building) >= SIEVE_MIN_DENSITY * building.size
        # No region outgrows its block: an infinite --min-area is the block's size.
        size = int(min(np.ceil(speck_pixels), building.size + 1))
        specks = whole_specks(building, size, near) if noisy else None
        if specks is not None and specks.any():  # never traced: ground from here on
            probability = np.where(specks, np.uint8(0), probability)
            if dropped is not None:
                dropped(count_regions(specks))
    polygons, counts, sums, edge = _trace_pixels(probability, valid, threshold, near)
    if not len(polygons):
        return None
    polygons = shapely.transform(polygons, lambda xy, o=(box.col, box.row): xy + o)
    inner = _on_block_edge(polygons, box, rows, cols)
    traced = len(polygons)
    kept = np.ones(traced, bool)
    if speck_pixels > 0:
        kept = (counts >= speck_pixels) | inner | edge | _on_tile_edge(polygons, rows, cols)
        if dropped is not None:
            dropped(traced - int(np.count_nonzero(kept)))
    return _TracedBlock(
        polygons[kept],
        counts[kept],
        sums[kept],
        edge[kept],
        inner[kept],
        np.flatnonzero(kept),
        traced,
    )


def _on_block_edge(polygons: np.ndarray, box: Box, rows: int, cols: int) -> np.ndarray:
    """Which polygons (tile pixel coordinates) touch an edge ``box`` shares with another block.

    Example: in a 100 x 100 tile cut into 50-pixel blocks, a polygon of the
    block at (0, 0) reaching x = 50 touches the block to its right; one
    reaching x = 0 only touches the tile's edge.
    """
    bounds = shapely.bounds(polygons)
    bottom, right = box.row + box.height, box.col + box.width
    touches: np.ndarray = (
        ((bounds[:, 0] <= box.col) & (box.col > 0))
        | ((bounds[:, 1] <= box.row) & (box.row > 0))
        | ((bounds[:, 2] >= right) & (right < cols))
        | ((bounds[:, 3] >= bottom) & (bottom < rows))
    )
    return touches


def _near_nodata(src: DatasetReader, window: Window, rows: int, cols: int) -> np.ndarray:
    """:func:`next_to_nodata` of a block of a mask file, reading its neighbours beyond the block."""
    from rasterio.windows import Window

    top, left = max(window.row_off - 1, 0), max(window.col_off - 1, 0)
    bottom = min(window.row_off + window.height + 1, rows)
    right = min(window.col_off + window.width + 1, cols)
    wide = src.read_masks(1, window=Window(left, top, right - left, bottom - top)) > 0
    near = next_to_nodata(wide)
    r0, c0 = window.row_off - top, window.col_off - left
    return near[r0 : r0 + window.height, c0 : c0 + window.width]


def _snap(geometry: Polygon, grid: float) -> Polygon:
    # Rounds coordinates to the grid: the same tile edge computed from two
    # tiles' origins can differ in the last bits. Vertices of traced
    # polygons are at least a pixel (1000 grid steps) apart, so rounding
    # cannot collapse an edge. Cheaper than a snap-rounding overlay.
    return shapely.transform(geometry, lambda xy: np.round(xy / grid) * grid)


def _components(geoms: list[Polygon]) -> list[list[int]]:
    """Groups of geometries connected by touching or overlapping (union-find)."""
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = [(i, j) for i, j in zip(left.tolist(), right.tolist(), strict=True) if i != j]
    return _union_find(len(geoms), pairs)


def merge_parts(parts: Iterable[Footprint]) -> list[Footprint]:
    """Unions parts that share an edge into whole buildings, whatever their CRSs.

    Parts in one CRS: only parts that touch another part are unioned
    (union-find over an STRtree), so the cost follows the buildings on tile
    edges, not the number of parts. Parts in several CRSs (tiles of two UTM
    zones): each CRS's parts are merged so first, then :func:`_merge_across_crs`
    joins those of different CRSs that lie within about a pixel of each other.

    Example: a building cut by the boundary between ``a`` and ``b`` arrives
    as ``a-000003`` and ``b-000000``; it leaves as one footprint with id
    ``a-000003``, the union of both polygons, and their summed pixels.
    """
    parts = sorted(parts, key=lambda p: p.footprint_id)
    by_crs: dict[str, list[Footprint]] = {}
    for part in parts:
        by_crs.setdefault(part.crs, []).append(part)
    merged = [f for crs in sorted(by_crs) for f in _merge_one_crs(by_crs[crs])]
    if len(by_crs) > 1:
        merged = _merge_across_crs(merged)
    return sorted(merged, key=lambda f: f.footprint_id)


def _merge_one_crs(parts: list[Footprint]) -> list[Footprint]:
    """:func:`merge_parts` for parts in one CRS: exact unions on a snapping grid."""
    if not parts:
        return []
    grid = min(p.pixel_size for p in parts) / 1000.0
    geoms = [_snap(p.geometry, grid) for p in parts]
    out = []
    for group in _components(geoms):
        if len(group) == 1:
            out.append(dataclasses.replace(parts[group[0]], geometry=geoms[group[0]]))
            continue
        out += _whole(shapely.unary_union([geoms[i] for i in group]), parts, geoms, group)
    return out


def _whole(
    merged: shapely.Geometry, parts: list[Footprint], geoms: list[Polygon], group: list[int]
) -> list[Footprint]:
    """The footprints of a union of parts ``group`` (its polygons, each with its parts)."""
    out = []
    for whole in getattr(merged, "geoms", [merged]):
        if whole.is_empty or whole.geom_type != "Polygon":
            continue
        # Parts that only touch at a corner stay apart: each union
        # polygon takes the parts whose interior point it holds.
        members = [parts[i] for i in group if whole.contains(shapely.point_on_surface(geoms[i]))]
        if not members:
            continue
        main = min(members, key=lambda p: (-p.pixels, p.footprint_id))
        out.append(
            Footprint(
                footprint_id=min(p.footprint_id for p in members),
                tile=main.tile,
                crs=main.crs,
                geometry=whole,
                pixels=sum(p.pixels for p in members),
                probability_sum=sum(p.probability_sum for p in members),
                pixel_size=main.pixel_size,
                on_edge=len(members) > 1,
                on_data_edge=any(p.on_data_edge for p in members),
            )
        )
    return out


#: How far apart (in pixels of the coarser tile) parts in two CRSs may lie and
#: still be one building. Each tile's data ends on its own pixel grid, within
#: half a pixel (a pixel's diagonal, rotated) of the line where the other's
#: begins, so the two outlines leave a seam up to about a pixel wide.
SEAM_PIXELS = 1.5


def _pixel_metres(part: Footprint) -> float:
    return part.pixel_size * max(metres_per_unit(part.crs, part.geometry.centroid.y))


def _merge_across_crs(parts: list[Footprint]) -> list[Footprint]:
    """Joins parts of different CRSs that lie within :data:`SEAM_PIXELS` of each other.

    Found in one CRS (the one most parts are in); each group is then unioned
    in the CRS of its largest part, closed (grown and shrunk by half the seam,
    with square corners) so the seam between the two grids' staircases is
    filled and the outline elsewhere kept.
    """
    crs_counts: dict[str, int] = {}
    for part in parts:
        crs_counts[part.crs] = crs_counts.get(part.crs, 0) + 1
    common = min(crs_counts, key=lambda c: (-crs_counts[c], c))
    geoms = [to_crs(p.geometry, p.crs, common) for p in parts]
    seam_m = SEAM_PIXELS * max(_pixel_metres(p) for p in parts)
    y = float(np.mean([g.centroid.y for g in geoms]))
    # The smaller of the two axes' metres per unit: the larger tolerance in degrees.
    seam = seam_m / min(metres_per_unit(common, y))
    left, right = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=seam)
    pairs = [
        (i, j)
        for i, j in zip(left.tolist(), right.tolist(), strict=True)
        if i < j and parts[i].crs != parts[j].crs
    ]
    groups = _union_find(len(parts), pairs)
    out = []
    for group in groups:
        if len(group) == 1:
            out.append(parts[group[0]])
            continue
        main = min((parts[i] for i in group), key=lambda p: (-p.pixels, p.footprint_id))
        local = [to_crs(parts[i].geometry, parts[i].crs, main.crs) for i in group]
        half = seam_m / 2 / min(metres_per_unit(main.crs, main.geometry.centroid.y))
        closed = shapely.unary_union([g.buffer(half, join_style="mitre") for g in local]).buffer(
            -half, join_style="mitre"
        )
        all_local = list(geoms)
        for i, g in zip(group, local, strict=True):
            all_local[i] = g
        out += [
            dataclasses.replace(f, on_edge=True) for f in _whole(closed, parts, all_local, group)
        ]
    return out


def _union_find(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Groups of ``range(n)`` connected by ``pairs``."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


@functools.lru_cache(maxsize=32)
def _metres_per_unit(crs: str) -> float | None:
    """Metres per unit of a projected CRS's axes; None for a geographic CRS."""
    import pyproj

    parsed = pyproj.CRS.from_user_input(crs)
    if parsed.is_geographic:
        return None
    return float(parsed.axis_info[0].unit_conversion_factor) if parsed.axis_info else 1.0


@functools.lru_cache(maxsize=32)
def _area_fn(crs: str) -> Callable[[Polygon | MultiPolygon], float]:
    import pyproj

    factor = _metres_per_unit(crs)
    if factor is None:
        parsed = pyproj.CRS.from_user_input(crs)
        geod = parsed.get_geod() or pyproj.Geod(ellps="WGS84")
        return lambda geom: abs(geod.geometry_area_perimeter(geom)[0])
    return lambda geom: geom.area * factor * factor


def area_m2(geometry: Polygon, crs: str) -> float:
    """The area of ``geometry`` in square metres (geodesic for geographic CRSs)."""
    return float(_area_fn(crs)(geometry))


@functools.lru_cache(maxsize=32)
def _transformer(src: str, dst: str) -> pyproj.Transformer:
    import pyproj

    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def to_crs(geometry: Polygon, src: str, dst: str | None) -> Polygon:
    """Reprojects ``geometry`` from ``src`` to ``dst`` (no-op if equal or ``dst`` is None)."""
    if dst is None or src == dst:
        return geometry
    transformer = _transformer(src, dst)
    return shapely.transform(
        geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


def polygonal(geometry: shapely.Geometry) -> tuple[Polygon | MultiPolygon | None, bool]:
    """``geometry`` made valid with every polygonal part kept.

    Returns:
        ``(geometry, repaired)``: the geometry itself when it is already a
        valid polygon; else :func:`shapely.make_valid`'s result with its
        lines and points dropped (they have no area), as one Polygon or a
        MultiPolygon when the repair split it, and ``repaired`` True. None
        when nothing polygonal is left.

    Example: a bow-tie ``Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])`` ->
    ``(MultiPolygon of its two triangles, True)``.
    """
    if geometry.is_valid and geometry.geom_type == "Polygon" and not geometry.is_empty:
        return geometry, False
    repaired = shapely.make_valid(geometry) if not geometry.is_valid else geometry
    parts = [
        g
        for g in shapely.get_parts(repaired)
        if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty
    ]
    parts = [p for g in parts for p in shapely.get_parts(g)]
    if not parts:
        return None, True
    return (parts[0] if len(parts) == 1 else MultiPolygon(parts)), True


def oriented(geometry: Polygon | MultiPolygon) -> Polygon | MultiPolygon:
    """Normalized (a stable vertex order) with exterior rings counterclockwise, holes clockwise.

    That is the OGC / GeoJSON (RFC 7946) convention; ``shapely.normalize``
    alone gives the opposite (GEOS's clockwise shells).
    """
    return shapely.orient_polygons(shapely.normalize(geometry), exterior_cw=False)


def regularize(geometry: Polygon, pixel_size: float) -> Polygon | MultiPolygon:
    """Right-angle footprint of a traced building (``buildingregulariser``).

    Edges are aligned to the building's main direction or perpendicular to
    it (45 degrees allowed where the outline really is diagonal), as the
    Microsoft building footprints are. The library works in CRS units; both
    its tolerances (merge parallel edges closer than this; pre-simplify by
    this) are two pixels: at one pixel or less, the pixel stairs of a
    rotated building survive as short edges (measured on an L-shaped
    building at 23 degrees: 35 vertices at one pixel, 6 at two, IoU with
    the true outline 0.86 and 0.91), so the same call suits any pixel size.

    Returns:
        The regularized geometry; the input when the library returns nothing
        (it drops slivers it cannot regularize), so no building is lost.

    Raises:
        ImportError: with the install command, when the ``regularize``
            extra is missing.
    """
    try:
        # The per-polygon function, not regularize_geodataframe: that one
        # builds and cleans a GeoDataFrame per call, 60 ms of overhead per
        # footprint against 3 ms of work (measured); the version is pinned
        # in setup.py because this name is not in the package's __all__.
        from buildingregulariser.regularization import regularize_single_polygon
    except ImportError as exc:
        raise ImportError(
            "--regularize needs the buildingregulariser package: "
            "pip install 'footprints[regularize]'"
        ) from exc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on odd input: repaired by polygonal()
        results = regularize_single_polygon(
            geometry,
            parallel_threshold=2 * pixel_size,
            allow_45_degree=True,
            diagonal_threshold_reduction=15,
            allow_circles=False,
            circle_threshold=0.9,
            simplify=True,
            simplify_tolerance=2 * pixel_size,
        )
    geoms = [
        r["geometry"] for r in results if r["geometry"] is not None and not r["geometry"].is_empty
    ]
    if not geoms:
        return geometry
    out = geoms[0] if len(geoms) == 1 else shapely.unary_union(geoms)
    # The library's own clean-up (coordinator.cleanup_geometry), on one
    # geometry: open and close by a fiftieth of the tolerance to drop
    # slivers, then remove the collinear vertices that leaves.
    step = 2 * pixel_size / 50
    square = {"cap_style": "square", "join_style": "mitre"}
    cleaned = out.buffer(step, **square).buffer(-2 * step, **square).buffer(step, **square)
    cleaned = cleaned.simplify(step, preserve_topology=True)
    return out if cleaned.is_empty else cleaned


MAX_AREA_CHANGE = 0.02


def simplify(geometry: Polygon, tolerance: float) -> Polygon:
    """Douglas-Peucker that removes pixel stairs but keeps the building's area.

    On a small building a one-pixel tolerance can cut a whole row of pixels
    (a 10 x 20 pixel roof with notched corners lost 12% of its area; small
    round roofs up to 20%): Douglas-Peucker takes chords, and on a ring its
    choice of chord is arbitrary. So the tolerance is halved until the area
    changes by at most :data:`MAX_AREA_CHANGE` (2%), and the traced
    polygon is kept when even a quarter of it does not.

    Plain Douglas-Peucker is fast on large, ragged masks; the slower
    topology-preserving variant is used only where the plain one broke the
    polygon.
    """
    area = geometry.area
    for step in (tolerance, tolerance / 2, tolerance / 4):
        simple = geometry.simplify(step, preserve_topology=False)
        if not (simple.geom_type == "Polygon" and simple.is_valid and not simple.is_empty):
            simple = geometry.simplify(step, preserve_topology=True)
        if abs(simple.area - area) <= MAX_AREA_CHANGE * area:
            return simple
    return geometry


#: How much larger than its traced area a footprint's written area can be,
#: kept in CRS units (no reprojection, no regularizing): simplification
#: changes it by at most :data:`MAX_AREA_CHANGE`, a repair keeps it; twice,
#: to leave float rounding far behind.
AREA_BOUND = 2.0


def _surely_dropped_area(crs: str, min_area_m2: float, output_crs: str | None) -> float:
    """The area (``crs`` units) under which :func:`finish` surely drops a footprint; 0: unknown.

    Known only where the written area is the traced one within
    :data:`AREA_BOUND`: the geometry stays in its projected CRS (no
    ``output_crs`` of its own).
    """
    if output_crs not in (None, crs):
        return 0.0
    factor = _metres_per_unit(crs)
    if factor is None:
        return 0.0
    return min_area_m2 / (factor * factor * AREA_BOUND)


def speck_size(
    tile: TileInfo, min_area_m2: float, output_crs: str | None, regularize_edges: bool
) -> float:
    """Regions of ``tile`` of fewer pixels than this are surely dropped by :func:`finish` (0: none).

    For :func:`polygonize_raster`'s ``speck_pixels``: a traced region's area
    is its pixel count times the pixel's area. Regularized outlines are not
    bounded by :data:`AREA_BOUND`, so nothing is dropped early for them.
    """
    if regularize_edges:
        return 0.0
    t = tile.affine
    return _surely_dropped_area(tile.crs, min_area_m2, output_crs) / abs(t.a * t.e - t.b * t.d)


def _surely_too_small(footprint: Footprint, min_area_m2: float, output_crs: str | None) -> bool:
    """Whether :func:`finish` will drop ``footprint`` under the minimum area, known before the work.

    Specks a footprint's tile dropped whole are never seen here; this drops
    those cut by edges (merged) without simplifying, repairing and orienting
    them first.
    """
    limit = _surely_dropped_area(footprint.crs, min_area_m2, output_crs)
    return bool(footprint.geometry.area < limit)


def finish(
    footprint: Footprint,
    simplify_pixels: float,
    min_area_m2: float,
    output_crs: str | None = None,
    regularize_edges: bool = False,
) -> Row | None:
    """The ``footprints/`` row of a footprint, or None if it is too small.

    The steps, in order: simplify (or regularize), repair what that broke
    (:func:`polygonal`: parts kept, never dropped), reproject, repair again
    (reprojection can fold a ring), orient (:func:`oriented`), then measure
    ``area_m2`` on exactly the polygon that is written and apply the
    minimum area to it.

    Args:
        footprint: A whole footprint (merged if it was cut by tile edges).
        simplify_pixels: Douglas-Peucker tolerance in pixels (0: none).
        min_area_m2: Footprints smaller than this are dropped.
        output_crs: CRS of the table's geometry (None: the footprint's own).
        regularize_edges: Right-angle outlines (:func:`regularize`) instead
            of plain simplification.

    Returns:
        A dict fitting :data:`footprints.contracts.FOOTPRINTS_SCHEMA`, plus
        ``"repaired"`` (bool, popped by the Beam step before writing).
    """
    if not regularize_edges and _surely_too_small(footprint, min_area_m2, output_crs):
        return None
    geom = footprint.geometry
    tolerance = simplify_pixels * footprint.pixel_size
    if regularize_edges:
        geom = regularize(geom, footprint.pixel_size)
    elif tolerance > 0:
        geom = simplify(geom, tolerance)
    geom, repaired = polygonal(geom)
    if geom is None:  # cannot happen for a traced region; kept unsimplified if it does
        geom, repaired = footprint.geometry, True
    crs = output_crs or footprint.crs
    geom, repaired_again = polygonal(to_crs(geom, footprint.crs, output_crs))
    if geom is None:
        return None
    geom = oriented(geom)
    area = area_m2(geom, crs)
    if area < min_area_m2:
        return None
    return {
        "footprint_id": footprint.footprint_id,
        "tile": footprint.tile,
        "area_m2": area,
        "mean_probability": float(np.float32(footprint.mean_probability)),
        "geometry": shapely.to_wkb(geom),
        "repaired": repaired or repaired_again,
    }


# --------------------------------------------------------------------------
# The stage as a Beam transform
# --------------------------------------------------------------------------

NAMESPACE = METRICS_SEGMENT
PARTS = "parts"
#: Tag of the numbers of footprints dropped under the minimum area (summed in the summary).
TOO_SMALL = "too_small"


def _trace(
    mask: WrittenMask,
    threshold: float,
    min_area_m2: float,
    output_crs: str | None,
    regularize_edges: bool,
) -> Iterator[Footprint | TaggedOutput[str, Footprint | int]]:
    tile = mask.tile
    traced = specks = 0

    def count_specks(n: int) -> None:
        nonlocal specks
        specks += n

    for footprint in polygonize_raster(
        mask.path,
        threshold,
        tile.scene,
        tile.crs,
        tile.affine,
        speck_pixels=speck_size(tile, min_area_m2, output_crs, regularize_edges),
        dropped=count_specks,
    ):
        traced += 1
        yield TaggedOutput(PARTS, footprint) if footprint.on_edge else footprint
    Metrics.counter(NAMESPACE, "regions_traced").inc(traced + specks)
    if specks:
        Metrics.counter(NAMESPACE, "footprints_too_small").inc(specks)
        yield TaggedOutput(TOO_SMALL, specks)


def _merge(item: tuple[str, Iterable[Footprint]]) -> list[Footprint]:
    _, grouped = item
    parts = list(grouped)
    merged = merge_parts(parts)
    Metrics.counter(NAMESPACE, "edge_parts").inc(len(parts))
    Metrics.counter(NAMESPACE, "edge_buildings").inc(len(merged))
    return merged


def _finish(
    footprint: Footprint,
    simplify_pixels: float,
    min_area_m2: float,
    output_crs: str | None,
    regularize_edges: bool,
) -> Iterator[Row | TaggedOutput[str, int]]:
    row = finish(footprint, simplify_pixels, min_area_m2, output_crs, regularize_edges)
    if row is None:
        Metrics.counter(NAMESPACE, "footprints_too_small").inc()
        yield TaggedOutput(TOO_SMALL, 1)
        return
    Metrics.counter(NAMESPACE, "footprints").inc()
    if row.pop("repaired"):
        Metrics.counter(NAMESPACE, "footprints_repaired").inc()
    yield row


@beam.typehints.with_input_types(WrittenMask)
@dataclasses.dataclass
class Polygonize(DataclassTransform):
    """WrittenMask -> ``footprints/`` rows (dicts fitting FOOTPRINTS_SCHEMA), as ``footprints``.

    How many footprints were dropped under ``min_area_m2`` is the
    :data:`TOO_SMALL` output (numbers to sum: one per tile for its specks,
    one per other footprint dropped), so the job counts them.

    Attributes:
        threshold: Building probability threshold.
        simplify_pixels: Simplification tolerance, pixels.
        min_area_m2: Smallest footprint kept, square metres.
        output_crs: CRS of the rows' geometry (None: each tile's own).
        regularize: Right-angle outlines instead of plain simplification.
    """

    threshold: float
    simplify_pixels: float
    min_area_m2: float
    output_crs: str | None = None
    regularize: bool = False

    def expand(self, masks: PCollection[WrittenMask]) -> dict[str, PCollection[Any]]:
        """Traces each mask, merges parts cut by tile or data edges, and returns footprint rows."""
        traced = masks | "Trace" >> beam.FlatMap(
            _trace, self.threshold, self.min_area_m2, self.output_crs, self.regularize
        ).with_outputs(PARTS, TOO_SMALL, main="whole")
        merged = (
            traced[PARTS]
            # One group: parts of every CRS merge (tiles of two UTM zones).
            | "OneGroup" >> beam.Map(lambda part: ("parts", part))
            | "GatherParts" >> beam.GroupByKey()
            | "Merge" >> beam.FlatMap(_merge)
        )
        finished = (
            (traced.whole, merged)
            | "AllFootprints" >> beam.Flatten()
            | "Finish"
            >> beam.FlatMap(
                _finish, self.simplify_pixels, self.min_area_m2, self.output_crs, self.regularize
            ).with_outputs(TOO_SMALL, main="footprints")
        )
        too_small = (traced[TOO_SMALL], finished[TOO_SMALL]) | "AllTooSmall" >> beam.Flatten()
        return {"footprints": finished.footprints, TOO_SMALL: too_small}


# --------------------------------------------------------------------------
# Chips of the footprints, for the classifier
# --------------------------------------------------------------------------


def as_vector_footprint(row: Row, crs: str, sources: dict[str, str]) -> VectorFootprint:
    """A ``footprints/`` row as the chipping step's :class:`~pipeline.sources.vectors.Footprint`.

    Args:
        row: A row from :func:`finish`.
        crs: The CRS of the row's geometry (the footprints table's CRS).
        sources: Tile scene -> tile path (dead letters name the tile).
    """
    tile: str = row["tile"]
    return VectorFootprint(
        footprint_id=row["footprint_id"],
        wkb=row["geometry"],
        crs=crs,
        source=sources.get(tile, tile),
        index=0,
    )


@dataclasses.dataclass
class ChipFootprints(DataclassTransform):
    """Footprint rows + tiles -> serialized chip records, cut as ``footprints prepare`` cuts them.

    Reuses :class:`pipeline.chipping.transforms.CutChipDoFn` (same square, margin and
    neighbour filling as the chips the classifier was trained on), so the
    scoring path sees chips of the same kind. Chips carry the footprint's
    polygon and CRS; they are unlabelled and in the run's single region.

    Input: ``{"rows": footprints/ rows, "tiles": TileInfo of the valid
    tiles}``. Returns a tagged result: main ``bytes`` (chip records),
    ``errors``: ErrorRecord of footprints that could not be chipped.

    Attributes:
        crs: CRS of the rows' geometry.
        spec: How chips are cut (:class:`pipeline.chipping.ChipSpec`).
    """

    crs: str
    spec: ChipSpec

    def expand(self, inputs: Mapping[str, PCollection[Any]]) -> dict[str, PCollection[Any]]:
        """Cuts one chip per footprint row; returns records and ``errors``."""
        # The validated tiles are the same TileInfo that prepare's tile index takes.
        tiles: PCollection[TileInfo] = inputs["tiles"]
        sources = AsDict(tiles | "ScenePaths" >> beam.Map(lambda t: (t.scene, t.path)))
        footprints = inputs["rows"] | "AsFootprint" >> beam.Map(
            as_vector_footprint, self.crs, sources
        )
        cut = (
            footprints
            | "Spread" >> beam.Reshuffle()
            | "Cut"
            >> beam.ParDo(CutChipDoFn(self.spec, ClassMap()), AsList(tiles)).with_outputs(
                ERRORS, main="chips"
            )
        )
        records: PCollection[bytes] = cut.chips | "Encode" >> beam.Map(
            lambda chip_and_class: contracts.encode_chip(chip_and_class[0])
        )
        return {"records": records, ERRORS: cut[ERRORS]}
