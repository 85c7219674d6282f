"""``masks/``: one COG per tile, then ``mosaic.vrt`` over all of them.

Each tile's mask is written by the one worker that stitched it (one writer
per file), as a COG through a temporary name (:mod:`pipeline.stitching.cog`).
Once every mask is written, the VRT mosaic is built from what was written
and masks or mosaics of earlier runs that this run did not write are
removed, so a rerun into the same folder leaves exactly this run's masks.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from pipeline.ptransform import DataclassTransform
from pipeline.stitching.cog import BINARY_BAND, PROBABILITY_BAND, write_mask_cog
from pipeline.stitching.stitch import TileMask
from pipeline.stitching.vrt import MaskEntry, write_mosaics
from pipeline.writers.files import join, remove_stale_shards

NAMESPACE = "footprints.segment"


def mask_path(masks_dir: str, scene: str) -> str:
    """``<masks_dir>/<scene>.tif``."""
    return join(masks_dir, f"{scene}.tif")


class _WriteMaskFn(beam.DoFn):
    def __init__(self, masks_dir: str, threshold: float | None, tags: dict[str, str]):
        self._dir, self._threshold, self._tags = masks_dir, threshold, tags
        self._written = beam.metrics.Metrics.counter(NAMESPACE, "masks_written")

    def process(self, mask: TileMask):
        tile = mask.tile
        path = write_mask_cog(mask_path(self._dir, tile.scene), mask, self._threshold, self._tags)
        self._written.inc()
        yield MaskEntry(
            path=path,
            crs=tile.crs,
            transform=tile.transform,
            width=tile.width,
            height=tile.height,
            count=1 if self._threshold is None else 2,
            masked=mask.valid is not None,
        )


def finish_masks(entries: list[MaskEntry], masks_dir: str, binary: bool) -> dict:
    """Writes the mosaic(s) and removes stale files; returns what ``masks/`` holds."""
    names = [PROBABILITY_BAND] + ([BINARY_BAND] if binary else [])
    mosaics = write_mosaics(entries, masks_dir, names) if entries else []
    masks = sorted(e.path for e in entries)
    remove_stale_shards(masks, join(masks_dir, "*.tif"))
    remove_stale_shards(mosaics, join(masks_dir, "mosaic*.vrt"))
    return {"masks": masks, "mosaics": mosaics}


@dataclasses.dataclass
class WriteMasks(DataclassTransform):
    """Writes TileMasks as COGs and the mosaic.

    Attributes:
        masks_dir: The ``masks/`` folder.
        threshold: If set, each COG gets a binary band at this probability.
        tags: Dataset tags for every mask (model, run id).

    Returns:
        A dict: ``entries``, PCollection of :class:`MaskEntry` (one per
        mask); ``written``, a singleton ``{"masks": [...], "mosaics": [...]}``
        available once every mask and the mosaic are in place.
    """

    masks_dir: str
    threshold: float | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    def expand(self, masks):
        """Writes each mask as a COG, then the mosaic over all of them."""
        entries = masks | "WriteCOG" >> beam.ParDo(
            _WriteMaskFn(self.masks_dir, self.threshold, self.tags)
        )
        written = (
            entries
            | "AllMasks" >> beam.combiners.ToList()
            | "Mosaic" >> beam.Map(finish_masks, self.masks_dir, self.threshold is not None)
        )
        return {"entries": entries, "written": written}
