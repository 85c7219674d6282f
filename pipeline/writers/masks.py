"""``masks/``: one COG per tile, then ``mosaic.vrt`` over all of them.

Each tile's mask is written by the one worker that stitched it (one writer
per file), window by window as the cores arrive, then as a COG through a
temporary name (:mod:`pipeline.stitching.cog`, called by
:class:`pipeline.stitching.transforms.StitchTiles`). Once every mask is
written, the VRT mosaic is built from what was written and masks or
mosaics of earlier runs that this run did not write are removed, so a rerun
into the same folder leaves exactly this run's masks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms import combiners

from footprints.contracts import METRICS_SEGMENT
from pipeline.ptransform import DataclassTransform
from pipeline.stitching.cog import mask_path
from pipeline.stitching.vrt import MaskEntry, write_mosaics
from pipeline.values import BINARY_BAND, PROBABILITY_BAND, WrittenMask
from pipeline.writers.files import join, remove_stale_shards

__all__ = ["WriteMasks", "finish_masks", "mask_path"]

NAMESPACE = METRICS_SEGMENT


def _entry(mask: WrittenMask, count: int) -> MaskEntry:
    tile = mask.tile
    Metrics.counter(NAMESPACE, "masks_written").inc()
    return MaskEntry(
        path=mask.path,
        crs=tile.crs,
        transform=tile.transform,
        width=tile.width,
        height=tile.height,
        count=count,
        masked=mask.masked,
    )


def finish_masks(entries: list[MaskEntry], masks_dir: str, binary: bool) -> dict[str, list[str]]:
    """Writes the mosaic(s) and removes stale files; returns what ``masks/`` holds."""
    names = [PROBABILITY_BAND] + ([BINARY_BAND] if binary else [])
    mosaics = write_mosaics(entries, masks_dir, names) if entries else []
    masks = sorted(e.path for e in entries)
    remove_stale_shards(masks, join(masks_dir, "*.tif"))
    remove_stale_shards(mosaics, join(masks_dir, "mosaic*.vrt"))
    return {"masks": masks, "mosaics": mosaics}


@beam.typehints.with_input_types(WrittenMask)
@dataclasses.dataclass
class WriteMasks(DataclassTransform):
    """The mosaic over the masks StitchTiles wrote (WrittenMask in).

    Attributes:
        masks_dir: The ``masks/`` folder.
        threshold: If set, each COG has a binary band at this probability.

    Returns:
        A dict: ``entries``, PCollection of :class:`MaskEntry` (one per
        mask); ``written``, a singleton ``{"masks": [...], "mosaics": [...]}``
        available once every mask and the mosaic are in place.
    """

    masks_dir: str
    threshold: float | None = None

    def expand(self, masks: PCollection[WrittenMask]) -> dict[str, PCollection[Any]]:
        """Builds the mosaic once every mask is written; removes stale masks."""
        entries = masks | "Entries" >> beam.Map(_entry, 1 if self.threshold is None else 2)
        written = (
            entries
            | "AllMasks" >> combiners.ToList()
            | "Mosaic" >> beam.Map(finish_masks, self.masks_dir, self.threshold is not None)
        )
        return {"entries": entries, "written": written}
