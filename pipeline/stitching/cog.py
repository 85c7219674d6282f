"""Writing a tile's mask as a Cloud-Optimized GeoTIFF, by windows, rerun-safe.

The mask has exactly the tile's CRS, geotransform and size, so it overlays
the tile pixel for pixel. Band 1 is the building probability as uint8
(``round(p * 255)``) with band scale 1/255 and offset 0, so QGIS, GDAL and
rasterio (``read(masked=True) * scales[0]``) read probabilities in [0, 1];
the tag ``PROBABILITY_SCALE`` repeats it for older readers. With a
threshold, band 2 is the binary mask (1 building, 0 not) at
``p >= threshold``, scale 1. Pixels
that are nodata in the tile are masked by an internal per-dataset mask rather
than a nodata value, because every uint8 value is a valid probability.

Memory does not grow with the tile (:class:`MaskFile`): the cores of a
tile's windows are written, as they arrive, into a tiled, uncompressed,
sparse GeoTIFF (``<name>.stitch.tmp-<uuid>``; parts never written read as zero and
masked). Once every window is in, GDAL's COG driver lays the final file out
from it (tiled, DEFLATE with the horizontal predictor, overviews averaged
down to one block; for a mask over :data:`MAX_OVERVIEW_PIXELS`, no
overviews and no empty blocks), reading it block by block, into another temporary
name, which is then renamed into place (for ``gs://`` and other object
stores: built on local disk, streamed up through Beam's ``FileSystems`` to
a temporary name, then renamed). So a killed job never leaves a
final-looking, half-written mask, and a rerun replaces the file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems

from footprints.tiles import TileInfo
from pipeline.stitching.stitch import CoreTally
from pipeline.values import (
    BINARY_BAND,
    INFERRED,
    PROBABILITY_BAND,
    PROBABILITY_SCALE,
    CorePrediction,
    TileMask,
    binary_mask,
)
from pipeline.windows import Box

LOG = logging.getLogger(__name__)

#: Creation options of GDAL's COG driver.
COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": 2,
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}
#: Largest mask (pixels) whose overviews the COG driver computes. Building
#: overviews reads every pixel of the mask, stored or not: 6.8 s for a
#: 20000 x 20000 mask holding one block (measured, GDAL 3.10), so about 11
#: minutes for a 200000 x 200000 tile whatever it holds, against 0.4 s and
#: 45 s without. Larger masks are written without overviews and sparse (no
#: block stored where the mask holds nothing); ``gdaladdo -ro`` adds external
#: ones where wanted.
MAX_OVERVIEW_PIXELS = 2**30


def cog_options(height: int, width: int) -> dict[str, Any]:
    """The COG driver's options for a mask of this size (see :data:`MAX_OVERVIEW_PIXELS`)."""
    if height * width <= MAX_OVERVIEW_PIXELS:
        return COG_OPTIONS
    return {**COG_OPTIONS, "overviews": "NONE", "sparse_ok": True}


def write_bytes_atomic(path: str, data: bytes, mime_type: str = "application/octet-stream") -> str:
    """Writes ``data`` to ``path`` through a temporary name and a rename."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(tmp, mime_type=mime_type) as f:
        f.write(data)
    if FileSystems.exists(path):
        # Object stores' rename does not replace; locally this keeps one code path.
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    return path


#: Rows written at a time when a whole in-memory mask is written.
STRIP_ROWS = 512
#: Bytes copied at a time when a finished file is streamed to an object store.
COPY_CHUNK = 16 * 2**20


def mask_path(masks_dir: str, scene: str) -> str:
    """``<masks_dir>/<scene>.tif``."""
    return FileSystems.join(masks_dir, f"{scene}.tif")


def _is_local(path: str) -> bool:
    return "://" not in path


def publish_file(local: str, path: str) -> str:
    """Moves the finished local file ``local`` to ``path`` (local or any Beam filesystem).

    Locally a rename (``local`` is next to ``path``); elsewhere the file is
    streamed to ``<path>.tmp-<uuid>`` and renamed, as
    :func:`write_bytes_atomic` does, and ``local`` removed.
    """
    if _is_local(path):
        os.replace(local, path)
        return path
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(local, "rb") as src, FileSystems.create(tmp, mime_type="image/tiff") as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)
    os.remove(local)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    return path


class MaskFile:
    """One tile's mask, written by windows into a temporary GeoTIFF, then published as a COG.

    Args:
        path: The final COG (local or ``gs://``...).
        tile: The tile (``height``, ``width``, ``crs``, ``affine``, ``path``).
        threshold: If set, band 2 holds ``probability >= threshold``.
        tags: Extra dataset tags (model, run id).
    """

    def __init__(
        self,
        path: str,
        tile: TileInfo,
        threshold: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        import rasterio

        self.path = path
        self.tile = tile
        self._threshold = threshold
        folder = os.path.dirname(path) if _is_local(path) else tempfile.gettempdir()
        if folder:
            os.makedirs(folder, exist_ok=True)
        # Both temporary names end in ``.tmp-<uuid>``: what readers of the
        # output folder skip (pipeline.writers.files).
        base, tag = os.path.join(folder, os.path.basename(path)), uuid.uuid4().hex
        self._stitched, self._cog = f"{base}.stitch.tmp-{tag}", f"{base}.tmp-{tag}"
        self._boxes: list[Box] = []  # what is written, for a mask created late
        self._masked = False
        count = 1 if threshold is None else 2
        self._dst = rasterio.open(
            self._stitched,
            "w",
            driver="GTiff",
            width=tile.width,
            height=tile.height,
            count=count,
            dtype="uint8",
            crs=tile.crs,
            transform=tile.affine,
            tiled=True,
            blockxsize=COG_OPTIONS["blocksize"],
            blockysize=COG_OPTIONS["blocksize"],
            sparse_ok=True,
            bigtiff="IF_SAFER",
        )
        self._dst.set_band_description(1, PROBABILITY_BAND)
        if threshold is not None:
            self._dst.set_band_description(2, BINARY_BAND)
        # Readers apply value * scale + offset: probability for band 1.
        self._dst.scales = [PROBABILITY_SCALE] + [1.0] * (count - 1)
        self._dst.offsets = [0.0] * count
        all_tags = {
            "PROBABILITY_SCALE": str(PROBABILITY_SCALE),
            "SOURCE": tile.path,
            **(tags or {}),
        }
        if threshold is not None:
            all_tags["THRESHOLD"] = str(threshold)
        self._dst.update_tags(**all_tags)

    @property
    def masked(self) -> bool:
        """Whether the file has an internal mask (some pixels are invalid)."""
        return self._masked

    def write(self, box: Box, probability: np.ndarray, valid: np.ndarray | None) -> None:
        """Writes uint8 ``probability`` (and its validity; None: all valid) at ``box``."""
        window = box.to_window()
        if valid is not None and not valid.all():
            # Invalid pixels are masked in the file; zeros there also compress best.
            probability = np.where(valid, probability, 0).astype(np.uint8)
            self._mask_from_now_on()
            self._dst.write_mask(valid.astype(np.uint8) * 255, window=window)
        elif self._masked:
            self._dst.write_mask(np.full(box.shape, 255, np.uint8), window=window)
        bands = [probability]
        if self._threshold is not None:
            bands.append(binary_mask(probability, self._threshold))
        self._dst.write(np.stack(bands), window=window)
        if not self._masked:
            self._boxes.append(box)

    def _mask_from_now_on(self) -> None:
        # The mask is created at the first invalid pixel (a file whose
        # pixels are all valid has none); what was written before is valid.
        # Parts of the mask never written read as 0: invalid.
        if self._masked:
            return
        self._masked = True
        for box in self._boxes:
            self._dst.write_mask(np.full(box.shape, 255, np.uint8), window=box.to_window())
        self._boxes = []

    def commit(self, complete: bool) -> str:
        """Builds the COG from what was written and renames it into place; returns its path.

        Args:
            complete: Whether every pixel of the tile was written; if not,
                the pixels never written are masked.
        """
        try:
            import rasterio.shutil

            if not complete:
                self._mask_from_now_on()
            self._dst.close()
            options = cog_options(self.tile.height, self.tile.width)
            if options["overviews"] == "NONE":
                LOG.warning(
                    "%s: the mask has %d x %d pixels, more than %d: written without "
                    "overviews (add them with `gdaladdo -ro %s`)",
                    self.path,
                    self.tile.width,
                    self.tile.height,
                    MAX_OVERVIEW_PIXELS,
                    self.path,
                )
            rasterio.shutil.copy(self._stitched, self._cog, driver="COG", **options)
            os.remove(self._stitched)
            return publish_file(self._cog, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Closes and removes the temporary files (nothing is published)."""
        if not self._dst.closed:
            self._dst.close()
        for tmp in (self._stitched, self._cog):
            if os.path.exists(tmp):
                os.remove(tmp)


class MaskFileStitcher(CoreTally):
    """Writes the cores of one tile's windows into its mask file as they arrive.

    What the pipeline uses: one core in memory at a time, whatever the
    tile's size. Pixels of windows not inferred are invalid.

    Args:
        tile: The tile.
        size: The window size the tile was planned with.
        halo: The halo it was planned with.
        path: The final COG.
        threshold: If set, band 2 holds ``probability >= threshold``.
        tags: Extra dataset tags.
    """

    def __init__(
        self,
        tile: TileInfo,
        size: int,
        halo: int,
        path: str,
        threshold: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__(tile, size, halo)
        self._file = MaskFile(path, tile, threshold, tags)

    def _place(self, part: CorePrediction) -> None:
        assert part.probability is not None  # an inferred core has them
        self._file.write(part.core, part.probability, part.valid)

    @property
    def masked(self) -> bool:
        """Whether the written file has an internal mask."""
        return self._file.masked

    def commit(self) -> str | None:
        """Publishes the COG; None (and nothing written) if no window was inferred.

        Raises:
            StitchError: if windows are missing (nothing is written).
        """
        try:
            self.check_complete()
        except BaseException:
            self._file.abort()
            raise
        windows = self.windows
        if not windows[INFERRED]:
            self._file.abort()
            return None
        return self._file.commit(complete=windows[INFERRED] == sum(windows.values()))

    def abort(self) -> None:
        """Removes the temporary files."""
        self._file.abort()


def write_mask_cog(
    path: str, mask: TileMask, threshold: float | None = None, tags: dict[str, str] | None = None
) -> str:
    """Writes an in-memory tile mask to ``path`` as a COG, atomically; returns ``path``."""
    out = MaskFile(path, mask.tile, threshold, tags)
    try:
        height, width = mask.probability.shape
        for row in range(0, height, STRIP_ROWS):
            rows = slice(row, min(row + STRIP_ROWS, height))
            box = Box(row, 0, rows.stop - row, width)
            out.write(box, mask.probability[rows], None if mask.valid is None else mask.valid[rows])
    except BaseException:
        out.abort()
        raise
    return out.commit(complete=True)
