"""Held-out quality of ``footprints train segmenter`` on real imagery: a SpaceNet tile.

The data: the public ``solaris==0.4.0`` wheel on PyPI ships a labelled
SpaceNet sample, ``solaris/data/sample_geotiff.tif`` (900 x 900 px,
one panchromatic uint16 band at 0.5 m, UTM 16N, nodata 0) with its 43
building polygons ``geotiff_labels.geojson`` (imagery CC BY-SA 4.0, SpaceNet
on AWS). The wheel is fetched at run time into a cache folder
(``~/.cache/footprints-bench`` by default; ``$FOOTPRINTS_BENCH_CACHE``) and
never committed or installed: ``pip download --no-deps solaris==0.4.0``.
pip 24.1 and later refuse that wheel's malformed metadata
(``gdal (>=3.0.2geopandas>=0.7.0)``), so when the running pip is one of
those, a pip older than 24.1 is installed into a small virtual environment
in the cache and downloads it instead (the ordinary client, the registry
pip is configured with). The file is checked against its sha256 (pinned
below).

The protocol, every step through the project's own code paths:

1. **Folds.** 4-fold spatial cross-validation: each quadrant in turn is
   held out; the training tile is the whole tile with that quadrant set to
   nodata (so no pixel of it is read in training, and the training code's
   own validation split is cut from the other three), the test tile is the
   quadrant alone. Plus the west/east halves (train west, measure east), the
   experiment of issue 21.
2. **Train** with ``footprints train segmenter`` in a child process (the
   command users run; defaults unless ``--train-args``), timing its wall
   and CPU seconds (user + system of the child, from ``getrusage``: on a
   shared machine the wall time grows with the load, the CPU seconds much
   less).
3. **Measure** with ``footprints segment --truth-footprints`` on the test
   tile: the real inference (windows, halo, stitching, polygonize) and the
   project's metric (:mod:`pipeline.evaluation`): pixel building IoU
   over valid pixels and object precision/recall/F1 at IoU >= 0.5
   (SpaceNet's). The truth is the labels clipped to the test tile (a
   building cut by the quadrant's edge counts as its part inside, like the
   footprint the pipeline traces there); parts under 10 m^2 are dropped.
4. **Report** a table: per fold, the mean and spread (standard deviation,
   min..max) over the 4 folds at seed 0, over 3 seeds of fold 0, and the
   west/east result; ``--json`` writes all of it.

Usage::

    python benchmarks/real_tile.py --jobs 3              # defaults: 4 folds, 3 seeds, halves
    python benchmarks/real_tile.py --folds 0 --seeds 0 --no-halves   # one training
    python benchmarks/real_tile.py --train-args "--steps 600 --filters 8" --json out.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

WHEEL = "solaris-0.4.0-py3-none-any.whl"
WHEEL_SHA256 = "09445946221410ebb2ae807580cf7dea9fe3c9aa3bf045947b61a162d2d3a8df"
IMAGE = "solaris/data/sample_geotiff.tif"
LABELS = "solaris/data/geotiff_labels.geojson"
MIN_PART_M2 = 10.0
QUADRANTS = ("north-west", "north-east", "south-west", "south-east")


def default_cache() -> str:
    """``$FOOTPRINTS_BENCH_CACHE``, else ``~/.cache/footprints-bench``."""
    return os.environ.get("FOOTPRINTS_BENCH_CACHE", os.path.expanduser("~/.cache/footprints-bench"))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(python: str, cache: str, requirement: str = "solaris==0.4.0") -> None:
    """``pip download --no-deps REQUIREMENT`` into ``cache``; the caller checks the file."""
    subprocess.run(
        [python, "-m", "pip", "download", "--no-deps", requirement, "-d", cache],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fetch_wheel(cache: str) -> str:
    """The solaris wheel in ``cache``, downloaded with pip when missing."""
    path = os.path.join(cache, WHEEL)
    if os.path.exists(path) and _sha256(path) == WHEEL_SHA256:
        return path
    os.makedirs(cache, exist_ok=True)
    _pip_download(sys.executable, cache)
    if not os.path.exists(path):
        # pip >= 24.1 rejects the wheel's metadata ("Please use pip<24.1"): an older pip
        # in a virtual environment of its own, kept in the cache, downloads it.
        venv = os.path.join(cache, "pip-lt-24.1")
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            subprocess.run(
                [python, "-m", "pip", "install", "--quiet", "pip<24.1"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        _pip_download(python, cache)
    if not os.path.exists(path):
        raise SystemExit(
            f"could not download {WHEEL} with pip into {cache}; check that pip can reach "
            "the package index (pip download --no-deps solaris==0.4.0)"
        )
    if _sha256(path) != WHEEL_SHA256:
        os.remove(path)
        raise SystemExit(f"{path}: sha256 differs from {WHEEL_SHA256}; removed, run again")
    return path


def fetch_sample(cache: str) -> tuple[str, str]:
    """Paths of the sample GeoTIFF and its labels, extracted from the wheel."""
    image, labels = (os.path.join(cache, name) for name in (IMAGE, LABELS))
    if not (os.path.exists(image) and os.path.exists(labels)):
        with zipfile.ZipFile(fetch_wheel(cache)) as wheel:
            wheel.extractall(cache, [IMAGE, LABELS])
    return image, labels


def regions(height: int, width: int) -> dict[str, tuple[int, int, int, int]]:
    """Test regions ``(row, col, height, width)``: the four quadrants and the east half."""
    h2, w2 = height // 2, width // 2
    return {
        "north-west": (0, 0, h2, w2),
        "north-east": (0, w2, h2, width - w2),
        "south-west": (h2, 0, height - h2, w2),
        "south-east": (h2, w2, height - h2, width - w2),
        "east": (0, w2, height, width - w2),
    }


def write_fold(image: str, labels: str, region: tuple[int, int, int, int], folder: str) -> dict:
    """Writes the training tile (region blanked), the test tile and its truth."""
    from pipeline.evaluation import read_truth_footprints

    os.makedirs(folder, exist_ok=True)
    row, col, height, width = region
    with rasterio.open(image) as src:
        pixels = src.read()
        profile = src.profile
        nodata = src.nodata if src.nodata is not None else 0
        window = Window(col, row, width, height)
        test_transform = src.window_transform(window)
        test_box = shapely.box(*rasterio.windows.bounds(window, src.transform))
        crs = src.crs.to_string()
    train = pixels.copy()
    train[:, row : row + height, col : col + width] = nodata
    paths = {k: os.path.join(folder, f"{k}.tif") for k in ("train", "test")}
    profile.update(nodata=nodata, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(paths["train"], "w", **profile) as dst:
        dst.write(train)
    test_profile = {**profile, "width": width, "height": height, "transform": test_transform}
    with rasterio.open(paths["test"], "w", **test_profile) as dst:
        dst.write(pixels[:, row : row + height, col : col + width])
    polygons, _ = read_truth_footprints(labels, crs)
    parts = shapely.get_parts(shapely.intersection(np.array(polygons, object), test_box))
    parts = [p for p in parts if p.geom_type == "Polygon" and p.area >= MIN_PART_M2]
    paths["truth"] = os.path.join(folder, "truth.geojson")
    features = [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(p)}
        for p in parts
    ]
    epsg = rasterio.crs.CRS.from_string(crs).to_epsg()
    with open(paths["truth"], "w", encoding="utf-8") as f:
        json.dump(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
                "features": features,
            },
            f,
        )
    return {**paths, "test_buildings": len(parts)}


def _cli(args: list[str], log: str) -> tuple[int, float, float]:
    """Runs ``footprints`` in a child process; returns exit code, wall and CPU seconds.

    The CPU seconds are the child's own (user + system, from ``wait4``), so
    runs in parallel (``--jobs``) do not count each other's.
    """
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "footprints_app.cli", *args], stdout=out, stderr=out
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return child.returncode, wall, usage.ru_utime + usage.ru_stime


def run_fold(
    name: str,
    seed: int,
    image: str,
    labels: str,
    work: str,
    train_args: list[str],
    segment_args: list[str],
    reuse: bool = False,
) -> dict:
    """Trains on everything but ``name``'s region, segments that region, measures."""
    with rasterio.open(image) as src:
        region = regions(src.height, src.width)[name]
    folder = os.path.join(work, f"{name}-seed{seed}")
    fold = write_fold(image, labels, region, folder)
    model = os.path.join(folder, "segmenter")
    card_path = os.path.join(model, "model", "assets", "model_card.json")
    if reuse and os.path.exists(card_path):
        code, wall, cpu = 0, float("nan"), float("nan")
    else:
        code, wall, cpu = _cli(
            [
                "train",
                "segmenter",
                "--rasters",
                fold["train"],
                "--footprints",
                labels,
                "--output",
                model,
                "--seed",
                str(seed),
                "--overwrite",
                "--no-tensorboard",
                "--allow-weak-model",
                *train_args,
            ],
            os.path.join(folder, "train.log"),
        )
    if code != 0:
        raise SystemExit(f"training failed (exit {code}); see {folder}/train.log")
    with open(card_path, encoding="utf-8") as f:
        card = json.load(f)
    out = os.path.join(folder, "segment")
    code, seg_wall, _ = _cli(
        [
            "segment",
            "--raster",
            fold["test"],
            "--model",
            os.path.join(model, "model"),
            "--output",
            out,
            "--truth-footprints",
            fold["truth"],
            "--overwrite",
            *segment_args,
        ],
        os.path.join(folder, "segment.log"),
    )
    if code != 0:
        raise SystemExit(f"segment failed (exit {code}); see {folder}/segment.log")
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        truth = json.load(f)["truth"]
    objects = truth["objects"]
    return {
        "fold": name,
        "seed": seed,
        "pixel_iou": truth["iou"],
        "precision": objects["precision"] or 0.0,
        "recall": objects["recall"] or 0.0,
        "f1": objects["f1"] or 0.0,
        "test_buildings": objects["truth"],
        "predicted": objects["predicted"],
        "threshold": truth["threshold"],
        "validation_iou": card["validation_metrics"].get("iou"),
        "train_buildings": (card.get("splits") or {}).get("train", {}).get("buildings"),
        "validations": card.get("epochs_trained"),
        "best_validation": card.get("best_epoch"),
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "segment_wall_s": round(seg_wall, 1),
    }


def spread(rows: list[dict], key: str) -> dict:
    """Mean, standard deviation, min and max of ``key`` over ``rows``."""
    values = [float(r[key]) for r in rows]
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


KEYS = ("pixel_iou", "precision", "recall", "f1", "train_wall_s", "train_cpu_s")


def table(rows: list[dict], groups: dict[str, list[dict]]) -> str:
    """The printed table: one line per run, then mean +- sd (min..max) per group."""
    head = f"{'run':<24}" + "".join(f"{k:>14}" for k in KEYS)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['fold'] + ' seed ' + str(r['seed']):<24}" + "".join(f"{r[k]:>14.3f}" for k in KEYS)
        )
    for label, members in groups.items():
        if len(members) < 2:
            continue
        lines.append(
            f"{label:<24}"
            + "".join(
                f"{spread(members, k)['mean']:>8.3f}+-{spread(members, k)['sd']:<4.2f}"
                for k in KEYS
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--folds",
        default=",".join(str(i) for i in range(4)),
        help="quadrants to hold out, 0..3 (NW, NE, SW, SE) (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds", default="0,1,2", help="seeds of the first fold (default: %(default)s)"
    )
    parser.add_argument("--no-halves", action="store_true", help="skip the west/east run")
    parser.add_argument(
        "--train-args", default="", help="extra flags for `train segmenter` (default: none)"
    )
    parser.add_argument(
        "--segment-args", default="", help="extra flags for `segment` (default: none)"
    )
    parser.add_argument("--work", default="/tmp/real_tile", help="scratch folder")
    parser.add_argument(
        "--cache",
        default=default_cache(),
        help="where the solaris wheel is kept (default: %(default)s)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings run at once; each run's CPU seconds stay its own (default: 1)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure models already trained in --work again (e.g. with other --segment-args)",
    )
    args = parser.parse_args(argv)
    image, labels = fetch_sample(args.cache)
    train_args, segment_args = args.train_args.split(), args.segment_args.split()
    folds = [QUADRANTS[int(i)] for i in args.folds.split(",") if i != ""]
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    plan = [(f, seeds[0]) for f in folds] + [(folds[0], s) for s in seeds[1:]]
    if not args.no_halves:
        plan.append(("east", seeds[0]))
    load_before = os.getloadavg()[0]

    def one(run: tuple[str, int]) -> dict:
        name, seed = run
        row = run_fold(name, seed, image, labels, args.work, train_args, segment_args, args.reuse)
        print(json.dumps(row), flush=True)
        return row

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, plan))
    groups = {
        f"mean over {len(folds)} folds": [
            r for r in rows if r["fold"] in folds and r["seed"] == seeds[0]
        ],
        f"mean over {len(seeds)} seeds": [r for r in rows if folds and r["fold"] == folds[0]],
    }
    print(table(rows, groups))
    summary = {
        "data": f"{WHEEL} {IMAGE} (sha256 of wheel {WHEEL_SHA256[:12]})",
        "train_args": train_args or "defaults",
        "segment_args": segment_args or "defaults",
        "runs": rows,
        "groups": {g: {k: spread(m, k) for k in KEYS} for g, m in groups.items() if m},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
