"""The stitching stages as Beam transforms: plan windows, stitch tiles.

Thin wrappers over :mod:`pipeline.stitching.windows` and
:mod:`pipeline.stitching.stitch`:

* :class:`PlanWindows` fans each tile out into its windows and reshuffles
  them, so the reads and the model calls of one large tile spread over all
  workers instead of staying on the one that validated it;
* :class:`StitchTiles` groups every window's core with its tile (keyed by
  :class:`~pipeline.keys.TileKey`, whose coder is deterministic) and places
  the cores into the tile's mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam

from footprints.contracts import ErrorRecord
from pipeline.keys import TileKey
from pipeline.ptransform import DataclassTransform
from pipeline.stitching.stitch import CorePrediction, StitchError, TileStitcher
from pipeline.stitching.windows import plan_windows

NAMESPACE = "footprints.segment"
SKIPPED = "skipped"
ERRORS = "errors"


@dataclasses.dataclass
class PlanWindows(DataclassTransform):
    """TileInfo -> reshuffled ``(WindowPlan, TileInfo)``, one per model window.

    Attributes:
        size: The model's window size.
        halo: Context pixels kept around each window's core.
    """

    size: int
    halo: int

    def expand(self, tiles):
        """Plans every tile's windows and spreads them over workers."""
        return tiles | "Plan" >> beam.FlatMap(self._plan) | "Spread" >> beam.Reshuffle()

    def _plan(self, tile):
        plans = plan_windows(tile.scene, tile.height, tile.width, self.size, self.halo)
        beam.metrics.Metrics.counter(NAMESPACE, "windows_planned").inc(len(plans))
        for plan in plans:
            yield plan, tile


class _StitchFn(beam.DoFn):
    def __init__(self, size: int, halo: int):
        self._size, self._halo = size, halo
        self._stitched = beam.metrics.Metrics.counter(NAMESPACE, "tiles_stitched")
        self._skipped = beam.metrics.Metrics.counter(NAMESPACE, "tiles_skipped_nodata")
        self._failed = beam.metrics.Metrics.counter(NAMESPACE, "tiles_failed")

    def process(self, item: tuple[TileKey, Any]):
        key, values = item
        stitcher: TileStitcher | None = None
        early: list[CorePrediction] = []
        # One pass over the group, placing cores as they come, so that on
        # runners that stream a group from shuffle only the tile's mask is
        # held; cores that arrive before the tile's info wait for it.
        for value in values:
            if not isinstance(value, CorePrediction):
                stitcher = TileStitcher(value, self._size, self._halo)
                for part in early:
                    stitcher.add(part)
                early = []
            elif stitcher is None:
                early.append(value)
            else:
                stitcher.add(value)
        if stitcher is None:
            raise StitchError(f"windows of {key.scene!r} arrived without their tile")
        mask = stitcher.result()
        tile = mask.tile
        if not mask.skipped:
            self._stitched.inc()
            yield mask
            return
        reason = "failed" if mask.windows["failed"] else "nodata"
        if reason == "failed":
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    source=tile.path,
                    record=key.scene,
                    stage="stitch",
                    error="no_window_inferred",
                    message=(
                        f"no window of {key.scene!r} could be read or inferred; see the "
                        "window errors of this file above and fix the file or the model"
                    ),
                ),
            )
        else:
            self._skipped.inc()
        yield beam.pvalue.TaggedOutput(
            SKIPPED, {"scene": key.scene, "reason": reason, "windows": mask.windows}
        )


@dataclasses.dataclass
class StitchTiles(DataclassTransform):
    """Joins tiles with their windows' cores and stitches each tile's mask.

    Input: a dict ``{"tiles": PCollection[TileInfo], "cores":
    PCollection[CorePrediction]}``. Returns a tagged result: main
    :class:`~pipeline.stitching.stitch.TileMask` of tiles with at least one
    inferred window; ``skipped``: ``{"scene", "reason", "windows"}`` for tiles
    with none (reason ``nodata``: entirely nodata; ``failed``: every window
    failed); ``errors``: ErrorRecord for the failed ones.
    """

    size: int
    halo: int

    def expand(self, inputs):
        """Groups cores by tile and stitches each tile's mask."""
        keyed_tiles = inputs["tiles"] | "KeyTiles" >> beam.Map(
            lambda tile: (TileKey(tile.scene), tile)
        ).with_output_types(tuple[TileKey, Any])
        keyed_cores = inputs["cores"] | "KeyCores" >> beam.Map(
            lambda core: (core.key.tile, core)
        ).with_output_types(tuple[TileKey, Any])
        return (
            (keyed_tiles, keyed_cores)
            | "Together" >> beam.Flatten()
            | "ByTile" >> beam.GroupByKey()
            | "Stitch"
            >> beam.ParDo(_StitchFn(self.size, self.halo)).with_outputs(
                SKIPPED, ERRORS, main="masks"
            )
        )
