"""The stitching stages as Beam transforms: plan windows, stitch tiles.

Thin wrappers over :mod:`pipeline.windows` and
:mod:`pipeline.stitching.stitch`:

* :class:`PlanWindows` fans each tile out into its rows of windows, plans
  each row lazily where it lands (skipping windows over blocks a sparse
  GeoTIFF does not store) and reshuffles the windows, so the reads and the
  model calls of one large tile spread over all workers instead of staying
  on the one that validated it, and no list of a tile's windows is built;
* :class:`StitchTiles` groups every window's core by its tile (keyed by
  :class:`~pipeline.keys.TileKey`, whose coder is deterministic) and writes
  the cores, one at a time as the group is iterated, into the tile's mask
  file (:class:`~pipeline.stitching.cog.MaskFileStitcher`); the tiles
  themselves come as a side input, so no core waits in memory for its tile
  and a worker holds one core, not the tile's mask.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import DoOutputsTuple, PCollection, TaggedOutput

from footprints.contracts import ERRORS, METRICS_SEGMENT, ErrorRecord
from footprints.errors import Reason
from footprints.tiles import TileInfo
from pipeline.keys import TileKey
from pipeline.ptransform import DataclassTransform
from pipeline.sources.open_rasters import TileCacheFn, limit_gdal_cache
from pipeline.sources.rasters import any_block_stored
from pipeline.stitching.cog import MaskFileStitcher, mask_path
from pipeline.stitching.stitch import StitchError
from pipeline.values import CorePrediction, EmptyCores, WrittenMask
from pipeline.windows import AxisWindow, WindowPlan, plan_axis, plan_row

NAMESPACE = METRICS_SEGMENT
SKIPPED = "skipped"
EMPTY = "empty"


class PlannedWindows(TypedDict):
    """What :class:`PlanWindows` returns."""

    #: ``(WindowPlan, TileInfo)`` of each window over data, spread over workers.
    windows: PCollection[tuple[WindowPlan, TileInfo]]
    #: Each row's run of windows over no stored block (key :data:`EMPTY`).
    empty: PCollection[EmptyCores]


class StitchInputs(TypedDict):
    """What :class:`StitchTiles` takes."""

    tiles: PCollection[TileInfo]
    cores: PCollection[CorePrediction | EmptyCores]


class _PlanRowFn(TileCacheFn):
    """One row of a tile's windows -> its windows over stored blocks; the rest as one EmptyCores."""

    def __init__(self, size: int, halo: int, bands: tuple[int, ...]) -> None:
        self._size, self._halo, self._bands = size, halo, bands
        self._planned = Metrics.counter(NAMESPACE, "windows_planned")
        self._empty = Metrics.counter(NAMESPACE, "windows_skipped_empty")

    def setup(self) -> None:
        limit_gdal_cache()

    def process(
        self, item: tuple[TileInfo, AxisWindow]
    ) -> Iterator[tuple[WindowPlan, TileInfo] | TaggedOutput[str, EmptyCores]]:
        tile, row = item
        src = self.tile(tile.path)
        bands = self._bands or tuple(range(1, tile.count + 1))
        first_empty, empty, planned = None, 0, 0
        for plan in plan_row(tile.scene, row, tile.width, self._size, self._halo):
            planned += 1
            if any_block_stored(src, plan.core, bands):
                yield plan, tile
            else:
                first_empty = first_empty or plan.key
                empty += 1
        self._planned.inc(planned)
        if first_empty is not None:
            self._empty.inc(empty)
            yield beam.pvalue.TaggedOutput(EMPTY, EmptyCores(first_empty, empty))


@beam.typehints.with_input_types(TileInfo)
@dataclasses.dataclass
class PlanWindows(DataclassTransform):
    """TileInfo -> ``(WindowPlan, TileInfo)`` per window over data, ``EmptyCores`` per row.

    Planned lazily: a tile fans out into its rows of windows (a handful of
    elements however large the tile declares itself), the rows are spread
    over workers, and each row is planned there, window by window, in a
    generator. A window whose core lies only on blocks the file does not
    store (a sparse GeoTIFF, see
    :func:`pipeline.sources.rasters.any_block_stored`) is not an element:
    each row's run of them is one :class:`~pipeline.values.EmptyCores`,
    which stitching counts as ``empty`` windows (masked in the mask). The
    windows over data are reshuffled, so the reads and model calls of one
    large tile spread over all workers.

    Returns ``{"windows": ..., "empty": ...}``.

    Attributes:
        size: The model's window size.
        halo: Context pixels kept around each window's core.
        bands: The 1-based bands the model reads (empty: all).
    """

    size: int
    halo: int
    bands: tuple[int, ...] = ()

    def expand(self, tiles: PCollection[TileInfo]) -> PlannedWindows:
        """Plans every tile's windows, a row at a time, and spreads them over workers."""
        size, halo = self.size, self.halo
        planned = (
            tiles
            | "Rows"
            >> beam.FlatMap(
                lambda tile: ((tile, row) for row in plan_axis(tile.height, size, halo))
            )
            | "SpreadRows" >> beam.Reshuffle()
            | "Plan"
            >> beam.ParDo(_PlanRowFn(size, halo, tuple(self.bands))).with_outputs(
                EMPTY, main="windows"
            )
        )
        return {"windows": planned.windows | "Spread" >> beam.Reshuffle(), "empty": planned[EMPTY]}


class _StitchFn(beam.DoFn):
    def __init__(
        self, size: int, halo: int, masks_dir: str, threshold: float | None, tags: dict[str, str]
    ) -> None:
        self._size, self._halo = size, halo
        self._dir, self._threshold, self._tags = masks_dir, threshold, tags
        self._stitched = Metrics.counter(NAMESPACE, "tiles_stitched")
        self._skipped = Metrics.counter(NAMESPACE, "tiles_skipped_nodata")
        self._failed = Metrics.counter(NAMESPACE, "tiles_failed")

    def setup(self) -> None:
        limit_gdal_cache()

    def process(
        self,
        item: tuple[TileKey, Iterable[CorePrediction | EmptyCores]],
        tiles: dict[TileKey, TileInfo],
    ) -> Iterator[WrittenMask | TaggedOutput[str, Any]]:
        key, cores = item
        tile = tiles.get(key)
        if tile is None:
            raise StitchError(f"windows of {key.scene!r} arrived without their tile")
        stitcher = MaskFileStitcher(
            tile,
            self._size,
            self._halo,
            mask_path(self._dir, tile.scene),
            self._threshold,
            self._tags,
        )
        try:
            # One pass over the group (an iterable: never listed), writing
            # each core as it comes, so that on runners that stream a group
            # from shuffle one core at a time is held.
            for core in cores:
                stitcher.add(core)
        except BaseException:
            stitcher.abort()
            raise
        path = stitcher.commit()
        windows = stitcher.windows
        if path is not None:
            self._stitched.inc()
            yield WrittenMask(tile, path, stitcher.masked, windows)
            return
        reason = "failed" if windows["failed"] else "nodata"
        if reason == "failed":
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    source=tile.path,
                    record=key.scene,
                    stage="stitch",
                    error=Reason.NO_WINDOW_INFERRED,
                    message=(
                        f"no window of {key.scene!r} could be read or inferred; see the "
                        "window errors of this file above and fix the file or the model"
                    ),
                ),
            )
        else:
            self._skipped.inc()
        yield beam.pvalue.TaggedOutput(
            SKIPPED, {"scene": key.scene, "reason": reason, "windows": windows}
        )


@dataclasses.dataclass
class StitchTiles(DataclassTransform):
    """Groups the windows' cores by tile and writes each tile's mask COG.

    Input: a dict ``{"tiles": PCollection[TileInfo], "cores":
    PCollection[CorePrediction]}``. Returns a tagged result: main
    :class:`~pipeline.values.WrittenMask` of tiles with at least one
    inferred window (its COG written to ``<masks_dir>/<scene>.tif``);
    ``skipped``: ``{"scene", "reason", "windows"}`` for tiles with none
    (reason ``nodata``: entirely nodata; ``failed``: every window failed);
    ``errors``: ErrorRecord for the failed ones.
    """

    size: int
    halo: int
    masks_dir: str
    threshold: float | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    def expand(self, inputs: StitchInputs) -> DoOutputsTuple:
        """Groups cores by tile and stitches each tile's mask."""
        keyed_tiles = inputs["tiles"] | "KeyTiles" >> beam.Map(
            lambda tile: (TileKey(tile.scene), tile)
        ).with_output_types(tuple[TileKey, Any])
        keyed_cores = inputs["cores"] | "KeyCores" >> beam.Map(
            lambda core: (core.key.tile, core)
        ).with_output_types(tuple[TileKey, Any])
        result: DoOutputsTuple = (
            keyed_cores
            | "ByTile" >> beam.GroupByKey()
            | "Stitch"
            >> beam.ParDo(
                _StitchFn(self.size, self.halo, self.masks_dir, self.threshold, self.tags),
                beam.pvalue.AsDict(keyed_tiles),
            ).with_outputs(SKIPPED, ERRORS, main="masks")
        )
        return result
