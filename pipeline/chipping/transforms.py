"""Chip cutting as a Beam step: one footprint in, its chip (or a dead letter) out.

The plain functions it runs (which tiles, where, how to fill and encode the
chip) are :mod:`pipeline.chipping`, Beam-free so the command line can read
its choices without loading Beam. ``footprints prepare``
(:class:`pipeline.prepare.ChipsFromFootprints`) and ``footprints segment --classifier``
(:class:`pipeline.polygonize.ChipFootprints`) cut their chips with the one
:class:`CutChipDoFn`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from footprints import contracts
from footprints.errors import Reason
from footprints.tiles import TileInfo
from pipeline import chipping
from pipeline.labels import ClassMap
from pipeline.settings.chips import ChipSpec
from pipeline.sources import tile_index, vectors
from pipeline.sources.open_rasters import OpenRasters

ERRORS = contracts.ERRORS


class CutChipDoFn(beam.DoFn):
    """Footprint -> (chip, class) or an ErrorRecord on the ``errors`` output."""

    def __init__(self, spec: ChipSpec, class_map: ClassMap) -> None:
        self.spec = spec
        self.class_map = class_map
        self.cut = Metrics.counter(contracts.METRICS_PREPARE, "chips_cut")
        self.failed = Metrics.counter(contracts.METRICS_PREPARE, "footprints_dead_lettered")
        self.latency = Metrics.distribution(contracts.METRICS_PREPARE, "chip_read_ms")

    def setup(self) -> None:
        """Opens the worker's raster cache."""
        # Footprint files are usually sorted spatially, so consecutive
        # footprints hit the same few tiles: each is opened about once per worker.
        self._datasets = OpenRasters(size=16)
        self._index_key: tuple[int, str | None] | None = None
        self._index: tile_index.TileIndex | None = None

    def teardown(self) -> None:
        """Closes the cached rasters."""
        self._datasets.close()

    def _tile_index(self, tiles: Sequence[TileInfo]) -> tile_index.TileIndex:
        key = (len(tiles), tiles[0].path if tiles else None)
        if self._index is None or self._index_key != key:
            self._index, self._index_key = tile_index.TileIndex(list(tiles)), key
        return self._index

    def process(
        self, footprint: vectors.Footprint, tiles: Sequence[TileInfo]
    ) -> Iterator[tuple[contracts.Chip, str | None] | TaggedOutput[str, contracts.ErrorRecord]]:
        """Cuts the footprint's chip from the tiles it touches, or yields an error."""
        import shapely

        index = self._tile_index(tiles)
        geom = shapely.from_wkb(footprint.wkb)
        try:
            hits = index.touching(geom, footprint.crs)
            if not hits:
                raise chipping.ChipError(
                    Reason.NO_RASTER,
                    "no raster tile lies under the footprint; check that "
                    "--rasters covers it and that both files have the right CRS",
                )
            box, box_crs = chipping.chip_box(hits, self.spec)
            started = time.perf_counter()
            pixels = chipping.read_chip(
                hits, index.touching(box, box_crs), self._datasets, self.spec
            )
            self.latency.update(int((time.perf_counter() - started) * 1000))
            pixels = chipping.to_uint8(pixels, self.spec.value_range)
            image = chipping.encode_image(pixels, self.spec)
            mask = chipping.encode_mask(pixels, self.spec)
        except chipping.ChipError as exc:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS, exc.to_error(footprint.source, "chip", record=footprint.footprint_id)
            )
            return
        except Exception as exc:  # a raster that fails mid-read: dead-letter, keep going
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                contracts.ErrorRecord(
                    footprint.source,
                    footprint.footprint_id,
                    "chip",
                    Reason.READ_FAILED,
                    f"{type(exc).__name__}: {exc}",
                ),
            )
            return
        self.cut.inc()
        yield (
            contracts.Chip(
                footprint_id=footprint.footprint_id,
                image=image,
                mask=mask,
                region=footprint.region,
                label=self.class_map.label_of(footprint.klass),
                wkb=footprint.wkb,
                crs=footprint.crs,
            ),
            footprint.klass,
        )
