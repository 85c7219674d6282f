"""One way to read an orthophoto tile's header, for every command.

``footprints prepare`` (chips under footprints), ``footprints segment``
(masks of whole tiles) and ``footprints train segmenter`` (patches of tiles)
all start by opening each GeoTIFF once and asking the same questions: can
GDAL open it, are its bands of one data type, can it be read to its last
block (a truncated download fails there, at the price of one block), has it
a CRS and a north-up geotransform. :func:`read_header` asks them in that
order and returns a :class:`TileInfo`, a small frozen, picklable value the
jobs pass around as a side input or a PCollection element; or it raises
:class:`TileRejected` with one reason code from
:class:`footprints.errors.Reason`, so a bad tile gets the same code in every
command's ``errors/`` table. :func:`check_for_model` adds what a segmenter
needs on top (its bands and their dtype).

CRS text is normalised one way, by :func:`crs_text`: ``EPSG:nnnn`` when
the CRS has an EPSG code, else another authority's ``AUTH:CODE``, else WKT;
rasterio, pyproj and GeoParquet metadata all read it back.

The module sits in the floor package because ``pipeline`` and
``model_training`` both use it; rasterio and pyproj are imported inside the
functions, so importing it stays cheap.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from footprints.contracts import Rejected, SegmenterAssets
from footprints.errors import InputError, Reason

if TYPE_CHECKING:
    from affine import Affine
    from shapely import Polygon

__all__ = [
    "TileInfo",
    "TileRejected",
    "check_for_model",
    "crs_text",
    "first_crs",
    "read_header",
    "readable_headers",
    "scene_of",
]


def scene_of(path: str) -> str:
    """The scene name of a raster path: its base name without the extension.

    Example: ``gs://bucket/area/tile_0_1.tif`` -> ``tile_0_1``.
    """
    base = posixpath.basename(path.rstrip("/"))
    stem, _ = posixpath.splitext(base)
    return stem or base


def crs_text(crs: Any) -> str:
    """The CRS as text: ``EPSG:nnnn`` if it has an EPSG code, else ``AUTH:CODE``, else WKT.

    Takes a rasterio CRS, a pyproj CRS, PROJJSON or any text pyproj reads.
    """
    import pyproj

    crs = pyproj.CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    authority = crs.to_authority()
    return ":".join(authority) if authority else crs.to_wkt()


@dataclasses.dataclass(frozen=True)
class TileInfo:
    """The header of one orthophoto tile, as :func:`read_header` found it.

    Attributes:
        path: Where the raster is.
        crs: Its CRS, as :func:`crs_text` writes it.
        transform: The affine geotransform as a 6-tuple ``(a, b, c, d, e, f)``.
        width: Columns.
        height: Rows.
        count: Bands.
        dtype: Pixel type of the bands (one for all; ``uint8``, ``uint16``, ...).
        nodata: The nodata value, or None.
        block_shape: The internal block ``(rows, cols)`` of band 1.
        masked: Whether some pixels may be invalid (a nodata value, an
            internal mask or an alpha band); if not, masks need not be read.
        descriptions: The band descriptions (``""`` where a band has none).
        scene: The tile's name, unique in a segment run (``masks/<scene>.tif``);
            :func:`scene_of` its path unless given.
    """

    path: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None = None
    block_shape: tuple[int, int] = (256, 256)
    masked: bool = True
    descriptions: tuple[str, ...] = ()
    scene: str = ""

    def __post_init__(self) -> None:
        """Fills ``scene`` from the path when it was not given."""
        if not self.scene:
            object.__setattr__(self, "scene", scene_of(self.path))

    @property
    def affine(self) -> Affine:
        """The geotransform as an :class:`affine.Affine`."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel width and height, in CRS units."""
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def pixel_size(self) -> float:
        """The larger side of a pixel, in CRS units."""
        return max(self.resolution)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` in the tile's CRS."""
        a = self.affine
        x0, y0 = a @ (0, 0)
        x1, y1 = a @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def box(self) -> Polygon:
        """The tile's extent as a shapely polygon in its CRS."""
        import shapely

        return shapely.box(*self.bounds)


class TileRejected(Rejected, InputError):
    """A tile cannot be used; ``reason`` is its code for ``errors/``."""


def read_header(path: str) -> TileInfo:
    """Opens ``path`` once and checks what every job needs of a tile.

    Raises:
        TileRejected: ``unreadable`` (not a raster GDAL opens), ``dtype``
            (bands of different data types), ``truncated`` (cannot be read to
            its last block), ``no_crs``, ``no_transform`` or ``not_north_up``
            (rotated or south-up), in that order, each with how to fix it.
    """
    import rasterio

    try:
        src = rasterio.open(path)
    except Exception as exc:  # RasterioIOError, or OSError from a filesystem
        raise TileRejected(
            Reason.UNREADABLE,
            (
                f"{path!r} is not a raster GDAL can read ({exc}); pass only GeoTIFF (or other "
                "GDAL raster) tiles"
            ),
        ) from exc
    with src:
        return _check_open(src, path)


def _check_open(src: Any, path: str) -> TileInfo:
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    # Before the read: rasterio reads bands of mixed types in no single array.
    dtypes = sorted(set(src.dtypes))
    if len(dtypes) > 1:
        raise TileRejected(
            Reason.DTYPE,
            (
                f"{path!r} mixes band data types {dtypes}; convert it to one "
                f"(`gdal_translate -ot {dtypes[-1].capitalize()} SRC DST`)"
            ),
        )
    block_h, block_w = src.block_shapes[0]
    try:
        # The last block is the last thing written: reading it catches a
        # truncated download or copy for the price of one block. Before the CRS
        # check, because a cut-off file's header may be cut too (its CRS lost with it).
        row0 = ((src.height - 1) // block_h) * block_h
        col0 = ((src.width - 1) // block_w) * block_w
        src.read(window=Window(col0, row0, src.width - col0, src.height - row0))
    except Exception as exc:  # rasterio raises RasterioIOError, GDAL may raise others
        raise TileRejected(
            Reason.TRUNCATED,
            (
                f"{path!r} cannot be read to its end ({exc}); the file is probably truncated: "
                "copy or download it again"
            ),
        ) from exc
    if src.crs is None:
        raise TileRejected(
            Reason.NO_CRS,
            (
                f"{path!r} has no CRS; assign the one it was produced in, e.g. "
                "`rio edit-info --crs EPSG:26915 FILE` or `gdal_edit.py -a_srs EPSG:26915 FILE`"
            ),
        )
    transform = src.transform
    if transform.is_identity:
        raise TileRejected(
            Reason.NO_TRANSFORM,
            (
                f"{path!r} has no geotransform (pixel size and origin); georeference it, e.g. "
                "`gdal_edit.py -a_ullr ULX ULY LRX LRY FILE`"
            ),
        )
    if transform.b != 0 or transform.d != 0 or transform.e >= 0:
        raise TileRejected(
            Reason.NOT_NORTH_UP,
            (
                f"{path!r} has a rotated or south-up geotransform {tuple(transform)[:6]!r}; "
                "warp it north-up first: `gdalwarp SRC DST`"
            ),
        )
    masked = src.nodata is not None or any(
        MaskFlags.all_valid not in f for f in src.mask_flag_enums
    )
    return TileInfo(
        path=path,
        crs=crs_text(src.crs),
        transform=tuple(transform)[:6],
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=dtypes[0],
        nodata=src.nodata,
        block_shape=(int(block_h), int(block_w)),
        masked=masked,
        descriptions=tuple(d or "" for d in src.descriptions),
    )


def check_for_model(tile: TileInfo, assets: SegmenterAssets) -> None:
    """Checks a readable tile against a segmenter: the bands it reads and their dtype.

    Raises:
        TileRejected: ``band_count`` or ``dtype``, with how to fix it.
    """
    if max(assets.bands) > tile.count:
        raise TileRejected(
            Reason.BAND_COUNT,
            (
                f"{tile.path!r} has {tile.count} band(s) but the model reads bands "
                f"{assets.bands!r}; use tiles with at least {max(assets.bands)} bands or a "
                f"model trained on {tile.count}-band imagery"
            ),
        )
    if tile.dtype != assets.raw_dtype:
        raise TileRejected(
            Reason.DTYPE,
            (
                f"{tile.path!r} bands {assets.bands!r} are {tile.dtype} but the model's scaling "
                f"was fitted on {assets.raw_dtype}; convert the tiles (`gdal_translate -ot "
                f"{assets.raw_dtype.capitalize()} -scale ...`) or use a model for {tile.dtype}"
            ),
        )


def readable_headers(paths: Sequence[str]) -> list[TileInfo]:
    """The headers of those of ``paths`` that pass :func:`read_header`, in order.

    For decisions made before a job starts (one 8-bit stretch for the run,
    the output CRS); the job itself dead-letters the tiles skipped here.
    """
    return [tile for tile in map(_header_or_none, paths) if tile is not None]


def first_crs(paths: Sequence[str], limit: int = 20) -> str | None:
    """The CRS of the first usable tile among the first ``limit`` of ``paths``."""
    tiles = (_header_or_none(path) for path in paths[:limit])
    return next((tile.crs for tile in tiles if tile is not None), None)


def _header_or_none(path: str) -> TileInfo | None:
    try:
        return read_header(path)
    except TileRejected:
        return None
