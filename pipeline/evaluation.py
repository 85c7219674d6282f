"""Segmentation measured the way the field measures it: pixel IoU and object F1.

Two measures, against true masks (``--truth-masks``) or true polygons
(``--truth-footprints``, any CRS, reprojected):

* **Pixel IoU** per tile and overall (:func:`mask_iou`,
  :func:`footprint_iou`). Masks and truths are paired by their grid (same
  CRS, geotransform and size), not by name, so truth masks can be named
  however their producer likes. A pixel counts where the predicted mask is
  valid (not nodata): predicted building is ``probability >= threshold``,
  true building is a truth value above 0 (or a pixel whose centre lies in a
  true polygon).
* **Object precision, recall and F1 at IoU >= 0.5** (:func:`match_objects`,
  SpaceNet's building metric): each written footprint is matched to at most
  one true building and vice versa; a match is a true positive, an unmatched
  footprint a false positive, an unmatched true building a false negative.
  Candidate pairs come from an STRtree; pairs are taken greedily by IoU,
  highest first. At a threshold of 0.5 or more this greedy matching is
  also the optimal (Hungarian) one: two polygons that overlap a third by
  more than half of their union cannot both do so when they do not overlap
  each other, so every footprint has at most one candidate.

True masks become true buildings by the same tracing and cross-tile merging
as the predicted ones (:func:`pipeline.polygonize.polygonize_tile`,
:func:`~pipeline.polygonize.merge_parts`), so a building cut by a tile edge
counts once on both sides.

Example:
    ``mask_iou(["out/masks/t0.tif"], ["area/masks/t0.tif"])`` ->
    ``{"iou": 0.83, "intersection": ..., "union": ..., "tiles": {"t0": 0.83}, ...}``;
    ``match_objects([box(0, 0, 2, 2)], [box(0, 0, 2, 1.8), box(5, 5, 6, 6)])`` ->
    ``precision 1.0, recall 0.5, f1 0.667``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from footprints.errors import InputError
from footprints.tiles import scene_of
from pipeline.polygonize import Footprint, merge_parts, polygonize_tile, to_crs
from pipeline.sources.vectors import check_polygon, inspect_vector, read_range
from pipeline.values import threshold_uint8
from pipeline.writers.files import join
from pipeline.writers.tables import geoparquet_schema

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

#: A mask's grid: (CRS, rounded geotransform, height, width).
Grid = tuple[str | None, tuple[float, ...], int, int]
#: A mask's truth (bool, on its grid), or None when it has none.
TruthOf = Callable[["DatasetReader"], "np.ndarray | None"]


def _grid(src: DatasetReader) -> Grid:
    # Rounded: the same grid written by two programs can differ in the last bits.
    return (
        src.crs.to_string() if src.crs else None,
        tuple(round(v, 9) for v in src.transform[:6]),
        src.height,
        src.width,
    )


def _pixel_iou(mask_paths: Sequence[str], threshold: float, truth_of: TruthOf) -> dict[str, Any]:
    """Pixel IoU over ``mask_paths``; ``truth_of(src)`` gives a mask's truth or None."""
    import rasterio

    level = threshold_uint8(threshold)
    inter_total = union_total = 0
    tiles: dict[str, float | None] = {}
    unmatched: list[str] = []
    for path in sorted(mask_paths):
        with rasterio.open(path) as src:
            valid = src.read_masks(1) > 0
            truth = truth_of(src)
            if truth is None:
                unmatched.append(path)
                continue
            predicted = (src.read(1) >= level) & valid
        truth = truth & valid
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
    }


def mask_iou(
    mask_paths: Sequence[str], truth_paths: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
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

    truths: dict[Grid, str] = {}
    for path in truth_paths:
        with rasterio.open(path) as src:
            truths[_grid(src)] = path
    used: set[Grid] = set()

    def truth_of(src: DatasetReader) -> np.ndarray | None:
        grid = _grid(src)
        if grid not in truths:
            return None
        used.add(grid)
        with rasterio.open(truths[grid]) as truth:
            found: np.ndarray = truth.read(1) > 0
            return found

    result = _pixel_iou(mask_paths, threshold, truth_of)
    result["unmatched_truths"] = sorted(p for g, p in truths.items() if g not in used)
    return result


def footprint_iou(
    mask_paths: Sequence[str],
    polygons: Sequence[shapely.Geometry],
    crs: str,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Pixel IoU of masks against true polygons (in ``crs``), burnt onto each mask's grid.

    A pixel is a true building when its centre lies in a true polygon (GDAL's
    rasterization rule), so a truth drawn on a mask's own pixel edges burns
    to exactly those pixels. Masks no polygon touches are measured too
    (their truth is empty); masks without a CRS are listed as unmatched.
    """
    from rasterio import features

    tree = shapely.STRtree(list(polygons))

    def truth_of(src: DatasetReader) -> np.ndarray | None:
        if src.crs is None:
            return None
        # The mask's bounds in the truth's CRS select candidates; they are
        # then reprojected to the mask's CRS to be burnt.
        left, bottom, right, top = src.bounds
        outline = to_crs(
            shapely.box(left, bottom, right, top).segmentize((right - left) / 8),
            src.crs.to_string(),
            crs,
        )
        near = [polygons[i] for i in tree.query(outline, predicate="intersects")]
        if not near:
            return np.zeros((src.height, src.width), bool)
        placed = [to_crs(g, crs, src.crs.to_string()) for g in near]
        burnt: np.ndarray = (
            features.rasterize(
                placed, out_shape=(src.height, src.width), transform=src.transform, dtype="uint8"
            )
            > 0
        )
        return burnt

    result = _pixel_iou(mask_paths, threshold, truth_of)
    result["unmatched_truths"] = []
    return result


# --------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------

IOU_THRESHOLD = 0.5
TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = "true_positive", "false_positive", "false_negative"


def match_objects(
    predicted: Sequence[shapely.Geometry] | np.ndarray,
    truth: Sequence[shapely.Geometry] | np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(predicted index, truth index, IoU)`` with IoU >= the threshold.

    Greedy by IoU, highest first, over the pairs an STRtree finds
    intersecting (ties broken by the indices, so the result is
    deterministic); see the module docstring for why this is optimal at 0.5.
    """
    if not len(predicted) or not len(truth):
        return []
    predicted = np.asarray(predicted, dtype=object)
    truth = np.asarray(truth, dtype=object)
    left, right = shapely.STRtree(truth).query(predicted, predicate="intersects")
    if not len(left):
        return []
    inter = shapely.area(shapely.intersection(predicted[left], truth[right]))
    union = shapely.area(predicted[left]) + shapely.area(truth[right]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    order = np.lexsort((right, left, -iou))
    used_p: set[int] = set()
    used_t: set[int] = set()
    matches: list[tuple[int, int, float]] = []
    for k in order:
        if iou[k] < iou_threshold:
            break
        i, j = int(left[k]), int(right[k])
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        matches.append((i, j, float(iou[k])))
    return sorted(matches)


def object_scores(
    n_predicted: int,
    n_truth: int,
    matches: Sequence[tuple[int, int, float]],
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """Precision, recall and F1 of a matching (None where undefined: nothing to divide)."""
    tp = len(matches)
    fp, fn = n_predicted - tp, n_truth - tp
    precision = tp / n_predicted if n_predicted else None
    recall = tp / n_truth if n_truth else None
    f1 = (2 * tp / (2 * tp + fp + fn)) if (tp + fp + fn) else None
    return {
        "iou_threshold": iou_threshold,
        "matching": "one-to-one, greedy by IoU (optimal at IoU >= 0.5)",
        "predicted": n_predicted,
        "truth": n_truth,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_matched_iou": float(np.mean([m[2] for m in matches])) if matches else None,
    }


def truth_from_masks(truth_paths: Sequence[str], crs: str | None) -> list[shapely.Geometry]:
    """True buildings traced from true masks, merged across tiles, in ``crs``.

    Raises:
        InputError: a mask has no CRS (its buildings could not be placed).
    """
    import rasterio

    whole: list[Footprint] = []
    parts: dict[str, list[Footprint]] = {}
    for path in sorted(truth_paths):
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(
                    f"truth mask {path!r} has no CRS; give it the CRS of its tile "
                    "(gdal_edit.py -a_srs EPSG:...)"
                )
            building = (src.read(1) > 0).astype(np.uint8) * 255
            traced = polygonize_tile(
                building, None, src.transform, 0.5, scene_of(path), src.crs.to_string()
            )
        for f in traced:
            (parts.setdefault(f.crs, []) if f.on_edge else whole).append(f)
    for group in parts.values():
        whole.extend(merge_parts(group))
    return [to_crs(f.geometry, f.crs, crs) for f in whole]


def read_truth_footprints(path: str, crs: str | None) -> tuple[list[shapely.Geometry], int]:
    """True polygons of a vector file (any format and CRS), in ``crs``.

    Returns:
        ``(polygons, rejected)``: unusable features (no geometry, not a
        polygon, invalid) are counted, not silently used.

    Raises:
        InputError: the file cannot be read or has no CRS.
    """
    info = inspect_vector(path, None, None, None)
    wkbs, _ = read_range(path, 0, info.features, [])
    polygons: list[shapely.Geometry] = []
    rejected = 0
    for wkb in wkbs:
        geom, _, _ = check_polygon(wkb)
        if geom is None:
            rejected += 1
            continue
        polygons.extend(shapely.get_parts(to_crs(geom, info.crs, crs)))
    return polygons, rejected


def _read_footprints(
    files: Sequence[str],
) -> tuple[list[shapely.Geometry], list[str], list[str]]:
    """(geometries, footprint ids, tiles) of a ``footprints/`` table's files."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    geoms: list[shapely.Geometry] = []
    ids: list[str] = []
    tiles: list[str] = []
    for path in sorted(files):
        with FileSystems.open(path) as f:
            table = pq.read_table(f, columns=["footprint_id", "tile", "geometry"])
        geoms.extend(shapely.from_wkb(table.column("geometry").to_pylist()))
        ids.extend(table.column("footprint_id").to_pylist())
        tiles.extend(table.column("tile").to_pylist())
    return geoms, ids, tiles


OBJECTS_FILE = "truth/objects.parquet"


def _write_objects(path: str, rows: list[dict[str, Any]], crs: str | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    schema = geoparquet_schema(
        pa.schema(
            [
                pa.field("status", pa.string(), nullable=False),
                pa.field("footprint_id", pa.string()),
                pa.field("truth_index", pa.int64()),
                pa.field("tile", pa.string()),
                pa.field("iou", pa.float64()),
                pa.field("geometry", pa.binary(), nullable=False),
            ]
        ),
        crs,
        ["Polygon", "MultiPolygon"],
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    tmp = f"{path}.tmp"
    with FileSystems.create(tmp) as f:
        pq.write_table(table, f)
    FileSystems.rename([tmp], [path])


def _tile_of(
    geometry: shapely.Geometry, tile_boxes: list[tuple[str, shapely.Geometry]]
) -> str | None:
    point = shapely.point_on_surface(geometry)
    return next((name for name, outline in tile_boxes if outline.covers(point)), None)


def _tile_boxes(
    mask_paths: Sequence[str], measured: set[str], crs: str | None
) -> list[tuple[str, shapely.Geometry]]:
    """``(scene, footprint of its mask in crs)`` of the measured tiles, sorted by path."""
    import rasterio

    boxes: list[tuple[str, shapely.Geometry]] = []
    for path in sorted(mask_paths):
        with rasterio.open(path) as src:
            if src.crs is not None and scene_of(path) in measured:
                boxes.append(
                    (scene_of(path), to_crs(shapely.box(*src.bounds), src.crs.to_string(), crs))
                )
    return boxes


def _object_rows(
    predicted: list[shapely.Geometry],
    ids: list[str],
    tiles: list[str],
    truth: list[shapely.Geometry],
    truth_tiles: Sequence[str | None],
    matches: list[tuple[int, int, float]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """``truth/objects.parquet`` rows and their counts per tile.

    A row per footprint (true or false positive) and per unmatched true
    building (false negative), as :func:`match_objects` paired them.
    """
    by_tile: dict[str, dict[str, int]] = {}

    def tally(tile: str | None, key: str) -> None:
        if tile is not None:
            counts = by_tile.setdefault(
                tile, {TRUE_POSITIVE: 0, FALSE_POSITIVE: 0, FALSE_NEGATIVE: 0}
            )
            counts[key] += 1

    rows: list[dict[str, Any]] = []
    matched_p = {i: (j, iou) for i, j, iou in matches}
    matched_t = {j for _, j, _ in matches}
    for i, geom in enumerate(predicted):
        status = TRUE_POSITIVE if i in matched_p else FALSE_POSITIVE
        j, iou = matched_p.get(i, (None, None))
        tally(tiles[i], status)
        rows.append(
            {
                "status": status,
                "footprint_id": ids[i],
                "truth_index": j,
                "tile": tiles[i],
                "iou": iou,
                "geometry": shapely.to_wkb(geom),
            }
        )
    for j, geom in enumerate(truth):
        if j not in matched_t:
            tile = truth_tiles[j]
            tally(tile, FALSE_NEGATIVE)
            rows.append(
                {
                    "status": FALSE_NEGATIVE,
                    "footprint_id": None,
                    "truth_index": j,
                    "tile": tile,
                    "iou": None,
                    "geometry": shapely.to_wkb(geom),
                }
            )
    return rows, by_tile


def truth_summary(
    *,
    output: str,
    mask_paths: Sequence[str],
    footprint_files: Sequence[str],
    crs: str | None,
    threshold: float,
    truth_masks: Sequence[str] = (),
    truth_footprints: str | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """The ``truth`` section of a segment run's summary; writes ``truth/objects.parquet``.

    Args:
        output: The run's output folder.
        mask_paths: The masks the run wrote.
        footprint_files: The ``footprints/`` files the run wrote.
        crs: CRS of those footprints (the truth is brought to it).
        threshold: The run's mask threshold.
        truth_masks: True mask files (or, with ``truth_footprints``, none).
        truth_footprints: A vector file of true building polygons.
        iou_threshold: Object IoU at or above which a footprint matches.

    Returns:
        Pixel IoU (overall and per tile, :func:`mask_iou`), ``objects``
        (:func:`object_scores`), ``tile_objects`` (per tile: true/false
        positives, false negatives; a truth belongs to the tile holding its
        interior point), the truth's source and ``files``. Objects are
        counted only where the truth speaks: footprints of tiles with a
        truth, true buildings inside the segmented tiles.
    """
    if truth_footprints:
        if crs is None:
            raise ValueError("comparing with truth footprints needs the footprints' CRS")
        truth, rejected = read_truth_footprints(truth_footprints, crs)
        pixels = footprint_iou(mask_paths, truth, crs, threshold)
        source = {"kind": "footprints", "features": len(truth) + rejected, "rejected": rejected}
    else:
        pixels = mask_iou(mask_paths, truth_masks, threshold)
        truth = truth_from_masks(truth_masks, crs)
        source = {"kind": "masks", "files": len(truth_masks)}
    # Only where the truth speaks: footprints of tiles that have a truth,
    # true buildings inside the tiles that were segmented.
    measured = set(pixels["tiles"])
    boxes = _tile_boxes(mask_paths, measured, crs)
    predicted, ids, tiles = _read_footprints(footprint_files)
    kept = [i for i, tile in enumerate(tiles) if tile in measured]
    predicted, ids, tiles = (
        [predicted[i] for i in kept],
        [ids[i] for i in kept],
        [tiles[i] for i in kept],
    )
    truth_tiles = [_tile_of(g, boxes) for g in truth]
    truth = [g for g, tile in zip(truth, truth_tiles, strict=True) if tile is not None]
    truth_tiles = [tile for tile in truth_tiles if tile is not None]
    matches = match_objects(predicted, truth, iou_threshold)
    rows, by_tile = _object_rows(predicted, ids, tiles, truth, truth_tiles, matches)
    _write_objects(join(output, OBJECTS_FILE), rows, crs)
    return {
        **pixels,
        "source": source,
        "objects": object_scores(len(predicted), len(truth), matches, iou_threshold),
        "tile_objects": dict(sorted(by_tile.items())),
        "files": [OBJECTS_FILE],
    }
