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
3. **Split** each tile into a training part and a validation strip along its
   bottom edge (:func:`split_rows`), so validation sees every tile (and every
   region) but never a pixel that training saw.
4. **Scale** raw pixels to the model's uint8 input with per-band statistics
   fitted on the training part only (:func:`fit_scaling`), the same mapping
   the pipeline applies at serving time (``contracts.scale_to_model_input``).
5. **Cut** patches of a given size and stride, skipping patches with no valid
   pixel (:func:`window_starts`, :func:`make_patches`), and feed them to
   tf.data with joint spatial augmentation and image-only colour augmentation
   (:func:`segmentation_dataset`).

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

    Raises:
        InputError: on mismatched band counts or dtypes, an unsupported dtype,
            a missing CRS, or a band index past the band count.
    """
    seen: dict[tuple[int, str], list[str]] = {}
    names: tuple[str, ...] = ()
    for path in paths:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise InputError(
                        f"tile {path!r} has no CRS; assign one (gdal_edit.py -a_srs EPSG:...)")
                seen.setdefault((src.count, src.dtypes[0]), []).append(path)
                names = names or tuple(d or "" for d in src.descriptions)
        except rasterio.RasterioIOError as exc:
            raise InputError(f"cannot open tile {path!r}: {exc}") from exc
    if len(seen) > 1:
        groups = "; ".join(f"{n} band(s) {d}: {len(p)} tile(s) such as {p[0]!r}"
                           for (n, d), p in sorted(seen.items()))
        raise InputError(
            f"tiles differ in band count or dtype ({groups}); train on tiles of one kind, "
            "or select common bands with --bands and convert the dtype first")
    (count, dtype), _ = next(iter(seen.items()))
    if dtype not in ("uint8", "uint16"):
        raise InputError(
            f"tiles are {dtype}; the segmenter takes uint8 or uint16 imagery "
            "(convert with gdal_translate -ot UInt16 -scale)")
    chosen = tuple(bands) if bands else tuple(range(1, count + 1))
    if any(b < 1 or b > count for b in chosen):
        raise InputError(f"--bands {','.join(map(str, chosen))} asks for bands the tiles "
                         f"do not have (they have {count}: 1..{count})")
    picked = tuple(names[b - 1] for b in chosen) if all(names) else ()
    return ImageInfo(count, dtype, chosen, picked)


def read_image(path: str, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels ``[H, W, C]`` of ``bands`` and the ``[H, W]`` valid mask."""
    with rasterio.open(path) as src:
        image = np.moveaxis(src.read(list(bands)), 0, -1)
        valid = src.dataset_mask() > 0
    return image, valid


def read_footprints(path: str) -> tuple[np.ndarray, pyproj.CRS]:
    """Polygons (shapely array) and CRS of a vector file (GPKG, GeoJSON,
    Shapefile, or GeoParquet).

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
        raise InputError(f"footprints {path!r} have no CRS; write the file with one "
                         "(ogr2ogr -a_srs EPSG:...)")
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
                ((g, 1) for g in geoms[hits]), out_shape=(src.height, src.width),
                transform=src.transform, fill=0, dtype="uint8")


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
                "like its image (tile.tif -> tile.tif in another folder, or tile_mask.tif)")
        pairs.append(found[0])
    return pairs


def read_mask(mask_path: str, image_path: str) -> np.ndarray:
    """A mask GeoTIFF as 0/1 uint8, checked to be on its image's grid."""
    with rasterio.open(mask_path) as msk, rasterio.open(image_path) as img:
        same = (msk.width, msk.height) == (img.width, img.height) and \
            msk.transform.almost_equals(img.transform) and msk.crs == img.crs
        if not same:
            raise InputError(
                f"mask {mask_path!r} is not on the grid of {image_path!r} (size, transform or "
                "CRS differ); write masks on their image's grid, or pass --footprints instead")
        return (msk.read(1) > 0).astype(np.uint8)


def load_tiles(images: str, footprints: str | None = None, masks: str | None = None,
               bands: tuple[int, ...] | None = None) -> tuple[list[Tile], ImageInfo]:
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
            "declares correctly)?")
    return tiles, info


# --------------------------------------------------------------------------
# Splitting, scaling and patches
# --------------------------------------------------------------------------

def split_rows(height: int, patch_size: int, val_fraction: float) -> int:
    """The first row of a tile's validation strip (the rows below it).

    The strip is ``val_fraction`` of the height and at least one patch tall;
    the training part above it must also hold at least one patch.

    Raises:
        ConfigError: if the tile is too short for a patch in both parts.
    """
    val_rows = max(patch_size, math.ceil(height * val_fraction))
    if height - val_rows < patch_size:
        raise ConfigError(
            f"tiles of height {height} are too small for a {patch_size}-pixel patch in both "
            f"the training part and the {val_rows}-row validation strip; lower --patch-size "
            "or --val-fraction")
    return height - val_rows


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


def fit_scaling(tiles: list[Tile], info: ImageInfo, train_rows: list[int],
                mode: str = "auto") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band offset and scale mapping raw pixels to the model's 0..255.

    ``identity`` keeps uint8 values as they are. ``percentile`` maps each
    band's 1st..99th percentile (over valid pixels of the training parts) to
    0..255, which suits 12- or 16-bit sensors and odd bands such as NIR.
    ``auto`` is identity for uint8 and percentile for uint16.

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
            raise ConfigError(f"--scaling identity needs uint8 tiles, these are {info.dtype}; "
                              "use --scaling percentile")
        return (0.0,) * n, (1.0,) * n
    samples = []
    total = sum(int(t.valid[:r].sum()) for t, r in zip(tiles, train_rows, strict=True))
    step = max(1, total // _MAX_STAT_PIXELS)
    for tile, rows in zip(tiles, train_rows, strict=True):
        samples.append(tile.image[:rows][tile.valid[:rows]][::step])
    pixels = np.concatenate(samples).astype(np.float64)
    low, high = np.percentile(pixels, PERCENTILES, axis=0)
    offset, scale = [], []
    for band, lo, hi in zip(info.bands, low, high, strict=True):
        if hi <= lo:
            log.warning("band %d is constant (%s) in the training tiles; scale 1", band, lo)
            hi = lo + 255.0
        offset.append(float(lo))
        scale.append(float(255.0 / (hi - lo)))
    return tuple(offset), tuple(scale)


@dataclasses.dataclass(frozen=True)
class Patches:
    """Model-ready patches: ``images`` uint8 ``[N, P, P, C]``, ``masks`` uint8
    ``[N, P, P, 1]``, and how many all-nodata windows were skipped."""

    images: np.ndarray
    masks: np.ndarray
    skipped: int

    def __len__(self) -> int:
        return len(self.images)


def make_patches(tiles: list[Tile], assets: contracts.SegmenterAssets, row_ranges:
                 list[tuple[int, int]], size: int, stride: int) -> Patches:
    """Cuts scaled patches from the given row range of each tile.

    Args:
        tiles: The tiles.
        assets: Scaling to the model's uint8 input.
        row_ranges: ``(first row, end row)`` per tile.
        size: Patch height and width.
        stride: Step between patches.
    """
    images, masks, skipped = [], [], 0
    for tile, (top, bottom) in zip(tiles, row_ranges, strict=True):
        scaled = contracts.scale_to_model_input(tile.image[top:bottom], assets)
        valid, label = tile.valid[top:bottom], tile.label[top:bottom]
        for r in window_starts(bottom - top, size, stride):
            for c in window_starts(tile.image.shape[1], size, stride):
                if not valid[r:r + size, c:c + size].any():
                    skipped += 1
                    continue
                images.append(scaled[r:r + size, c:c + size])
                masks.append(label[r:r + size, c:c + size, None])
    channels = assets.band_count
    if not images:
        return Patches(np.zeros((0, size, size, channels), np.uint8),
                       np.zeros((0, size, size, 1), np.uint8), skipped)
    return Patches(np.stack(images), np.stack(masks), skipped)


def segmentation_dataset(patches: Patches, batch_size: int, training: bool,
                         augment: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``(float32 image [B, P, P, C] in 0..255, float32 mask [B, P, P, 1])``.

    Patches are already in memory, so there is nothing to cache. Training
    datasets are shuffled, repeated and augmented: one random flip/rotation
    for image and mask together, brightness and contrast for the image only.
    """
    ds = tf.data.Dataset.from_tensor_slices((patches.images, patches.masks))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.float32)),
                num_parallel_calls=AUTOTUNE)
    if training:
        ds = ds.shuffle(len(patches), seed=seed, reshuffle_each_iteration=True).repeat()
        if augment:
            ds = ds.map(augment_pair, num_parallel_calls=AUTOTUNE, deterministic=False)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def augment_pair(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Joint D4 symmetry of image and mask, then colour changes of the image only."""
    image, mask = aug.random_spatial([image, mask])
    return aug.random_colour(image), mask
