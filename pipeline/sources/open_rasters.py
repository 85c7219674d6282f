"""A small LRU cache of open rasterio datasets, for DoFns that read many windows.

Opening a GeoTIFF costs a header read (a request on cloud storage), and GDAL
caches decoded blocks per open dataset. DoFns that read one window or chip
per element therefore keep the last few tiles open: consecutive elements
usually hit the same tiles (footprint files are sorted spatially; windows
arrive tile by tile), so each tile is opened about once and overlapping
halos come from GDAL's block cache. Used by ``footprints prepare``
(:class:`pipeline.chipping.transforms.CutChipDoFn`) and ``footprints segment``
(:class:`pipeline.sources.rasters.ReadWindows`).

The owner opens the cache in ``setup`` or ``start_bundle`` and calls
:meth:`OpenRasters.close` in ``teardown`` or ``finish_bundle``.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import apache_beam as beam

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

__all__ = ["OpenRasters"]


class OpenRasters:
    """Open rasterio datasets by path, least recently used closed first.

    Callable, so it can be passed wherever a ``path -> dataset`` opener is
    expected (e.g. :func:`pipeline.chipping.read_chip`).

    Args:
        size: Most datasets kept open at once.

    Example::

        rasters = OpenRasters(size=2)
        a = rasters("a.tif"); rasters("b.tif")
        rasters("a.tif") is a      # reused, now the most recent
        rasters("c.tif")           # closes b.tif, the least recently used
        rasters.close()            # closes a.tif and c.tif
    """

    def __init__(self, size: int = 16):
        if size < 1:
            raise ValueError(f"OpenRasters size {size!r} must be at least 1")
        self.size = size
        self._open: collections.OrderedDict[str, DatasetReader] = collections.OrderedDict()

    def __call__(self, path: str) -> DatasetReader:
        """The open dataset of ``path``, opened on first use."""
        import rasterio

        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        # Opened before evicting: a path that fails to open closes nothing.
        dataset = self._open[path] = rasterio.open(path)
        while len(self._open) > self.size:
            self._open.popitem(last=False)[1].close()
        return dataset

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Closes every open dataset; the cache can be used again afterwards."""
        while self._open:
            self._open.popitem()[1].close()


class TileCacheFn(beam.DoFn):
    """A DoFn that reads windows of tiles through one :class:`OpenRasters` per bundle.

    Windows of a tile arrive together; keeping up to four tiles open for the
    bundle lets overlapping halos come from GDAL's block cache. Subclasses
    read with ``self.tile(path)``.
    """

    def start_bundle(self) -> None:
        self._tiles = OpenRasters(size=4)

    def finish_bundle(self) -> None:
        self._tiles.close()

    def tile(self, path: str) -> DatasetReader:
        """The open dataset of ``path`` (opened on first use in this bundle)."""
        return self._tiles(path)


#: GDAL's block cache in a segment worker, MB. GDAL's default is 5% of the
#: machine's memory (1.2 GB on a 24 GB machine), and it fills with the
#: decoded blocks of the tile being read and the written blocks of its mask:
#: up to 4 bytes per pixel of an RGB tile, the same order as everything else
#: the job holds. 64 MB keeps all the blocks one window needs.
GDAL_CACHE_MB = 64


def limit_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> None:
    """Caps GDAL's block cache for this process (segment workers' reads and writes)."""
    from rasterio.env import set_gdal_config

    # In bytes: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64,
    # which takes bytes (GDAL's "a number under 100000 means MB" applies to
    # the config string only), so 64 would leave a 64-byte cache, no cache at
    # all: every window read decoded its blocks again.
    set_gdal_config("GDAL_CACHEMAX", megabytes * 2**20)
