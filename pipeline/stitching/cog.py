"""Writing a tile's mask as a Cloud-Optimized GeoTIFF, rerun-safe.

The mask has exactly the tile's CRS, geotransform and size, so it overlays
the tile pixel for pixel. Band 1 is the building probability as uint8
(``round(p * 255)``) with band scale 1/255 and offset 0, so QGIS, GDAL and
rasterio (``read(masked=True) * scales[0]``) read probabilities in [0, 1];
the tag ``PROBABILITY_SCALE`` repeats it for older readers. With a
threshold, band 2 is the binary mask (1 building, 0 not) at
``p >= threshold``, scale 1. Pixels
that are nodata in the tile are masked by an internal per-dataset mask rather
than a nodata value, because every uint8 value is a valid probability.

GDAL's COG driver lays the file out (tiled, DEFLATE with the horizontal
predictor, overviews averaged down to one block), in memory through rasterio;
the bytes then go to ``<name>.tmp-<uuid>`` through Beam's ``FileSystems`` and
are renamed into place, so a killed job never leaves a final-looking,
half-written mask, a rerun replaces the file, and ``gs://`` outputs work as
local ones do.
"""

from __future__ import annotations

import uuid

import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipeline.stitching.stitch import TileMask

#: Creation options of GDAL's COG driver.
COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": 2,
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}
PROBABILITY_BAND = "building_probability"
PROBABILITY_SCALE = 1 / 255
BINARY_BAND = "building"


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


def binary_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``probability`` (uint8, x255) is at least ``threshold`` (in [0, 1])."""
    return (probability >= threshold_uint8(threshold)).astype(np.uint8)


def threshold_uint8(threshold: float) -> int:
    """The uint8 level that ``p >= threshold`` maps to, after ``quantize``."""
    return int(np.ceil(threshold * 255.0 - 1e-9))


def encode_mask_cog(
    mask: TileMask, threshold: float | None = None, tags: dict[str, str] | None = None
) -> bytes:
    """The COG bytes of a tile's mask.

    Args:
        mask: The stitched mask and its tile.
        threshold: If set, a second band holds ``probability >= threshold``.
        tags: Extra dataset tags (model, run id).
    """
    from rasterio.io import MemoryFile

    tile = mask.tile
    bands = [mask.probability]
    names = [PROBABILITY_BAND]
    if threshold is not None:
        bands.append(binary_mask(mask.probability, threshold))
        names.append(BINARY_BAND)
    profile = dict(
        driver="COG",
        width=tile.width,
        height=tile.height,
        count=len(bands),
        dtype="uint8",
        crs=tile.crs,
        transform=tile.affine,
        **COG_OPTIONS,
    )
    all_tags = {"PROBABILITY_SCALE": str(PROBABILITY_SCALE), "SOURCE": tile.path, **(tags or {})}
    if threshold is not None:
        all_tags["THRESHOLD"] = str(threshold)
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(np.stack(bands))
            for index, name in enumerate(names, start=1):
                dst.set_band_description(index, name)
            # Readers apply value * scale + offset: probability for band 1.
            dst.scales = [PROBABILITY_SCALE] + [1.0] * (len(bands) - 1)
            dst.offsets = [0.0] * len(bands)
            dst.update_tags(**all_tags)
            if mask.valid is not None:
                dst.write_mask(mask.valid)
        return memfile.read()


def write_mask_cog(
    path: str, mask: TileMask, threshold: float | None = None, tags: dict[str, str] | None = None
) -> str:
    """Writes a tile's mask to ``path`` as a COG, atomically; returns ``path``."""
    return write_bytes_atomic(path, encode_mask_cog(mask, threshold, tags), "image/tiff")
