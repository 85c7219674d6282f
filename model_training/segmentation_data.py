"""The segmenter's input: orthophoto tiles and labels to patches of image and mask.

The story, as :func:`load_tiles` and :func:`make_patches` run it:

1. **Read** every tile's selected bands and its valid-pixel mask (GDAL's
   dataset mask: nodata values, alpha band or internal mask), checking that all
   tiles share band count and dtype (:func:`read_image`).
2. **Label** each tile: either rasterize footprint polygons on the tile's own
   grid, reprojecting them first when the vector file has another CRS
   (:func:`rasterize_footprints`), or read the mask GeoTIFF paired with the
   tile by file name (:func:`pair_masks`), which must share the tile's grid.
   Labels that touch no tile stop the run with an error, not a model that
   learned "no buildings anywhere".
3. **Split** (:func:`split_blocks`): square blocks of two patch sides are
   held out for validation, stratified by building density (so validation
   holds buildings, sparse and dense ground alike) and never seen by
   training: a training window must lie wholly outside every block. The
   split's buildings and pixels per side go into the model card.
4. **Scale** raw pixels to the model's uint8 input with per-band statistics
   fitted on the training area only (:func:`fit_scaling`), the same mapping
   the pipeline applies at serving time (``contracts.scale_to_model_input``).
5. **Sample** training patches (:class:`PatchSampler`): each step draws a
   fresh batch of random windows from the training area, half of them on
   buildings, with a random zoom, flip/rotation, brightness and contrast,
   every choice made by a seeded numpy generator up front. A small area has
   few distinct fixed patches; random windows give many, which is what lets
   a model learn from ~40 buildings instead of memorizing them. Nodata
   pixels travel as a weight channel of the target (0: no loss, not
   measured; see :mod:`model_training.losses`).
6. **Validate** on the blocks cut into non-overlapping patches
   (:func:`block_patches`, :func:`validation_dataset`).

Tiles are read whole into memory: training areas for this model are small
(the demo is nine 512-pixel tiles); cut larger areas into several runs or
pass a subset of tiles.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re

import numpy as np
import pyproj
import rasterio
import rasterio.features
import shapely
import tensorflow as tf

from footprints import contracts
from footprints.errors import ConfigError, InputError
from footprints.tiles import read_header
from model_training import augment as aug
from model_training.configs import SCALINGS
from model_training.data import expand_globs

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
#: Percentiles mapped to 0 and 255 by ``percentile`` scaling.
PERCENTILES = (1.0, 99.0)
_MASK_SUFFIX = re.compile(r"([_.-](mask|masks|label|labels|gt))$", re.IGNORECASE)
_MAX_STAT_PIXELS = 2_000_000


@dataclasses.dataclass(frozen=True)
class Tile:
    """One training tile in memory.

    Attributes:
        path: The GeoTIFF.
        image: Raw pixels ``[H, W, C]`` of the selected bands (uint8 or uint16).
        valid: ``[H, W]`` bool, False where the tile has no data.
        label: ``[H, W]`` uint8, 1 building, 0 background.
    """

    path: str
    image: np.ndarray
    valid: np.ndarray
    label: np.ndarray


# --------------------------------------------------------------------------
# Reading images and labels
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the tiles share: band count, dtype, names, and the bands used."""

    band_count: int
    dtype: str
    bands: tuple[int, ...]
    band_names: tuple[str, ...]


def inspect_images(paths: tuple[str, ...], bands: tuple[int, ...] | None) -> ImageInfo:
    """Checks that all tiles can be stacked and returns what they share.

    Each tile's header goes through the one check every command uses
    (:func:`footprints.tiles.read_header`), so a tile ``prepare`` or
    ``segment`` would reject stops training with the same reason.

    Raises:
        InputError: on mismatched band counts or dtypes, an unsupported dtype,
            a band index past the band count, or a tile the header check
            rejects (:class:`footprints.tiles.TileRejected`: unreadable, no
            CRS, no or a rotated geotransform, truncated).
    """
    seen: dict[tuple[int, str], list[str]] = {}
    names: tuple[str, ...] = ()
    for path in paths:
        tile = read_header(path)
        seen.setdefault((tile.count, tile.dtype), []).append(path)
        names = names or tile.descriptions
    if len(seen) > 1:
        groups = "; ".join(
            f"{n} band(s) {d}: {len(p)} tile(s) such as {p[0]!r}"
            for (n, d), p in sorted(seen.items())
        )
        raise InputError(
            f"tiles differ in band count or dtype ({groups}); train on tiles of one kind, "
            "or select common bands with --bands and convert the dtype first"
        )
    (count, dtype), _ = next(iter(seen.items()))
    if dtype not in ("uint8", "uint16"):
        raise InputError(
            f"tiles are {dtype}; the segmenter takes uint8 or uint16 imagery "
            "(convert with gdal_translate -ot UInt16 -scale)"
        )
    chosen = tuple(bands) if bands else tuple(range(1, count + 1))
    if any(b < 1 or b > count for b in chosen):
        raise InputError(
            f"--bands {','.join(map(str, chosen))} asks for bands the tiles "
            f"do not have (they have {count}: 1..{count})"
        )
    picked = tuple(names[b - 1] for b in chosen) if all(names) else ()
    return ImageInfo(count, dtype, chosen, picked)


def read_image(path: str, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels ``[H, W, C]`` of ``bands`` and the ``[H, W]`` valid mask."""
    with rasterio.open(path) as src:
        image = np.moveaxis(src.read(list(bands)), 0, -1)
        valid = src.dataset_mask() > 0
    return image, valid


def read_footprints(path: str) -> tuple[np.ndarray, pyproj.CRS]:
    """Polygons (shapely array) and CRS of a vector file.

    GPKG, GeoJSON, Shapefile or GeoParquet.

    Raises:
        InputError: if the file cannot be read or has no CRS.
    """
    try:
        if path.endswith((".parquet", ".geoparquet")):
            geoms, crs = _read_geoparquet(path)
        else:
            import pyogrio

            meta, _, wkb, _ = pyogrio.raw.read(path, columns=[])
            geoms, crs = shapely.from_wkb(wkb), meta.get("crs")
    except InputError:
        raise
    except Exception as exc:  # pyogrio/pyarrow raise their own error types
        raise InputError(f"cannot read footprints {path!r}: {exc}") from exc
    if not crs:
        raise InputError(
            f"footprints {path!r} have no CRS; write the file with one (ogr2ogr -a_srs EPSG:...)"
        )
    geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    return shapely.make_valid(geoms), pyproj.CRS.from_user_input(crs)


def _read_geoparquet(path: str):
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    geo = json.loads((table.schema.metadata or {}).get(b"geo", b"{}"))
    column = geo.get("primary_column", "geometry")
    if column not in table.column_names:
        raise InputError(f"{path!r} has no geometry column {column!r}")
    crs = geo.get("columns", {}).get(column, {}).get("crs")
    wkb = np.array(table.column(column).to_pylist(), dtype=object)
    return shapely.from_wkb(wkb), (pyproj.CRS.from_json_dict(crs) if crs else None)


class FootprintRasterizer:
    """Burns footprint polygons onto tile grids, reprojecting once per tile CRS."""

    def __init__(self, geoms: np.ndarray, crs: pyproj.CRS):
        self._source = (geoms, crs)
        self._by_crs: dict[str, tuple[np.ndarray, shapely.STRtree]] = {}

    def _in(self, crs: pyproj.CRS) -> tuple[np.ndarray, shapely.STRtree]:
        key = crs.to_wkt()
        if key not in self._by_crs:
            geoms, source = self._source
            if not source.equals(crs):
                transformer = pyproj.Transformer.from_crs(source, crs, always_xy=True)

                def move(xy):
                    x, y = transformer.transform(xy[:, 0], xy[:, 1])
                    return np.column_stack([x, y])

                geoms = shapely.transform(geoms, move)
            self._by_crs[key] = (geoms, shapely.STRtree(geoms))
        return self._by_crs[key]

    def rasterize(self, path: str) -> np.ndarray:
        """The 0/1 building mask of the tile at ``path``, on its own grid."""
        with rasterio.open(path) as src:
            geoms, tree = self._in(pyproj.CRS.from_user_input(src.crs))
            hits = tree.query(shapely.box(*src.bounds), predicate="intersects")
            if len(hits) == 0:
                return np.zeros((src.height, src.width), np.uint8)
            return rasterio.features.rasterize(
                ((g, 1) for g in geoms[hits]),
                out_shape=(src.height, src.width),
                transform=src.transform,
                fill=0,
                dtype="uint8",
            )


def rasterize_footprints(vector_path: str, tile_paths: tuple[str, ...]) -> list[np.ndarray]:
    """Building masks of each tile from a footprints vector file."""
    geoms, crs = read_footprints(vector_path)
    if len(geoms) == 0:
        raise InputError(f"footprints {vector_path!r} hold no polygons")
    burner = FootprintRasterizer(geoms, crs)
    return [burner.rasterize(p) for p in tile_paths]


def pair_masks(images: tuple[str, ...], masks: tuple[str, ...]) -> list[str]:
    """The mask for each image, matched by file name.

    A mask matches an image with the same name stem, optionally followed by
    ``_mask``, ``-label``, ``.gt`` and the like (``tile_r0_c0.tif`` matches
    ``masks/tile_r0_c0.tif`` and ``tile_r0_c0_mask.tif``).

    Raises:
        InputError: if an image has no mask or two.
    """
    by_stem: dict[str, list[str]] = {}
    for mask in masks:
        stem = os.path.splitext(os.path.basename(mask))[0]
        by_stem.setdefault(_MASK_SUFFIX.sub("", stem), []).append(mask)
    pairs = []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        found = [m for m in by_stem.get(stem, []) if os.path.abspath(m) != os.path.abspath(image)]
        if len(found) != 1:
            raise InputError(
                f"image {image!r} has {len(found)} matching masks ({found}); name each mask "
                "like its image (tile.tif -> tile.tif in another folder, or tile_mask.tif)"
            )
        pairs.append(found[0])
    return pairs


def read_mask(mask_path: str, image_path: str) -> np.ndarray:
    """A mask GeoTIFF as 0/1 uint8, checked to be on its image's grid."""
    with rasterio.open(mask_path) as msk, rasterio.open(image_path) as img:
        same = (
            (msk.width, msk.height) == (img.width, img.height)
            and msk.transform.almost_equals(img.transform)
            and msk.crs == img.crs
        )
        if not same:
            raise InputError(
                f"mask {mask_path!r} is not on the grid of {image_path!r} (size, transform or "
                "CRS differ); write masks on their image's grid, or pass --footprints instead"
            )
        return (msk.read(1) > 0).astype(np.uint8)


def load_tiles(
    images: str,
    footprints: str | None = None,
    masks: str | None = None,
    bands: tuple[int, ...] | None = None,
) -> tuple[list[Tile], ImageInfo]:
    """Reads and labels every tile; see the module docstring.

    Args:
        images: Glob(s) of orthophoto GeoTIFFs.
        footprints: Vector file of building polygons (any CRS), or None.
        masks: Glob(s) of mask GeoTIFFs paired with the images, or None.
        bands: 1-based bands to use, or None for all.

    Raises:
        ConfigError: unless exactly one of ``footprints`` and ``masks`` is given.
        InputError: on unusable tiles or labels that touch no tile.
    """
    if (footprints is None) == (masks is None):
        raise ConfigError("pass either --footprints (polygons) or --masks (mask GeoTIFFs)")
    paths = expand_globs(images, "image tiles", "area/tiles/*.tif")
    info = inspect_images(paths, bands)
    if footprints is not None:
        labels = rasterize_footprints(footprints, paths)
        source = f"footprints {footprints!r}"
    else:
        assert masks is not None  # exactly one of the two, checked above
        mask_paths = pair_masks(paths, expand_globs(masks, "mask tiles", "area/masks/*.tif"))
        labels = [read_mask(m, p) for m, p in zip(mask_paths, paths, strict=True)]
        source = f"masks {masks!r}"
    tiles = []
    for path, label in zip(paths, labels, strict=True):
        image, valid = read_image(path, info.bands)
        tiles.append(Tile(path, image, valid, label * valid))
    if not any(t.label.any() for t in tiles):
        raise InputError(
            f"{source} mark no building pixel inside the {len(tiles)} tile(s) such as "
            f"{paths[0]!r}; do the labels overlap the imagery (same area, a CRS the file "
            "declares correctly)?"
        )
    return tiles, info


# --------------------------------------------------------------------------
# Splitting, scaling and patches
# --------------------------------------------------------------------------


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of ``size`` every ``stride`` over ``length``.

    The last window is moved back to end at ``length``, so every pixel is
    covered and no window leaves the tile.

    Example:
        length 10, size 4, stride 4 -> [0, 4, 6]
    """
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def fit_scaling(
    tiles: list[Tile], info: ImageInfo, train_areas: list[np.ndarray], mode: str = "auto"
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band offset and scale mapping raw pixels to the model's 0..255.

    ``identity`` keeps uint8 values as they are. ``percentile`` maps each
    band's 1st..99th percentile (over valid pixels of the training areas) to
    0..255, which suits 12- or 16-bit sensors and odd bands such as NIR.
    ``auto`` is identity for uint8 and percentile for uint16.

    Args:
        tiles: The tiles.
        info: What they share.
        train_areas: Per tile, ``[H, W]`` bool, True where training may look.
        mode: One of :data:`SCALINGS`.

    Raises:
        ConfigError: for identity scaling of uint16 tiles.
    """
    if mode not in SCALINGS:
        raise ConfigError(f"--scaling {mode!r} must be one of {SCALINGS}")
    n = len(info.bands)
    if mode == "auto":
        mode = "identity" if info.dtype == "uint8" else "percentile"
    if mode == "identity":
        if info.dtype != "uint8":
            raise ConfigError(
                f"--scaling identity needs uint8 tiles, these are {info.dtype}; "
                "use --scaling percentile"
            )
        return (0.0,) * n, (1.0,) * n
    usable = [t.valid & area for t, area in zip(tiles, train_areas, strict=True)]
    step = max(1, sum(int(u.sum()) for u in usable) // _MAX_STAT_PIXELS)
    pixels = np.concatenate([t.image[u][::step] for t, u in zip(tiles, usable, strict=True)])
    low, high = np.percentile(pixels.astype(np.float64), PERCENTILES, axis=0)
    offset, scale = [], []
    for band, lo, hi in zip(info.bands, low, high, strict=True):
        if hi <= lo:
            log.warning("band %d is constant (%s) in the training tiles; scale 1", band, lo)
            hi = lo + 255.0
        offset.append(float(lo))
        scale.append(float(255.0 / (hi - lo)))
    return tuple(offset), tuple(scale)


# --------------------------------------------------------------------------
# The validation split: spatially separate blocks, stratified by density
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    """A square of one tile held out for validation.

    Given as ``tile`` index, top row, left column and side in pixels.
    """

    tile: int
    row: int
    col: int
    size: int


@dataclasses.dataclass(frozen=True)
class Split:
    """Where validation looks and where training may look.

    Attributes:
        blocks: The validation blocks.
        train_areas: Per tile, ``[H, W]`` bool, True outside every validation
            block (training windows must lie wholly inside it).
        counts: Buildings (connected label regions, counted by where their
            pixels fall), labelled pixels and valid pixels per split:
            ``{"train": {...}, "validation": {...}}``.
    """

    blocks: tuple[Block, ...]
    train_areas: tuple[np.ndarray, ...]
    counts: dict


def _candidate_blocks(tiles: list[Tile], size: int) -> list[tuple[Block, float]]:
    """Every whole block of ``size`` that is at least half valid, with its building density."""
    out = []
    for index, tile in enumerate(tiles):
        height, width = tile.valid.shape
        for row in range(0, height - size + 1, size):
            for col in range(0, width - size + 1, size):
                valid = tile.valid[row : row + size, col : col + size]
                if valid.mean() < 0.5:
                    continue
                density = float(tile.label[row : row + size, col : col + size].sum() / valid.sum())
                out.append((Block(index, row, col, size), density))
    return out


def split_blocks(
    tiles: list[Tile],
    patch_size: int,
    val_fraction: float,
    seed: int = 0,
    block_size: int | None = None,
) -> Split:
    """Holds out square blocks for validation, stratified by building density.

    Each tile is cut into blocks of ``block_size`` pixels (None: two patch
    sides, or one when the tiles are too small for that); blocks less than
    half valid are never held out. The
    blocks are ranked by the fraction of their valid pixels that are building
    and cut into as many equal strata as blocks are to be held out
    (``val_fraction`` of them, at least one); one block is drawn from each
    stratum with a seeded generator, from the stratum's blocks that hold
    buildings when there are any. So validation spans sparse and dense
    ground, and holds buildings whenever the labels have any.

    Example:
        12 usable blocks, val_fraction 0.2 -> 2 strata of 6 (sparse, dense);
        one block drawn from each.

    Raises:
        ConfigError: if the tiles cannot give two usable blocks (one to
            validate on, one to train on).
        InputError: if the training area keeps no building pixel.
    """
    rng = np.random.default_rng([seed, 1])
    for size in (block_size,) if block_size else (2 * patch_size, patch_size):
        candidates = _candidate_blocks(tiles, size)
        if len(candidates) >= 2:
            break
    else:
        raise ConfigError(
            f"the tiles hold fewer than two mostly valid {patch_size}-pixel blocks, one to "
            "validate on and one to train on; lower --patch-size or add tiles"
        )
    n_val = min(len(candidates) - 1, max(1, round(val_fraction * len(candidates))))
    # Ties in density (many empty blocks) are broken at random, not by position.
    order = np.lexsort((rng.random(len(candidates)), np.array([d for _, d in candidates])))
    chosen = []
    for stratum in np.array_split(order, n_val):
        with_buildings = [i for i in stratum if candidates[i][1] > 0]
        pool = with_buildings or list(stratum)
        chosen.append(candidates[int(rng.choice(pool))][0])
    areas = [np.ones(t.valid.shape, bool) for t in tiles]
    for b in chosen:
        areas[b.tile][b.row : b.row + b.size, b.col : b.col + b.size] = False
    counts = split_counts(tiles, areas)
    if counts["train"]["building_pixels"] == 0:
        raise InputError(
            "the training area holds no building pixel (every labelled building fell in the "
            "validation blocks); lower --val-fraction or add tiles with buildings"
        )
    return Split(tuple(chosen), tuple(areas), counts)


def split_counts(tiles: list[Tile], train_areas: list[np.ndarray]) -> dict:
    """Buildings, building pixels and valid pixels on each side of a split.

    A building counts on the side that holds most of its pixels.
    """
    counts = {
        side: {"buildings": 0, "building_pixels": 0, "valid_pixels": 0}
        for side in ("train", "validation")
    }
    for tile, area in zip(tiles, train_areas, strict=True):
        for side, where in (("train", area), ("validation", ~area)):
            counts[side]["building_pixels"] += int(tile.label[where].sum())
            counts[side]["valid_pixels"] += int(tile.valid[where].sum())
        labels = _connected(tile.label)
        for region in range(1, labels.max() + 1):
            inside = labels == region
            side = "train" if area[inside].mean() >= 0.5 else "validation"
            counts[side]["buildings"] += 1
    return counts


def _connected(mask: np.ndarray) -> np.ndarray:
    """Labels 4-connected regions of a 0/1 mask 1..N (0 background)."""
    import rasterio.features as features
    from rasterio.transform import Affine

    labels = np.zeros(mask.shape, np.int32)
    shapes = features.shapes(
        mask.astype(np.uint8), mask=mask > 0, connectivity=4, transform=Affine.identity()
    )
    burn = [(geom, i + 1) for i, (geom, _) in enumerate(shapes)]
    if burn:
        labels = features.rasterize(burn, out_shape=mask.shape, dtype="int32")
    return labels


# --------------------------------------------------------------------------
# Validation patches and the training patch sampler
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Patches:
    """Model-ready patches.

    ``images`` uint8 ``[N, P, P, C]``, ``masks`` uint8 ``[N, P, P, 1]`` and
    ``weights`` uint8 ``[N, P, P, 1]`` (1 valid pixel, 0 nodata or outside the
    split: no loss, not measured).
    """

    images: np.ndarray
    masks: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def block_patches(
    tiles: list[Tile], assets: contracts.SegmenterAssets, blocks: tuple[Block, ...], size: int
) -> Patches:
    """Cuts each block into non-overlapping scaled patches of ``size``."""
    images, masks, weights = [], [], []
    for block in blocks:
        tile = tiles[block.tile]
        rows = slice(block.row, block.row + block.size)
        cols = slice(block.col, block.col + block.size)
        scaled = contracts.scale_to_model_input(tile.image[rows, cols], assets)
        for r in window_starts(block.size, size, size):
            for c in window_starts(block.size, size, size):
                cut = (slice(r, r + size), slice(c, c + size))
                images.append(scaled[cut])
                masks.append(tile.label[rows, cols][cut][..., None])
                weights.append(tile.valid[rows, cols][cut][..., None].astype(np.uint8))
    return Patches(np.stack(images), np.stack(masks), np.stack(weights))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the training sampler varies (all drawn from the run's seed).

    Attributes:
        spatial: The eight flips/rotations of image and mask together.
        brightness: Largest brightness shift, in the model's 0..255 units.
        contrast: Contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        scale: Largest zoom factor; patches are cut at ``1/scale..scale``
            times the patch size and resized to it (log-uniform).
        gamma: Largest gamma of the radiometry: the 0..255 input is raised to
            a power drawn log-uniformly from ``1/gamma..gamma``, as another
            stretch of 11- or 12-bit data (or another sun and sensor) would
            bend it (1: off).
        blur: Largest share of a 1-pixel Gaussian blur blended into the
            patch (an image a little softer than the training one; 0: off).
        noise: Largest standard deviation of Gaussian sensor noise, in the
            model's 0..255 units (0: off).
    """

    spatial: bool = True
    brightness: float = 20.0
    contrast: float = 0.2
    scale: float = 1.25
    gamma: float = 1.0
    blur: float = 0.0
    noise: float = 0.0

    @classmethod
    def off(cls) -> Augmentation:
        """No augmentation at all (for validation patches)."""
        return cls(spatial=False, brightness=0.0, contrast=0.0, scale=1.0)

    @classmethod
    def sensor(cls) -> Augmentation:
        """Geometry and the radiometry, blur and noise of another sensor or day."""
        return cls(gamma=1.5, blur=1.0, noise=6.0)


class PatchSampler:
    """Random training patches, oversampling buildings, as a tf.data pipeline.

    Every draw is decided up front by a numpy generator seeded with the run's
    seed: which window (one of the windows on an 8-pixel grid that lie
    wholly in the training area and are at least a quarter valid), where in
    it and at what zoom the patch is cut, its flip and rotation, brightness
    and contrast. TensorFlow then only executes those decisions
    (``crop_and_resize``, bilinear for the image, nearest for mask and
    weight), so the same seed gives the same patches in the same order,
    whatever the thread count.

    With ``building_share`` 0.5, half the draws are windows whose central
    patch holds building pixels; the rest are drawn from all windows.

    Args:
        tiles: The tiles.
        assets: Scaling to the model's uint8 input.
        train_areas: Per tile, where training may look.
        patch_size: Output patch side.
        augmentation: See :class:`Augmentation`.
        building_share: Fraction of draws centred on buildings.
        grid: Step between candidate windows, in pixels.

    Raises:
        InputError: if no window fits the training area.
    """

    def __init__(
        self,
        tiles: list[Tile],
        assets: contracts.SegmenterAssets,
        train_areas: tuple[np.ndarray, ...] | list[np.ndarray],
        patch_size: int,
        augmentation: Augmentation = Augmentation(),
        building_share: float = 0.5,
        grid: int = 8,
    ):
        self.patch_size = patch_size
        self.augmentation = augmentation
        self.building_share = building_share
        self.window = int(math.ceil(patch_size * augmentation.scale))
        height = max(t.valid.shape[0] for t in tiles)
        width = max(t.valid.shape[1] for t in tiles)
        channels = assets.band_count
        # One padded stack: scaled bands, then label, then weight (valid and trainable).
        stack = np.zeros((len(tiles), height, width, channels + 2), np.uint8)
        windows, central = [], []
        for index, (tile, area) in enumerate(zip(tiles, train_areas, strict=True)):
            h, w = tile.valid.shape
            stack[index, :h, :w, :channels] = contracts.scale_to_model_input(tile.image, assets)
            stack[index, :h, :w, channels] = tile.label
            stack[index, :h, :w, channels + 1] = tile.valid & area
            rows, cols, build = self._windows(tile, area, grid)
            windows.append(np.column_stack([np.full(len(rows), index), rows, cols]))
            central.append(build)
        self.stack = stack
        self.windows = np.concatenate(windows)
        self.has_building = np.concatenate(central)
        if len(self.windows) == 0:
            raise InputError(
                f"no {self.window}-pixel training window fits outside the validation blocks "
                "in mostly valid pixels; lower --patch-size or --val-fraction"
            )

    def _windows(self, tile: Tile, area: np.ndarray, grid: int):
        """Top-left corners of allowed windows and whether their centre holds buildings."""
        size, p = self.window, self.patch_size
        h, w = tile.valid.shape
        if h < size or w < size:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0, bool)
        sums = {
            name: _integral(a)
            for name, a in (("blocked", ~area), ("valid", tile.valid), ("label", tile.label > 0))
        }
        grid_rows, grid_cols = np.meshgrid(
            np.arange(0, h - size + 1, grid), np.arange(0, w - size + 1, grid), indexing="ij"
        )
        rows, cols = grid_rows.ravel(), grid_cols.ravel()
        blocked = _box_sum(sums["blocked"], rows, cols, size)
        valid = _box_sum(sums["valid"], rows, cols, size)
        inset = (size - p) // 2
        building = _box_sum(sums["label"], rows + inset, cols + inset, p)
        keep = (blocked == 0) & (valid >= 0.25 * size * size)
        return rows[keep], cols[keep], building[keep] > 0

    def draws(self, count: int, seed: int) -> dict[str, np.ndarray]:
        """The decisions for ``count`` patches (see the class docstring)."""
        rng = np.random.default_rng([seed, 2])
        aug, size, p = self.augmentation, self.window, self.patch_size
        everywhere = rng.integers(0, len(self.windows), count)
        with_building = np.flatnonzero(self.has_building)
        pick = everywhere
        if len(with_building):
            on_building = with_building[rng.integers(0, len(with_building), count)]
            pick = np.where(rng.random(count) < self.building_share, on_building, everywhere)
        zoom = np.exp(rng.uniform(-math.log(aug.scale), math.log(aug.scale), count))
        crop = np.minimum(np.rint(p * zoom), size).astype(int)
        shift_r = (rng.random(count) * (size - crop + 1)).astype(int)
        shift_c = (rng.random(count) * (size - crop + 1)).astype(int)
        tile, row, col = self.windows[pick].T
        top, left = row + shift_r, col + shift_c
        height, width = self.stack.shape[1] - 1, self.stack.shape[2] - 1
        boxes = np.column_stack(
            [top / height, left / width, (top + crop - 1) / height, (left + crop - 1) / width]
        ).astype(np.float32)
        return {
            "tile": tile.astype(np.int32),
            "box": boxes,
            "flip": (rng.random(count) < 0.5) & aug.spatial,
            "rot": rng.integers(0, 4, count).astype(np.int32) * aug.spatial,
            "brightness": rng.uniform(-aug.brightness, aug.brightness, count).astype(np.float32),
            "contrast": rng.uniform(1 - aug.contrast, 1 + aug.contrast, count).astype(np.float32),
            "gamma": np.exp(rng.uniform(-1, 1, count) * math.log(aug.gamma)).astype(np.float32),
            "blur": rng.uniform(0, aug.blur, count).astype(np.float32),
            "noise": rng.uniform(0, aug.noise, count).astype(np.float32),
            "noise_seed": rng.integers(0, 2**31 - 1, (count, 2)),
        }

    def dataset(
        self, steps: int, batch_size: int, seed: int, skip_steps: int = 0
    ) -> tf.data.Dataset:
        """``steps`` batches of ``(image, target)``, after ``skip_steps``.

        ``image`` is ``[B, P, P, C]`` float32 0..255, ``target`` ``[B, P, P, 2]``
        float32: mask, weight.
        """
        draws = self.draws(steps * batch_size, seed)
        stack = tf.constant(self.stack)
        channels = self.stack.shape[-1] - 2
        size = (self.patch_size, self.patch_size)
        a = self.augmentation
        sensor = a.gamma > 1 or a.blur > 0 or a.noise > 0

        def cut(d):
            image = tf.image.crop_and_resize(stack[..., :channels], d["box"], d["tile"], size)
            target = tf.image.crop_and_resize(
                stack[..., channels:], d["box"], d["tile"], size, method="nearest"
            )
            both = aug.apply_spatial(tf.concat([image, target], -1), d["flip"], d["rot"])
            image = aug.apply_colour(both[..., :channels], d["brightness"], d["contrast"])
            if sensor:
                image = aug.apply_sensor(
                    image, d["gamma"], d["blur"], d["noise"], d["noise_seed"][0]
                )
            return image, both[..., channels:]

        ds = tf.data.Dataset.from_tensor_slices(draws).skip(skip_steps * batch_size)
        ds = ds.batch(batch_size).map(cut, num_parallel_calls=AUTOTUNE)
        # repeat(): the LR finder may ask for more steps than were drawn.
        return ds.repeat().prefetch(AUTOTUNE)


def _integral(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.int64)
    out[1:, 1:] = np.cumsum(np.cumsum(a.astype(np.int64), 0), 1)
    return out


def _box_sum(sums: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    return (
        sums[rows + size, cols + size]
        - sums[rows, cols + size]
        - sums[rows + size, cols]
        + sums[rows, cols]
    )


def validation_dataset(patches: Patches, batch_size: int) -> tf.data.Dataset:
    """Batches of ``(image float32, target [B, P, P, 2]: mask, weight)``, in order."""
    target = np.concatenate([patches.masks, patches.weights], -1)
    ds = tf.data.Dataset.from_tensor_slices((patches.images, target))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.float32)))
    return ds.batch(batch_size).prefetch(AUTOTUNE)
