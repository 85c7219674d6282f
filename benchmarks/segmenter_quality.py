"""Held-out quality of the segmenter trained with DEFAULTS on a real-like tile.

What a new user does with a real orthophoto, on a tile whose truth is known:

1. generate a real-like tile (:mod:`footprints_app.sample_area.reallike`: one
   12-bit band, sensor noise, off-nadir lean, shadows, trees over roofs, a
   nodata collar, labels in EPSG:4326) as two halves, ``west`` and ``east``,
   about 40 buildings each;
2. ``footprints train segmenter`` on the west half with no flag but the
   inputs and ``--output`` (plus ``--seed``);
3. ``footprints segment`` (the real Beam pipeline: windows with a halo,
   RunInference, stitching, polygonize) on the east half, never seen in
   training;
4. measure against the east half's truth: pixel building IoU over valid
   pixels (from the written mask COG, thresholded at 0.5), and object
   precision, recall and F1 at IoU >= 0.5 (each predicted footprint matched
   to at most one true footprint, greedily by IoU, SpaceNet-style) on the
   GeoParquet footprints the pipeline wrote.

Prints the figures, the training wall time, the CPU seconds the training
process used (user + system, children included), steps, seconds per step,
and the machine (CPU count, load average before and after: on a shared
machine the wall time grows with the load, the CPU seconds much less).

Usage::

    python benchmarks/segmenter_quality.py --seeds 0 --work /tmp/segq
    python benchmarks/segmenter_quality.py --seeds 0,1 --work /tmp/segq   # the spread
    python benchmarks/segmenter_quality.py --seeds 0 --model OLD/model     # another model
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import rasterio
import shapely

from footprints_app.sample_area.reallike import RealLikeConfig, generate_real_like


def _cli(args: list[str]) -> tuple[float, float]:
    """Runs ``footprints`` in a child process; returns its wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "footprints_app.cli", *args],
        check=True,
        stdout=subprocess.DEVNULL if "--quiet" in args else None,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def pixel_iou(mask_cog: str, truth_tif: str, threshold: float = 0.5) -> float:
    """Building IoU of the probability band (x255) against a 0/1 truth mask, valid pixels."""
    with rasterio.open(mask_cog) as src:
        prob = src.read(1, masked=True)
    with rasterio.open(truth_tif) as src:
        truth = src.read(1) > 0
    valid = ~np.ma.getmaskarray(prob)
    pred = (prob.filled(0) > threshold * 255) & valid
    truth &= valid
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union else 1.0


def object_scores(predicted: np.ndarray, truth: np.ndarray, min_iou: float = 0.5) -> dict:
    """Precision, recall and F1 of polygons matched one-to-one at IoU >= ``min_iou``."""
    tree = shapely.STRtree(truth)
    pairs = []
    for i, geom in enumerate(predicted):
        for j in tree.query(geom, predicate="intersects"):
            inter = shapely.area(shapely.intersection(geom, truth[j]))
            iou = inter / shapely.area(shapely.union(geom, truth[j]))
            if iou >= min_iou:
                pairs.append((iou, i, int(j)))
    used_p, used_t = set(), set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    tp = len(used_p)
    precision = tp / len(predicted) if len(predicted) else 0.0
    recall = tp / len(truth) if len(truth) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "matched": tp,
        "predicted": len(predicted),
        "true": len(truth),
    }


def _east_truth(area, crs) -> np.ndarray:
    from model_training.segmentation_data import FootprintRasterizer, read_footprints

    geoms, source = read_footprints(area.footprints)
    moved, _ = FootprintRasterizer(geoms, source)._in(crs)
    with rasterio.open(area.tiles[1]) as src:
        box = shapely.box(*src.bounds)
    return moved[shapely.within(shapely.centroid(moved), box)]


def _predicted(folder: str) -> tuple[np.ndarray, object]:
    import pyarrow.parquet as pq
    import pyproj

    files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
    geoms, crs = [], None
    for path in files:
        table = pq.read_table(path)
        geo = json.loads(table.schema.metadata[b"geo"])
        column = geo.get("primary_column", "geometry")
        crs = crs or geo["columns"][column].get("crs")
        geoms += [shapely.from_wkb(w) for w in table.column(column).to_pylist()]
    return np.array(geoms, dtype=object), (pyproj.CRS.from_json_dict(crs) if crs else None)


def run_once(seed: int, work: str, extra: list[str], trained: str | None = None) -> dict:
    """Generate, train with defaults (or take ``trained``), segment the held-out half,
    measure."""
    root = os.path.join(work, f"seed{seed}")
    area = generate_real_like(os.path.join(root, "area"), RealLikeConfig(seed=seed))
    load_before = os.getloadavg()
    train_wall = train_cpu = float("nan")
    if trained is None:
        model_dir = os.path.join(root, "segmenter", "model")
        train_wall, train_cpu = _cli(
            [
                "train",
                "segmenter",
                "--rasters",
                area.tiles[0],
                "--footprints",
                area.footprints,
                "--output",
                os.path.dirname(model_dir),
                "--seed",
                str(seed),
                "--overwrite",
                "--no-tensorboard",
                *extra,
            ]
        )
    else:
        model_dir = trained
    load_after = os.getloadavg()
    with open(os.path.join(model_dir, "assets", "model_card.json"), encoding="utf-8") as f:
        card = json.load(f)
    out = os.path.join(root, "segment-east")
    segment_wall, _ = _cli(
        ["segment", "--raster", area.tiles[1], "--model", model_dir, "--output", out]
    )
    mask = os.path.join(out, "masks", "east.tif")
    with rasterio.open(area.tiles[1]) as src:
        import pyproj

        crs = pyproj.CRS.from_user_input(src.crs)
    predicted, _ = _predicted(os.path.join(out, "footprints"))
    truth = _east_truth(area, crs)
    steps = card["training_data"].get("steps") or float("nan")
    return {
        "seed": seed,
        "heldout_pixel_iou": round(pixel_iou(mask, area.masks[1]), 4),
        "heldout_objects_at_iou_0.5": object_scores(predicted, truth),
        "validation_iou": card["validation_metrics"]["iou"],
        "splits": card.get("splits"),
        "steps": steps,
        "epochs_trained": card["epochs_trained"],
        "best_epoch": card["best_epoch"],
        "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1),
        "cpu_s_per_step": round(train_cpu / steps, 3),
        "wall_s_per_step": round(train_wall / steps, 3),
        "segment_wall_s": round(segment_wall, 1),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--work", default="/tmp/segmenter_quality", help="scratch folder")
    parser.add_argument(
        "--train-args",
        default="",
        help="extra flags for `train segmenter` (default: none, the defaults)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="skip training and measure this SavedModel (for example one "
        "trained on the west half by an older version)",
    )
    args = parser.parse_args(argv)
    extra = args.train_args.split()
    results = [run_once(int(s), args.work, extra, args.model) for s in args.seeds.split(",")]
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        json.dumps(
            {"machine": machine, "train_args": extra or "defaults", "runs": results}, indent=1
        )
    )
    ious = [r["heldout_pixel_iou"] for r in results]
    f1s = [r["heldout_objects_at_iou_0.5"]["f1"] for r in results]
    print(
        f"held-out pixel IoU: {min(ious):.3f}..{max(ious):.3f} over seeds {args.seeds}; "
        f"object F1@0.5: {min(f1s):.3f}..{max(f1s):.3f}; training CPU s: "
        f"{', '.join(str(r['train_cpu_s']) for r in results)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
