"""Orthophoto tiles as Beam transforms: match, check headers, read model windows.

Both pipelines that read tiles do it with these transforms, around the one
header check in :mod:`footprints.tiles`:

1. :class:`MatchTiles` -- the files of a glob; for ``footprints segment``
   one per scene name (two files with the same name would write the same
   ``masks/<scene>.tif``, so all but the first, in path order, are
   dead-lettered as ``duplicate_scene``);
2. :class:`ValidateTiles` -- open each file once with
   :func:`footprints.tiles.read_header` (readable, a CRS, a north-up
   geotransform, one dtype, readable to its last block) and, for the
   segmenter, :func:`footprints.tiles.check_for_model` (the bands it reads
   and their dtype). Good tiles become :class:`~footprints.tiles.TileInfo`;
   bad ones :class:`~footprints.contracts.ErrorRecord` s with a reason from
   :class:`footprints.errors.Reason`, the same in every command;
   :class:`ReadTiles` is the two together, as ``footprints prepare`` uses them;
3. :class:`ReadWindows` -- (segment) after the windows are planned and
   reshuffled, read each window block-aligned, pad it in numpy at the tile's
   edges, read the tile's validity mask (nodata value, internal mask or
   alpha) and scale the pixels to the model's uint8 input. A window with no
   valid pixel in its core is not sent to the model: it goes straight to
   stitching as nodata, which is also how an entirely-nodata tile is found
   and skipped.

The checks and the read are plain functions (:func:`validate_tile`,
:func:`read_window`), tested without Beam.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import DoOutputsTuple, PBegin, PCollection, TaggedOutput

from footprints.contracts import (
    ERRORS,
    METRICS_PREPARE,
    METRICS_SEGMENT,
    ErrorRecord,
    SegmenterAssets,
    scale_to_model_input,
)
from footprints.errors import Reason
from footprints.tiles import TileInfo, TileRejected, check_for_model, read_header, scene_of
from pipeline.ptransform import DataclassTransform
from pipeline.sources.open_rasters import TileCacheFn, limit_gdal_cache
from pipeline.values import CorePrediction, WindowInput
from pipeline.windows import Box, WindowPlan, cut_and_pad, read_box

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

LOG = logging.getLogger(__name__)
NAMESPACE = METRICS_SEGMENT
NODATA = "nodata"


def validate_tile(path: str, assets: SegmenterAssets | None = None) -> TileInfo:
    """Reads ``path``'s header and, given a segmenter's ``assets``, checks it fits them.

    Raises:
        TileRejected: with the reason code and how to fix it (see
            :func:`footprints.tiles.read_header` and
            :func:`footprints.tiles.check_for_model`).
    """
    tile = read_header(path)
    if assets is not None:
        check_for_model(tile, assets)
    return tile


def stores_blocks(src: DatasetReader) -> bool:
    """Whether ``src`` says which of its blocks are stored (GeoTIFF: its ``TIFF`` domain)."""
    stores: bool = src.driver in ("GTiff", "COG")
    return stores


def any_block_stored(src: DatasetReader, box: Box, bands: Sequence[int]) -> bool:
    """Whether any internal block of ``src`` under ``box`` is stored, in any of ``bands``.

    A sparse GeoTIFF (GDAL's ``SPARSE_OK``, or any TIFF whose writer left
    blocks out) has blocks whose offset is 0: they hold no data, and GDAL
    makes them up (nodata, or 0) when read. GDAL reports each stored block
    as the band metadata item ``BLOCK_OFFSET_<col>_<row>`` in the ``TIFF``
    domain, and nothing for an absent one; asking costs no pixel read.
    Files of other formats say nothing about their blocks: every block
    counts as stored.

    Args:
        src: The tile, open in rasterio.
        box: Pixels of the tile (inside it).
        bands: The 1-based bands read.
    """
    if not stores_blocks(src):
        return True
    block_rows, block_cols = src.block_shapes[0]
    for block_row in range(box.row // block_rows, (box.bottom - 1) // block_rows + 1):
        for block_col in range(box.col // block_cols, (box.right - 1) // block_cols + 1):
            name = f"BLOCK_OFFSET_{block_col}_{block_row}"
            if any(src.get_tag_item(name, "TIFF", bidx=band) for band in bands):
                return True
    return False


def read_window(
    src: DatasetReader, tile: TileInfo, plan: WindowPlan, assets: SegmenterAssets
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


@dataclasses.dataclass
class MatchTiles(DataclassTransform):
    """Matches a glob of tiles; with ``one_per_scene``, paths with unique scene names.

    Attributes:
        pattern: The glob (local or any Beam filesystem).
        one_per_scene: Dead-letter all but the first path (in sorted order)
            of each scene name (``footprints segment`` writes one mask per
            name); without it, every matched file is yielded.

    Returns:
        A tagged result: main ``str`` paths, ``errors``: ErrorRecord
        (``duplicate_scene``) for files whose scene name an earlier path has.
    """

    pattern: str
    one_per_scene: bool = True

    def expand(self, pbegin: PBegin) -> DoOutputsTuple:
        """Matches the glob; returns paths and an error per duplicate scene."""
        from apache_beam.io import fileio

        paths = (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Path" >> beam.Map(lambda m: m.path)
        )
        if self.one_per_scene:
            grouped = paths | "ByScene" >> beam.GroupBy(scene_of)
            result: DoOutputsTuple = grouped | "OnePerScene" >> beam.ParDo(
                _one_per_scene
            ).with_outputs(ERRORS, main="paths")
            return result
        # No grouping to spread the work, so spread it here before the header reads.
        spread = paths | "Spread" >> beam.Reshuffle()
        result = spread | "All" >> beam.ParDo(_every_path).with_outputs(ERRORS, main="paths")
        return result


def _every_path(path: str) -> Iterator[str]:
    yield path


def _one_per_scene(
    item: tuple[str, Iterable[str]],
) -> Iterator[str | TaggedOutput[str, ErrorRecord]]:
    scene, paths = item
    first, *others = sorted(paths)
    yield first
    for other in others:
        Metrics.counter(NAMESPACE, "tiles_duplicate_name").inc()
        yield beam.pvalue.TaggedOutput(
            ERRORS,
            ErrorRecord(
                source=other,
                record=scene,
                stage="match",
                error=Reason.DUPLICATE_SCENE,
                message=(
                    f"{other!r} has the same name {scene!r} as {first!r}, so both would "
                    f"write masks/{scene}.tif; rename one of them or run them separately"
                ),
            ),
        )


class _ValidateFn(beam.DoFn):
    def __init__(self, assets: SegmenterAssets | None, stage: str, namespace: str):
        self._assets = assets
        self._stage = stage
        self._valid = Metrics.counter(namespace, "tiles_valid")
        self._rejected = Metrics.counter(namespace, "tiles_rejected")

    def process(self, path: str) -> Iterator[TileInfo | TaggedOutput[str, ErrorRecord]]:
        try:
            tile = validate_tile(path, self._assets)
        except TileRejected as exc:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS, exc.to_error(path, self._stage, record=scene_of(path))
            )
            return
        self._valid.inc()
        yield tile


@beam.typehints.with_input_types(str)
@dataclasses.dataclass
class ValidateTiles(DataclassTransform):
    """Reads each tile's header (and checks it against a model); result ``tiles`` / ``errors``.

    Attributes:
        assets: The segmenter's assets, or None to check only the header
            (``footprints prepare`` cuts any bands the chip spec names).
        stage: The ``stage`` of the dead letters.
        namespace: The namespace of the ``tiles_valid`` / ``tiles_rejected`` counters.
    """

    assets: SegmenterAssets | None = None
    stage: str = "validate"
    namespace: str = NAMESPACE

    def expand(self, paths: PCollection[str]) -> DoOutputsTuple:
        """Checks each tile's header; returns ``tiles`` and ``errors``."""
        check = _ValidateFn(self.assets, self.stage, self.namespace)
        result: DoOutputsTuple = paths | "Check" >> beam.ParDo(check).with_outputs(
            ERRORS, main="tiles"
        )
        return result


@dataclasses.dataclass
class ReadTiles(DataclassTransform):
    """Raster glob -> TileInfo per usable tile, ErrorRecord per bad one (``footprints prepare``).

    :class:`MatchTiles` (every file) then :class:`ValidateTiles` without a
    model; returns a tagged result ``tiles`` / ``errors``.
    """

    pattern: str
    stage: str = "read_raster"
    namespace: str = METRICS_PREPARE

    def expand(self, pbegin: PBegin) -> DoOutputsTuple:
        """Matches the glob and reads each tile's header."""
        paths = pbegin | "Match" >> MatchTiles(self.pattern, one_per_scene=False)
        result: DoOutputsTuple = paths.paths | "Header" >> ValidateTiles(
            None, self.stage, self.namespace
        )
        return result


class _ReadFn(TileCacheFn):
    def __init__(self, assets: SegmenterAssets):
        self._assets = assets
        self._read = Metrics.counter(NAMESPACE, "windows_read")
        self._nodata = Metrics.counter(NAMESPACE, "windows_nodata")
        self._failed = Metrics.counter(NAMESPACE, "windows_read_failed")

    def setup(self) -> None:
        limit_gdal_cache()

    def process(
        self, item: tuple[WindowPlan, TileInfo]
    ) -> Iterator[tuple[WindowInput, np.ndarray] | TaggedOutput[str, ErrorRecord | CorePrediction]]:
        plan, tile = item
        try:
            pixels, valid = read_window(self.tile(tile.path), tile, plan, self._assets)
        except Exception as exc:  # a block that fails to decode fails only its window
            self._failed.inc()
            LOG.warning("cannot read window %s of %s: %s", plan.key, tile.path, exc)
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    source=tile.path,
                    record=str(plan.key),
                    stage="read",
                    error=Reason.READ_FAILED,
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


@beam.typehints.with_input_types(tuple[WindowPlan, TileInfo])
@dataclasses.dataclass
class ReadWindows(DataclassTransform):
    """Reads planned windows.

    Input: ``(WindowPlan, TileInfo)``. Returns a tagged result: main
    ``(WindowInput, uint8 image [size, size, bands])`` for the model;
    ``nodata``: :class:`~pipeline.values.CorePrediction` for windows
    that are all nodata or failed to read (they still reach stitching, so it
    can account for every window); ``errors``: ErrorRecord for failed reads.
    """

    assets: SegmenterAssets

    def expand(self, planned: PCollection[tuple[WindowPlan, TileInfo]]) -> DoOutputsTuple:
        """Reads each planned window; returns windows, ``nodata`` and ``errors``."""
        result: DoOutputsTuple = planned | "Read" >> beam.ParDo(_ReadFn(self.assets)).with_outputs(
            NODATA, ERRORS, main="windows"
        )
        return result
