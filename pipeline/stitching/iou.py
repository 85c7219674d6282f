"""Building IoU of written masks against true masks.

Masks and truths are paired by their grid (same CRS, geotransform and size),
not by name, so truth masks can be named however their producer likes (the
sample area writes ``masks/<tile>.tif`` next to its tiles; another source
may add a suffix). A pixel counts where the predicted mask is valid (not
nodata): predicted building is ``probability >= threshold``, true building is
a truth value above 0.

Example:
    ``mask_iou(["out/masks/t0.tif"], ["area/masks/t0.tif"])`` ->
    ``{"iou": 0.83, "intersection": ..., "union": ..., "tiles": {"t0": 0.83}, ...}``
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.keys import scene_of
from pipeline.stitching.cog import threshold_uint8


def _grid(src) -> tuple:
    # Rounded: the same grid written by two programs can differ in the last bits.
    return (src.crs.to_string() if src.crs else None, tuple(round(v, 9) for v in src.transform[:6]),
            src.height, src.width)


def mask_iou(mask_paths: Sequence[str], truth_paths: Sequence[str],
             threshold: float = 0.5) -> dict:
    """IoU of building pixels over all masks that have a truth on the same grid.

    Args:
        mask_paths: Masks written by the segment job (band 1: probability x 255).
        truth_paths: True masks (band 1: >0 building), one per tile grid.
        threshold: Probability at or above which a pixel is a building.

    Returns:
        ``{"iou", "intersection", "union", "threshold", "tiles": {scene: iou},
        "unmatched_masks": [...], "unmatched_truths": [...]}``; ``iou`` is
        None when no mask has a truth (or the union is empty).
    """
    import rasterio

    truths = {}
    for path in truth_paths:
        with rasterio.open(path) as src:
            truths[_grid(src)] = path
    level = threshold_uint8(threshold)
    inter_total = union_total = 0
    tiles: dict[str, float | None] = {}
    unmatched = []
    used = set()
    for path in sorted(mask_paths):
        with rasterio.open(path) as src:
            grid = _grid(src)
            if grid not in truths:
                unmatched.append(path)
                continue
            valid = src.read_masks(1) > 0
            predicted = (src.read(1) >= level) & valid
        used.add(grid)
        with rasterio.open(truths[grid]) as src:
            truth = (src.read(1) > 0) & valid
        inter = int(np.count_nonzero(predicted & truth))
        union = int(np.count_nonzero(predicted | truth))
        inter_total += inter
        union_total += union
        tiles[scene_of(path)] = inter / union if union else None
    return {
        "iou": inter_total / union_total if union_total else None,
        "intersection": inter_total,
        "union": union_total,
        "threshold": threshold,
        "tiles": tiles,
        "unmatched_masks": unmatched,
        "unmatched_truths": sorted(p for g, p in truths.items() if g not in used),
    }
