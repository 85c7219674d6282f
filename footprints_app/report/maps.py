"""The report's maps: imagery with building masks and footprints, every one with a legend.

Two views of a segment run, both drawn from what the run wrote:

* :func:`mosaic` -- every tile of the area, read decimated (an overview
  read, not the whole tile), warped to lon/lat and placed by its bounds on
  one map, with the footprints drawn over it, coloured by a category
  (residential / non-residential / not classified, in the colours of the
  QGIS style; found / false / missed against the truth). Its axes are in
  degrees of longitude and latitude (never offset projected metres), its
  aspect is true at the map's centre, and a scale bar gives the distance;
* :func:`tile_panels` -- one panel per tile at a larger scale: imagery, the
  mask at the run's threshold tinted, and the same coloured footprints.

Tiles in another CRS than the map's are warped on the fly (``WarpedVRT``).
Footprints arrive as shapely geometries grouped by category; :data:`STYLES`
fixes each category's colour and legend text, so every map of every report
means the same thing by the same colour, and the classes' colours are
those of :mod:`footprints.styles`, which the exported QGIS style uses too.
Names from the data (tiles, regions) are drawn as plain text: the report is
built with matplotlib's math text off, so a ``$`` in a name is a dollar sign.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from footprints import styles
from footprints_app.report.plots import _figure, _png

WGS84 = "EPSG:4326"

#: category -> (edge colour, legend text). Against the truth: colour-blind safe
#: (Okabe-Ito); the classes: those of the exported QGIS style (footprints.styles).
STYLES = {
    "true_positive": ("#009e73", "found (true positive, IoU >= 0.5)"),
    "false_positive": ("#d55e00", "false positive (no true building)"),
    "false_negative": ("#0072b2", "missed (false negative, true building)"),
    **{c.key: (c.colour, c.label) for c in styles.CLASS_STYLES},
    "footprint": ("#ffd400", "footprint"),
}
_CLASS_KEYS = {c.key for c in styles.CLASS_STYLES}
MASK_COLOUR = (1.0, 0.1, 0.6)
MASK_LEGEND = "building mask (probability >= threshold)"


def _limits(img: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    values = img[:, valid] if valid.any() else img.reshape(img.shape[0], -1)
    return tuple(np.percentile(values, [1, 99])) if values.size else (0.0, 1.0)


def _stretch(img: np.ndarray, valid: np.ndarray, limits=None) -> np.ndarray:
    """[bands, H, W] raw values -> [H, W, 3] floats 0..1 (a 1-99% stretch over valid pixels).

    ``limits`` (low, high) fixes the stretch, so that the tiles of a mosaic
    share one and do not show as a patchwork of brightnesses.
    """
    img = img.astype(np.float32)
    low, high = limits or _limits(img, valid)
    img = np.clip((img - low) / max(high - low, 1e-6), 0, 1)
    img = np.moveaxis(img, 0, -1)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img[~valid] = 1.0  # nodata white, so it is not read as dark ground
    return img


def read_raw(path: str, out_shape: tuple[int, int], crs: str | None = None):
    """A tile read decimated to ``out_shape``: ``(bands [n, H, W], valid [H, W], bounds)``.

    Three bands (1-3) when the tile has them, else band 1; ``crs`` warps the
    tile to that CRS first (None: the tile's own).
    """
    import rasterio
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as src:
        if crs and src.crs and src.crs.to_string() != crs:
            with WarpedVRT(src, crs=crs) as vrt:
                return _read(vrt, out_shape)
        return _read(src, out_shape)


def _read(src, out_shape):
    bands = [1, 2, 3] if src.count >= 3 else [1]
    img = src.read(bands, out_shape=(len(bands), *out_shape))
    valid = src.read_masks(1, out_shape=out_shape) > 0
    return img, valid, tuple(src.bounds)


def read_rgb(path: str, out_shape: tuple[int, int], crs: str | None = None):
    """:func:`read_raw` stretched to RGB floats: ``(rgb [H, W, 3], bounds)``."""
    img, valid, bounds = read_raw(path, out_shape, crs)
    return _stretch(img, valid), bounds


def read_mask(
    path: str, out_shape: tuple[int, int], threshold: float, crs: str | None = None
) -> np.ndarray:
    """The building mask (probability >= threshold) of a mask COG, decimated: bool [H, W]."""
    import rasterio
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as src:
        if crs and src.crs and src.crs.to_string() != crs:
            with WarpedVRT(src, crs=crs) as vrt:
                prob = vrt.read(1, out_shape=out_shape)
        else:
            prob = src.read(1, out_shape=out_shape)
    return prob.astype(np.float32) / 255.0 >= threshold


def _draw_footprints(ax, layers: Mapping[str, Sequence], width: float) -> list:
    """Outlines of each category as one compound path; returns the legend handles."""
    from matplotlib.patches import Patch, PathPatch
    from matplotlib.path import Path

    handles = []
    for category, geoms in layers.items():
        colour, text = STYLES[category]
        rings = []
        for geom in geoms:
            for polygon in getattr(geom, "geoms", [geom]):
                for ring in (polygon.exterior, *polygon.interiors):
                    coords = np.asarray(ring.coords)
                    if len(coords) >= 3:
                        codes = np.full(len(coords), Path.LINETO, dtype=Path.code_type)
                        codes[0], codes[-1] = Path.MOVETO, Path.CLOSEPOLY
                        rings.append(Path(coords, codes))
        # The classes are filled as the QGIS style fills them; the truth's
        # categories lightly (a fill of the colour: thin outlines alone vanish
        # on a busy roof).
        alpha = styles.FILL_OPACITY if category in _CLASS_KEYS else 0.3
        if rings:
            ax.add_patch(
                PathPatch(
                    Path.make_compound_path(*rings),
                    facecolor=colour,
                    alpha=alpha,
                    edgecolor="none",
                )
            )
            ax.add_patch(
                PathPatch(
                    Path.make_compound_path(*rings),
                    facecolor="none",
                    edgecolor=colour,
                    linewidth=width,
                )
            )
        handles.append(
            Patch(
                facecolor=colour + f"{round(alpha * 255):02x}",
                edgecolor=colour,
                linewidth=2,
                label=f"{text} ({len(geoms)})",
            )
        )
    return handles


def _mask_overlay(rgb: np.ndarray, building: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[building] = 0.5 * out[building] + 0.5 * np.array(MASK_COLOUR)
    return out


def degrees(value: float, axis: str, decimals: int) -> str:
    """A longitude or latitude as map text: ``-93.25, "lon", 2`` -> ``"93.25°W"``."""
    letters = "EW" if axis == "lon" else "NS"
    return f"{abs(value):.{decimals}f}°{letters[0] if value >= 0 else letters[1]}"


def _decimals(span: float) -> int:
    """Decimals that tell ticks about a fifth of ``span`` degrees apart."""
    return int(min(6, max(0, math.ceil(-math.log10(max(span / 5, 1e-9))))))


def scale_length(width_m: float) -> float:
    """A round scale-bar length, about a fifth of the map's width: ``1200`` -> ``200``."""
    target = max(width_m / 5, 1e-3)
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _lonlat_axes(ax, left: float, bottom: float, right: float, top: float) -> None:
    """Degree ticks (no offset), a true aspect at the centre and a scale bar."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    lat = math.radians((bottom + top) / 2)
    ax.set_aspect(1 / max(math.cos(lat), 1e-6))
    for axis, name, span in ((ax.xaxis, "lon", right - left), (ax.yaxis, "lat", top - bottom)):
        axis.set_major_locator(MaxNLocator(5))
        digits = _decimals(span)
        axis.set_major_formatter(FuncFormatter(lambda v, _, n=name, d=digits: degrees(v, n, d)))
    metres_per_degree = 111_320.0 * math.cos(lat)
    length = scale_length((right - left) * metres_per_degree)
    text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.add_artist(
        AnchoredSizeBar(
            ax.transData,
            length / metres_per_degree,
            text,
            "lower left",
            pad=0.4,
            sep=3,
            color="black",
            frameon=True,
            size_vertical=(top - bottom) / 150,
            fontproperties={"size": 8},
        )
    )
    ax.tick_params(labelsize=7)
    ax.set_xlabel("longitude (WGS 84)", fontsize=8)
    ax.set_ylabel("latitude", fontsize=8)


def to_lonlat(layers: Mapping[str, Sequence], crs: str | None) -> dict[str, list]:
    """Every category's geometries moved from ``crs`` to lon/lat (EPSG:4326)."""
    from pipeline.writers import geo

    return {c: list(geo.to_lonlat(list(g), crs)) if len(g) else [] for c, g in layers.items()}


def mosaic(
    tiles: Sequence[tuple[str, str, str | None]],
    crs: str | None,
    layers: Mapping[str, Sequence],
    threshold: float,
    title: str,
    max_pixels: int = 1000,
    legend_below: bool = False,
) -> bytes:
    """The whole area on one lon/lat map: decimated imagery, masks tinted, footprints.

    Args:
        tiles: ``(name, raster path, mask path or None)`` of every tile (may be
            empty: then the footprints alone, on white).
        crs: The CRS of ``layers``' geometries; they and the tiles are drawn
            in lon/lat (EPSG:4326).
        layers: Category (a key of :data:`STYLES`) -> geometries in ``crs``.
        threshold: The run's mask threshold (for the tint).
        title: Figure title.
        max_pixels: Width or height of the mosaic's imagery, at most.
        legend_below: The legend under the map (a narrow figure), not beside it.
    """
    from matplotlib.patches import Patch

    layers = to_lonlat(layers, crs)
    placed = []
    for name, raster, mask in tiles:
        *_, bounds = read_raw(raster, (8, 8), WGS84)  # cheap: the bounds in lon/lat
        placed.append((name, raster, mask, bounds))
    boxes = [b for *_, b in placed]
    geoms = [g for group in layers.values() for g in group]
    if not boxes and geoms:
        import shapely

        boxes = [tuple(shapely.total_bounds(np.asarray(geoms, dtype=object)))]
    if not boxes:
        boxes = [(0.0, 0.0, 1.0, 1.0)]
    left = min(b[0] for b in boxes)
    bottom = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    top = max(b[3] for b in boxes)
    stretch = 1 / max(math.cos(math.radians((bottom + top) / 2)), 1e-6)
    aspect = (top - bottom) * stretch / max(right - left, 1e-12)
    width = 8.0 if legend_below else 9.0
    size = (
        (width, max(3.0, width * aspect) + 1.3)
        if legend_below
        else (
            width + 3.2,
            max(3.0, width * aspect),
        )
    )
    plt, fig, axes = _figure(1, 1, size)
    ax = axes[0, 0]
    scale = max_pixels / max(right - left, (top - bottom) * stretch, 1e-12)
    reads = []
    for _, raster, _, (x0, y0, x1, y1) in placed:
        shape = (max(2, round((y1 - y0) * stretch * scale)), max(2, round((x1 - x0) * scale)))
        img, valid, _ = read_raw(raster, shape, WGS84)
        reads.append((img, valid, shape))
    pooled = np.concatenate([img[:, valid] for img, valid, _ in reads], axis=1) if reads else None
    limits = tuple(np.percentile(pooled, [1, 99])) if pooled is not None and pooled.size else None
    for (name, _, mask, (x0, y0, x1, y1)), (img, valid, shape) in zip(placed, reads, strict=True):
        rgb = _stretch(img, valid, limits)
        if mask:
            rgb = _mask_overlay(rgb, read_mask(mask, shape, threshold, WGS84))
        ax.imshow(rgb, extent=(x0, x1, y0, y1), interpolation="nearest")
        ax.add_patch(_frame(x0, y0, x1, y1))
        if len(placed) <= 64:
            ax.text(
                x0 + 0.01 * (right - left),
                y1 - 0.01 * (top - bottom),
                name,
                fontsize=6,
                va="top",
                color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
            )
    handles = _draw_footprints(ax, layers, 0.9)
    if any(mask for _, _, mask, _ in placed):
        handles.insert(0, Patch(facecolor=MASK_COLOUR, alpha=0.5, label=MASK_LEGEND))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    _lonlat_axes(ax, left, bottom, right, top)
    ax.set_title(title, fontsize=10)
    where = (
        {"loc": "upper center", "bbox_to_anchor": (0.5, -0.07), "ncol": 2}
        if legend_below
        else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
    )
    ax.legend(handles=handles, fontsize=8, title="legend", title_fontsize=8, frameon=True, **where)
    return _png(plt, fig)


def _frame(x0, y0, x1, y1):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=0.5, linestyle=":"
    )


def tile_panels(
    tiles: Sequence[tuple[str, str, str | None, str]],
    crs: str | None,
    layers: Mapping[str, Sequence],
    threshold: float,
    size: int = 256,
    ncols: int = 4,
) -> bytes:
    """One panel per tile: imagery, mask tint, footprints; one legend for all panels.

    Args:
        tiles: ``(name, raster path, mask path or None, caption)`` per panel.
        crs: CRS of ``layers`` (tiles in another are warped to it).
        layers: Category -> geometries in ``crs`` (each panel shows those on it).
        threshold: The run's mask threshold.
        size: Pixels of each panel's longer side.
        ncols: Panels per row.
    """
    import shapely
    from matplotlib.patches import Patch

    ncols = min(ncols, max(1, len(tiles)))
    nrows = max(1, math.ceil(len(tiles) / ncols))
    height = 3.5 * nrows + 0.7
    plt, fig, axes = _figure(nrows, ncols, (3.1 * ncols, height))
    trees = {c: (shapely.STRtree(list(g)), list(g)) for c, g in layers.items() if len(g)}
    for ax in axes.flat:
        ax.axis("off")
    # The grid can have more panels than tiles; the spare ones stay blank.
    for ax, (name, raster, mask, caption) in zip(axes.flat, tiles, strict=False):
        *_, (x0, y0, x1, y1) = read_raw(raster, (8, 8), crs)  # the bounds in the map CRS
        shape = (size, max(2, round(size * (x1 - x0) / max(y1 - y0, 1e-12))))
        rgb, _ = read_rgb(raster, shape, crs)
        if mask:
            rgb = _mask_overlay(rgb, read_mask(mask, shape, threshold, crs))
        ax.imshow(rgb, extent=(x0, x1, y0, y1), interpolation="nearest")
        window = shapely.box(x0, y0, x1, y1)
        on_tile = {c: [geoms[i] for i in tree.query(window)] for c, (tree, geoms) in trees.items()}
        _draw_footprints(ax, on_tile, 1.2)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{name}\n{caption}" if caption else name, fontsize=8)
    handles = [Patch(facecolor=MASK_COLOUR, alpha=0.5, label=MASK_LEGEND)]
    handles += [
        Patch(
            facecolor=STYLES[c][0] + "4d", edgecolor=STYLES[c][0], linewidth=2, label=STYLES[c][1]
        )
        for c in layers
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=True
    )
    # Room for two-line titles above each panel and the legend below all.
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        top=1 - 0.45 / height,
        bottom=0.6 / height,
        hspace=0.45 / 3.0,
        wspace=0.05,
    )
    return _png(plt, fig, tight=False)
