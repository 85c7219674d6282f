"""Footprint outlines against the truth: traced, simplified, regularized.

A seeded sample area (``footprints_app.sample_area``, the demo's generator: real
CRS, 0.5 m pixels, rotated houses, L shapes, sheds, large flat roofs) gives
true building polygons and true masks. The masks stand in for a segmenter's
output twice:

* **exact**: the true masks as they are (what a perfect segmenter gives:
  pixel stairs only);
* **ragged**: each border pixel flipped with probability ``--flip`` (seeded),
  the ragged edge of a real segmenter's mask.

Each is traced and merged across tiles as ``footprints segment`` does
(:func:`pipeline.polygonize.polygonize_tile`,
:func:`~pipeline.polygonize.merge_parts`) and finished three ways
(:func:`pipeline.polygonize.finish`): **traced** (no simplification),
**simplified** (the default, one pixel) and **regularized**
(``--regularize``, right angles via buildingregulariser). Against the true
polygons it prints, per way: vertices per footprint (median and mean),
object F1 at IoU >= 0.5 and the mean IoU of matched buildings (one-to-one
matching, :func:`pipeline.evaluation.match_objects`), the median
absolute area error of matched buildings, and the time per footprint.

Usage::

    python benchmarks/footprint_quality.py --tiles 3x3 --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]


def _ragged(mask: np.ndarray, flip: float, rng: np.random.Generator) -> np.ndarray:
    """Flips border pixels (4-neighbour differs) with probability ``flip``."""
    padded = np.pad(mask, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    border = (
        (centre != padded[:-2, 1:-1])
        | (centre != padded[2:, 1:-1])
        | (centre != padded[1:-1, :-2])
        | (centre != padded[1:-1, 2:])
    )
    flips = border & (rng.random(mask.shape) < flip)
    return np.where(flips, ~mask, mask)


def _trace(mask_paths, flip: float, seed: int):
    import rasterio

    from footprints.tiles import scene_of
    from pipeline.polygonize import merge_parts, polygonize_tile

    rng = np.random.default_rng(seed)
    whole, parts = [], {}
    for path in sorted(mask_paths):
        with rasterio.open(path) as src:
            building = src.read(1) > 0
            if flip:
                building = _ragged(building, flip, rng)
            traced = polygonize_tile(
                building.astype(np.uint8) * 255,
                None,
                src.transform,
                0.5,
                scene_of(path),
                src.crs.to_string(),
            )
        for f in traced:
            (parts.setdefault(f.crs, []) if f.on_edge else whole).append(f)
    for group in parts.values():
        whole.extend(merge_parts(group))
    return whole


def _measure(footprints, truth, how: str, min_area: float) -> dict:
    import shapely

    from pipeline.evaluation import match_objects, object_scores
    from pipeline.polygonize import finish

    started = time.perf_counter()
    rows = [
        finish(f, 0.0 if how == "traced" else 1.0, min_area, regularize_edges=how == "regularized")
        for f in footprints
    ]
    seconds = time.perf_counter() - started
    geoms = [shapely.from_wkb(r["geometry"]) for r in rows if r is not None]
    vertices = np.array(
        [sum(len(p.exterior.coords) - 1 for p in shapely.get_parts(g)) for g in geoms]
    )
    matches = match_objects(geoms, truth)
    scores = object_scores(len(geoms), len(truth), matches)
    area_error = [abs(geoms[i].area - truth[j].area) / truth[j].area for i, j, _ in matches]
    return {
        "footprints": len(geoms),
        "vertices_median": float(np.median(vertices)),
        "vertices_mean": float(vertices.mean()),
        "f1": scores["f1"],
        "mean_iou": scores["mean_matched_iou"],
        "area_error_median": float(np.median(area_error)) if area_error else None,
        "ms_per_footprint": 1000 * seconds / max(1, len(footprints)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", default="3x3", help="sample area tiles, COLSxROWS")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flip",
        type=float,
        default=0.3,
        help="chance of flipping a border pixel in the ragged masks",
    )
    parser.add_argument("--min-area", type=float, default=4.0, help="as segment's --min-area")
    args = parser.parse_args(argv)

    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area
    from pipeline.evaluation import read_truth_footprints

    cols, rows = (int(v) for v in args.tiles.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        area = generate_sample_area(
            tmp,
            SampleAreaConfig(seed=args.seed, tiles_x=cols, tiles_y=rows, tile_size=args.tile_size),
        )
        truth, _ = read_truth_footprints(area.footprints, area.crs)
        truth = [g for g in truth if g.area >= args.min_area]
        print(
            f"sample area seed {args.seed}: {cols}x{rows} tiles of {args.tile_size} px, "
            f"{len(truth)} true buildings >= {args.min_area} m2, CRS {area.crs}"
        )
        print(
            f"{'mask':8} {'outline':12} {'n':>5} {'vert med':>9} {'vert mean':>9} "
            f"{'F1@0.5':>7} {'mean IoU':>9} {'area err':>9} {'ms/fp':>7}"
        )
        for label, flip in (("exact", 0.0), ("ragged", args.flip)):
            footprints = _trace(area.masks, flip, args.seed)
            for how in ("traced", "simplified", "regularized"):
                m = _measure(footprints, truth, how, args.min_area)
                print(
                    f"{label:8} {how:12} {m['footprints']:5d} {m['vertices_median']:9.1f} "
                    f"{m['vertices_mean']:9.1f} {m['f1']:7.3f} {m['mean_iou']:9.3f} "
                    f"{m['area_error_median']:9.3f} {m['ms_per_footprint']:7.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
