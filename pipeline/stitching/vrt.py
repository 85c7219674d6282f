"""``masks/mosaic.vrt``: one virtual raster over every tile's mask.

What ``gdalbuildvrt -b 1`` would write (it is not a dependency, and the
format is small): the union of the masks' extents at the finest resolution
among them, one ``SimpleSource`` per mask, and a ``MaskBand`` built from the
masks' own per-dataset masks, so nodata stays nodata in the mosaic and areas
no tile covers are masked too. Paths are relative to the VRT, so the
``masks/`` folder can be moved or copied as a whole.

The mosaic is the probability alone, read as the COGs read: one band
(``building_probability``, colour interpretation gray) with scale 1/255 and
offset 0, so ``gdal_translate -unscale``, rasterio's ``scales`` and QGIS
give probabilities in [0, 1]. A ``--binary-mask`` run's second band stays in
each COG and is not mosaicked: a second band makes QGIS pick a multiband
(RGB) renderer, with the mask exposed as an alpha band beside them; one gray
band and its mask is drawn as one single-band gray layer with transparency
where no tile has data.

A VRT has one CRS. Masks are grouped by CRS: the largest group (ties broken
by CRS name) is ``mosaic.vrt``; each other group gets
``mosaic-<crs>.vrt`` (for example ``mosaic-EPSG_4326.vrt``).
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
from collections import defaultdict
from collections.abc import Sequence
from xml.sax.saxutils import escape

from pipeline.values import PROBABILITY_SCALE

MOSAIC = "mosaic.vrt"


@dataclasses.dataclass(frozen=True)
class MaskEntry:
    """A written mask, as the VRT needs it.

    Attributes:
        path: The mask file.
        crs: Its CRS (any string rasterio reads).
        transform: North-up geotransform ``(a, b, c, d, e, f)``.
        width: Columns.
        height: Rows.
        count: Bands.
        masked: Whether the file has an internal mask (some pixels nodata).
        block: The file's block size.
    """

    path: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    count: int
    masked: bool
    block: int = 512

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The mask's extent as ``(minx, miny, maxx, maxy)``."""
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f


def _crs_slug(crs: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", crs)[:40].strip("_") or "crs"


def group_by_crs(entries: Sequence[MaskEntry]) -> dict[str, list[MaskEntry]]:
    """VRT file name -> masks in it (see the module docstring)."""
    groups: dict[str, list[MaskEntry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.path):
        groups[entry.crs].append(entry)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {
        (MOSAIC if i == 0 else f"mosaic-{_crs_slug(crs)}.vrt"): members
        for i, (crs, members) in enumerate(ordered)
    }


def _axis_mapping(crs: str) -> str:
    # GDAL keeps geotransforms in (x=east/lon, y=north/lat) order; for a CRS
    # whose first axis is northing or latitude (EPSG:4326) the VRT must say so.
    import pyproj

    axes = pyproj.CRS.from_user_input(crs).axis_info
    return "2,1" if axes and axes[0].direction.lower() in ("north", "south") else "1,2"


def _source(
    entry: MaskEntry, band: str, vrt_dir: str, origin: tuple[float, float], res: tuple[float, float]
) -> str:
    a, _, c, _, e, f = entry.transform
    rel = posixpath.relpath(entry.path, vrt_dir) if vrt_dir else entry.path
    x_off, y_off = (c - origin[0]) / res[0], (origin[1] - f) / res[1]
    x_size, y_size = entry.width * abs(a) / res[0], entry.height * abs(e) / res[1]
    block = min(entry.block, entry.width), min(entry.block, entry.height)
    return (
        "      <SimpleSource>\n"
        f'        <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>\n'
        f"        <SourceBand>{band}</SourceBand>\n"
        f'        <SourceProperties RasterXSize="{entry.width}" RasterYSize="{entry.height}" '
        f'DataType="Byte" BlockXSize="{block[0]}" BlockYSize="{block[1]}"/>\n'
        f'        <SrcRect xOff="0" yOff="0" xSize="{entry.width}" ySize="{entry.height}"/>\n'
        f'        <DstRect xOff="{x_off:.10g}" yOff="{y_off:.10g}" xSize="{x_size:.10g}" '
        f'ySize="{y_size:.10g}"/>\n'
        "      </SimpleSource>\n"
    )


def mosaic_vrt_xml(
    entries: Sequence[MaskEntry], vrt_dir: str, band_names: Sequence[str] = ()
) -> str:
    """The VRT XML over band 1 of ``entries`` (all in one CRS), paths relative to ``vrt_dir``.

    Args:
        entries: The masks.
        vrt_dir: The folder the VRT is written to.
        band_names: The masks' band names; the first names the mosaic's band.

    Raises:
        ValueError: if ``entries`` is empty or mixes CRSs.
    """
    import rasterio.crs

    if not entries:
        raise ValueError("a mosaic needs at least one mask")
    if len({e.crs for e in entries}) != 1:
        raise ValueError("masks of one mosaic must share their CRS; use group_by_crs first")
    res = (min(abs(e.transform[0]) for e in entries), min(abs(e.transform[4]) for e in entries))
    bounds = [e.bounds for e in entries]
    left, bottom = min(b[0] for b in bounds), min(b[1] for b in bounds)
    right, top = max(b[2] for b in bounds), max(b[3] for b in bounds)
    # Rounded so that float noise in the origins does not add a column.
    width = max(1, math.ceil(round((right - left) / res[0], 6)))
    height = max(1, math.ceil(round((top - bottom) / res[1], 6)))
    crs = entries[0].crs
    wkt = rasterio.crs.CRS.from_user_input(crs).to_wkt()
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n',
        f'  <SRS dataAxisToSRSAxisMapping="{_axis_mapping(crs)}">{escape(wkt)}</SRS>\n',
        f"  <GeoTransform>{left!r}, {res[0]!r}, 0.0, {top!r}, 0.0, {-res[1]!r}</GeoTransform>\n",
    ]
    lines.append('  <VRTRasterBand dataType="Byte" band="1">\n')
    if band_names:
        lines.append(f"    <Description>{escape(band_names[0])}</Description>\n")
    lines += [
        "    <ColorInterp>Gray</ColorInterp>\n",
        "    <Offset>0</Offset>\n",
        f"    <Scale>{PROBABILITY_SCALE!r}</Scale>\n",
    ]
    lines += [_source(e, "1", vrt_dir, (left, top), res) for e in entries]
    lines.append("  </VRTRasterBand>\n")
    # The mask band: the masks' own internal masks, or all-valid (255) for
    # masks that have none; outside every mask, 0 (the VRT's initial value).
    lines.append('  <MaskBand>\n    <VRTRasterBand dataType="Byte">\n')
    for e in entries:
        if e.masked:
            lines.append(_source(e, "mask,1", vrt_dir, (left, top), res))
        else:
            lines.append(_constant_source(e, vrt_dir, (left, top), res))
    lines.append("    </VRTRasterBand>\n  </MaskBand>\n</VRTDataset>\n")
    return "".join(lines)


def _constant_source(
    entry: MaskEntry, vrt_dir: str, origin: tuple[float, float], res: tuple[float, float]
) -> str:
    # A ComplexSource with ScaleRatio 0 and offset 255 reads as all-valid
    # wherever this mask lies, without a mask in the file.
    simple = _source(entry, "1", vrt_dir, origin, res)
    return (
        simple.replace("<SimpleSource>", "<ComplexSource>")
        .replace("</SimpleSource>", "</ComplexSource>")
        .replace(
            "        <SrcRect",
            "        <ScaleOffset>255</ScaleOffset>\n"
            "        <ScaleRatio>0</ScaleRatio>\n        <SrcRect",
        )
    )


def write_mosaics(
    entries: Sequence[MaskEntry], masks_dir: str, band_names: Sequence[str] = ()
) -> list[str]:
    """Writes ``mosaic.vrt`` (and per-CRS VRTs if CRSs differ) into ``masks_dir``.

    Returns:
        The VRT paths written, ``mosaic.vrt`` first; none if there are no masks.
    """
    # Lazy: cog loads Beam's FileSystems and rasterio, which building the XML does not need.
    from pipeline.stitching.cog import write_bytes_atomic

    written = []
    for name, members in group_by_crs(entries).items():
        xml = mosaic_vrt_xml(members, masks_dir, band_names)
        written.append(
            write_bytes_atomic(
                posixpath.join(masks_dir, name), xml.encode("utf-8"), "application/xml"
            )
        )
    return written
