"""Tiny GeoTIFFs and vector files with a real CRS, for tests that need exact control.

The sample area (``footprints_app.sample_area``) is realistic; these are the
opposite: a few pixels of seeded noise, so a test can say exactly which
pixel must land where.
"""

from __future__ import annotations

import os

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from affine import Affine
from rasterio.transform import from_origin

UTM = "EPSG:32615"
X0, Y0, RES = 500_000.0, 4_650_000.0, 0.5


def write_geotiff(
    path,
    data: np.ndarray,
    *,
    crs: str | None = UTM,
    transform: Affine | None = None,
    origin: tuple[float, float] = (X0, Y0),
    pixel_size: float = RES,
    nodata: float | None = None,
    tiled: bool = True,
    blocksize: int = 64,
    compress: str | None = None,
    mask: np.ndarray | None = None,
) -> str:
    """Writes band-first ``data`` ([bands, H, W]) as a GeoTIFF; returns ``str(path)``.

    The one GeoTIFF writer of the tests: every test that needs a tile on disk
    calls it, so all of them are written the same way (a real CRS and
    geotransform, internal 64 x 64 blocks).

    Args:
        path: Where to write; missing parent folders are created.
        data: Pixels, band first; its dtype is the file's.
        crs: The CRS; ``None`` writes a tile without one (and without a
            geotransform unless ``transform`` is given).
        transform: The geotransform; default: north-up from ``origin`` (the
            top-left corner) with square ``pixel_size`` pixels.
        origin: Top-left corner, used when ``transform`` is None.
        pixel_size: Pixel size in CRS units, used when ``transform`` is None.
        nodata: The nodata value, or None.
        tiled: Internal blocks of ``blocksize``; False writes 4-row strips.
        blocksize: Block width and height when ``tiled``.
        compress: GDAL compression (``"deflate"``, ...), or None for none.
        mask: An internal (per-dataset) mask, 255 valid / 0 invalid, [H, W],
            written as NAIP COGs carry theirs (``GDAL_TIFF_INTERNAL_MASK``).
    """
    count, height, width = data.shape
    profile: dict = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
    }
    if compress is not None:
        profile["compress"] = compress
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = transform or from_origin(*origin, pixel_size, pixel_size)
    elif transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    else:
        profile.update(tiled=False, blockysize=4)
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=mask is not None):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(mask)
    return str(path)


def noise_tiles(folder, n=2, size=200, seed=0, count=3, dtype="uint8") -> list[str]:
    """``n`` side-by-side tiles of seeded noise on one UTM grid (west to east)."""
    rng = np.random.default_rng(seed)
    high = 255 if dtype == "uint8" else 4095
    paths = []
    for i in range(n):
        data = rng.integers(0, high, (count, size, size)).astype(dtype)
        paths.append(
            write_geotiff(
                folder / f"t{i}.tif", data, transform=from_origin(X0 + i * size * RES, Y0, RES, RES)
            )
        )
    return paths


def write_footprints(path, geoms, ids, classes=None, regions=None, crs=UTM, driver="GPKG") -> str:
    """Writes polygons with ``id``/``building``/``region`` attributes via pyogrio."""
    fields, values = ["id"], [np.array(ids, dtype=object)]
    if classes is not None:
        fields.append("building")
        values.append(np.array(classes, dtype=object))
    if regions is not None:
        fields.append("region")
        values.append(np.array(regions, dtype=object))
    pyogrio.raw.write(
        str(path),
        np.array(shapely.to_wkb(geoms), dtype=object),
        values,
        fields=fields,
        geometry_type="Unknown",
        crs=crs,
        driver=driver,
    )
    return str(path)


def read_shards(pattern: str) -> list:
    """Every chip record in the shards matching ``pattern``, decoded."""
    import glob

    import tensorflow as tf

    from footprints import contracts

    chips = []
    for path in sorted(glob.glob(pattern)):
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            chips.append(contracts.decode_chip(record.numpy()))
    return chips


def decode_png(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> H x W x C uint8."""
    import io

    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[..., None] if arr.ndim == 2 else arr


def footprint_rows(rows, crs):
    """``rows`` (footprint_id, tile, area_m2, mean_probability, geometry WKB) completed
    with the provenance columns of ``footprints.contracts.FOOTPRINTS_SCHEMA``."""
    import shapely

    from pipeline.writers.geo import lonlat_centroids

    lon, lat = lonlat_centroids([shapely.from_wkb(r["geometry"]) for r in rows], crs)
    return [
        {
            **r,
            "centroid_lon": float(x),
            "centroid_lat": float(y),
            "segmenter_model_id": "segmenter",
            "run_id": "test-run",
        }
        for r, x, y in zip(rows, lon, lat, strict=True)
    ]
