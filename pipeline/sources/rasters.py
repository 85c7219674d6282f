"""Orthophoto tiles: match, validate against the segmenter, read model windows.

The segmentation job reads GeoTIFF (or any GDAL raster) tiles in three steps,
one transform each:

1. :class:`MatchTiles` -- the files of a glob, one per scene name (two files
   with the same name would write the same ``masks/<scene>.tif``, so all but
   the first, in path order, are dead-lettered);
2. :class:`ValidateTiles` -- open each file once and check what the model
   needs: a CRS, a north-up geotransform, the bands the model reads (its
   assets name them, 1-based), their dtype (the model's scaling was fitted on
   one), and that the file is readable to its last block (a truncated
   download fails there). Good tiles become :class:`TileInfo`; bad ones
   :class:`~footprints.contracts.ErrorRecord` s with a reason and a fix;
3. :class:`ReadWindows` -- after the windows are planned and reshuffled,
   read each window block-aligned, pad it in numpy at the tile's edges, read
   the tile's validity mask (nodata value, internal mask or alpha) and scale
   the pixels to the model's uint8 input. A window with no valid pixel in
   its core is not sent to the model: it goes straight to stitching as
   nodata, which is also how an entirely-nodata tile is found and skipped.

The checks and the read are plain functions (:func:`validate_tile`,
:func:`read_window`), tested without Beam.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np

from footprints.contracts import ErrorRecord, SegmenterAssets, scale_to_model_input
from footprints.errors import InputError
from pipeline.keys import TileKey, scene_of
from pipeline.sources.open_rasters import OpenRasters
from pipeline.stitching.windows import WindowPlan, cut_and_pad, read_box

LOG = logging.getLogger(__name__)
NAMESPACE = "footprints.segment"
ERRORS = "errors"
NODATA = "nodata"


class TileRejected(InputError):
    """A tile cannot be segmented; ``reason`` is the short code for ``errors/``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class TileInfo:
    """What the pipeline knows about a valid tile after opening it once.

    Attributes:
        path: The file.
        scene: Its name, unique in the run (``masks/<scene>.tif``).
        height: Rows.
        width: Columns.
        crs: The CRS as a string rasterio and pyproj read back
            (``EPSG:32615`` where it has an authority code, else WKT).
        transform: The affine geotransform ``(a, b, c, d, e, f)``.
        block_shape: The internal block (rows, cols) of the bands read.
        masked: Whether some pixels may be invalid (nodata value, internal
            mask or alpha band); if not, masks are not read at all.
        dtype: The dtype of the bands read.
    """

    path: str
    scene: str
    height: int
    width: int
    crs: str
    transform: tuple[float, float, float, float, float, float]
    block_shape: tuple[int, int]
    masked: bool
    dtype: str

    @property
    def key(self) -> TileKey:
        return TileKey(self.scene)

    @property
    def affine(self):
        from affine import Affine

        return Affine(*self.transform)

    @property
    def pixel_size(self) -> float:
        """The larger side of a pixel, in CRS units."""
        return max(abs(self.transform[0]), abs(self.transform[4]))


def check_tile(src, assets: SegmenterAssets) -> TileInfo:
    """Checks an open rasterio dataset against the segmenter's needs.

    Raises:
        TileRejected: with the reason code and a message that says how to fix it.
    """
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    path = src.name
    if src.crs is None:
        raise TileRejected(
            "no_crs",
            (
                f"{path!r} has no CRS; assign the one it was produced in, e.g. "
                "`rio edit-info --crs EPSG:26915 FILE` or `gdal_edit.py -a_srs EPSG:26915 FILE`"
            ),
        )
    transform = src.transform
    if transform.is_identity:
        raise TileRejected(
            "no_transform",
            (
                f"{path!r} has no geotransform (pixel size and origin); georeference it, e.g. "
                "`gdal_edit.py -a_ullr ULX ULY LRX LRY FILE`"
            ),
        )
    if transform.b != 0 or transform.d != 0 or transform.e >= 0:
        raise TileRejected(
            "not_north_up",
            (
                f"{path!r} has a rotated or south-up geotransform {tuple(transform)[:6]!r}; "
                "warp it north-up first: `gdalwarp SRC DST`"
            ),
        )
    if max(assets.bands) > src.count:
        raise TileRejected(
            "band_count",
            (
                f"{path!r} has {src.count} band(s) but the model reads bands {assets.bands!r}; "
                f"use tiles with at least {max(assets.bands)} bands or a model trained on "
                f"{src.count}-band imagery"
            ),
        )
    dtypes = {src.dtypes[b - 1] for b in assets.bands}
    if dtypes != {assets.raw_dtype}:
        raise TileRejected(
            "dtype",
            (
                f"{path!r} bands {assets.bands!r} are {sorted(dtypes)} but the model's scaling was "
                f"fitted on {assets.raw_dtype}; convert the tiles (`gdal_translate -ot "
                f"{assets.raw_dtype.capitalize()} -scale ...`) or use a model for {sorted(dtypes)}"
            ),
        )
    block_h, block_w = src.block_shapes[assets.bands[0] - 1]
    try:
        # The last block is the last thing written: reading it catches a
        # truncated download or copy for the price of one block.
        row0 = ((src.height - 1) // block_h) * block_h
        col0 = ((src.width - 1) // block_w) * block_w
        src.read(list(assets.bands), window=Window(col0, row0, src.width - col0, src.height - row0))
    except Exception as exc:  # rasterio raises RasterioIOError, GDAL may raise others
        raise TileRejected(
            "truncated",
            (
                f"{path!r} cannot be read to its end ({exc}); the file is probably truncated: "
                "copy or download it again"
            ),
        ) from exc
    flags = [src.mask_flag_enums[b - 1] for b in assets.bands]
    masked = src.nodata is not None or any(MaskFlags.all_valid not in f for f in flags)
    return TileInfo(
        path=path,
        scene=scene_of(path),
        height=src.height,
        width=src.width,
        crs=src.crs.to_string(),
        transform=tuple(transform)[:6],
        block_shape=(int(block_h), int(block_w)),
        masked=masked,
        dtype=assets.raw_dtype,
    )


def validate_tile(path: str, assets: SegmenterAssets) -> TileInfo:
    """Opens ``path`` and checks it (see :func:`check_tile`).

    Raises:
        TileRejected: ``unreadable`` if it is not a raster GDAL can open, or
            another reason from :func:`check_tile`.
    """
    import rasterio

    try:
        src = rasterio.open(path)
    except Exception as exc:
        raise TileRejected(
            "unreadable",
            (
                f"{path!r} is not a raster GDAL can read ({exc}); pass only GeoTIFF (or other "
                "GDAL raster) tiles to --raster"
            ),
        ) from exc
    with src:
        return check_tile(src, assets)


def read_window(
    src, tile: TileInfo, plan: WindowPlan, assets: SegmenterAssets
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads one model window, padded at the tile's edges.

    Args:
        src: The tile, open in rasterio.
        tile: What validation found out about it.
        plan: The window and its core.
        assets: The model's assets (bands to read).

    Returns:
        ``(pixels, valid)``: raw pixels ``[size, size, bands]`` in the tile's
        dtype, and a boolean validity mask of the window, or None when the
        tile has no invalid pixels.
    """
    window = plan.window
    box = read_box(window, tile.height, tile.width, tile.block_shape)
    raw = src.read(list(assets.bands), window=box.to_window())
    pixels = cut_and_pad(np.moveaxis(raw, 0, -1), box, window, tile.height, tile.width)
    if not tile.masked:
        return pixels, None
    # GDAL's mask of each band the model reads (its nodata value, the
    # internal mask or an alpha band); a pixel is valid if any of them is.
    # Not ``dataset_mask()``: that would follow a 4th band tagged alpha even
    # when the model reads only bands 1-3 and the 4th is near-infrared.
    mask = src.read_masks(list(assets.bands), window=box.to_window()).any(axis=0)
    valid = cut_and_pad(
        mask, box, window, tile.height, tile.width, mode="constant", constant_values=False
    )
    return pixels, valid


@dataclasses.dataclass(frozen=True)
class WindowInput:
    """One window ready for the model, with what stitching needs of it.

    Attributes:
        plan: The window and its core.
        source: The tile's file (for dead letters).
        valid: Validity of the core's pixels, or None if all are valid.
    """

    plan: WindowPlan
    source: str
    valid: np.ndarray | None


@dataclasses.dataclass
class MatchTiles(beam.PTransform):
    """Matches a glob of tiles; yields paths with unique scene names.

    Returns:
        A tagged result: main ``str`` paths, ``errors``: ErrorRecord for
        files whose scene name an earlier path (in sorted order) already has.
    """

    pattern: str

    def __post_init__(self):
        super().__init__()

    def expand(self, pbegin):
        from apache_beam.io import fileio

        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Path" >> beam.Map(lambda m: m.path)
            | "ByScene" >> beam.GroupBy(scene_of)
            | "OnePerScene" >> beam.ParDo(_one_per_scene).with_outputs(ERRORS, main="paths")
        )


def _one_per_scene(item: tuple[str, Iterable[str]]) -> Iterator:
    scene, paths = item
    first, *others = sorted(paths)
    yield first
    for other in others:
        beam.metrics.Metrics.counter(NAMESPACE, "tiles_duplicate_name").inc()
        yield beam.pvalue.TaggedOutput(
            ERRORS,
            ErrorRecord(
                source=other,
                record=scene,
                stage="match",
                error="duplicate_scene",
                message=(
                    f"{other!r} has the same name {scene!r} as {first!r}, so both would "
                    f"write masks/{scene}.tif; rename one of them or run them separately"
                ),
            ),
        )


class _ValidateFn(beam.DoFn):
    def __init__(self, assets: SegmenterAssets):
        self._assets = assets
        self._valid = beam.metrics.Metrics.counter(NAMESPACE, "tiles_valid")
        self._rejected = beam.metrics.Metrics.counter(NAMESPACE, "tiles_rejected")

    def process(self, path: str):
        try:
            tile = validate_tile(path, self._assets)
        except TileRejected as exc:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    source=path,
                    record=scene_of(path),
                    stage="validate",
                    error=exc.reason,
                    message=str(exc),
                ),
            )
            return
        self._valid.inc()
        yield tile


@dataclasses.dataclass
class ValidateTiles(beam.PTransform):
    """Checks each tile against the model; tagged result ``tiles`` / ``errors``."""

    assets: SegmenterAssets

    def __post_init__(self):
        super().__init__()

    def expand(self, paths):
        return paths | "Check" >> beam.ParDo(_ValidateFn(self.assets)).with_outputs(
            ERRORS, main="tiles"
        )


class _ReadFn(beam.DoFn):
    def __init__(self, assets: SegmenterAssets):
        self._assets = assets
        self._read = beam.metrics.Metrics.counter(NAMESPACE, "windows_read")
        self._nodata = beam.metrics.Metrics.counter(NAMESPACE, "windows_nodata")
        self._failed = beam.metrics.Metrics.counter(NAMESPACE, "windows_read_failed")
        self._tiles: OpenRasters | None = None

    def setup(self):
        from pipeline.stitching.cog import limit_gdal_cache

        limit_gdal_cache()

    def start_bundle(self):
        # Windows of a tile arrive together; keeping it open lets overlapping
        # halos come from GDAL's block cache.
        self._tiles = OpenRasters(size=4)

    def finish_bundle(self):
        if self._tiles is not None:
            self._tiles.close()

    def process(self, item: tuple[WindowPlan, TileInfo]):
        from pipeline.stitching.stitch import CorePrediction

        plan, tile = item
        try:
            pixels, valid = read_window(self._tiles(tile.path), tile, plan, self._assets)
        except Exception as exc:  # a block that fails to decode fails only its window
            self._failed.inc()
            LOG.warning("cannot read window %s of %s: %s", plan.key, tile.path, exc)
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    source=tile.path,
                    record=str(plan.key),
                    stage="read",
                    error="read_failed",
                    message=(
                        f"reading window {plan.key} failed ({exc}); the file may be damaged: "
                        "check it with `gdalinfo -checksum` and copy it again"
                    ),
                ),
            )
            yield beam.pvalue.TaggedOutput(NODATA, CorePrediction.missing(plan, "failed"))
            return
        core_valid = None
        if valid is not None:
            core_valid = valid[plan.core.slices_in(plan.window)]
            if not core_valid.any():
                self._nodata.inc()
                yield beam.pvalue.TaggedOutput(NODATA, CorePrediction.missing(plan, "nodata"))
                return
            if core_valid.all():
                core_valid = None
        self._read.inc()
        image = scale_to_model_input(pixels, self._assets)
        yield WindowInput(plan, tile.path, core_valid), np.ascontiguousarray(image)


@dataclasses.dataclass
class ReadWindows(beam.PTransform):
    """Reads planned windows.

    Input: ``(WindowPlan, TileInfo)``. Returns a tagged result: main
    ``(WindowInput, uint8 image [size, size, bands])`` for the model;
    ``nodata``: :class:`~pipeline.stitching.stitch.CorePrediction` for windows
    that are all nodata or failed to read (they still reach stitching, so it
    can account for every window); ``errors``: ErrorRecord for failed reads.
    """

    assets: SegmenterAssets

    def __post_init__(self):
        super().__init__()

    def expand(self, planned):
        return planned | "Read" >> beam.ParDo(_ReadFn(self.assets)).with_outputs(
            NODATA, ERRORS, main="windows"
        )
