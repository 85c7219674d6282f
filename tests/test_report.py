"""report.html: built from a run's outputs, self-contained, and rendered by a real browser."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from raster_fixtures import noise_tiles, write_tile

from footprints import cli, contracts
from footprints.report import build_report, find_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _score_run(folder, n=200, seed=0):
    rng = np.random.default_rng(seed)
    (folder / "scores").mkdir(parents=True)
    (folder / "errors").mkdir()
    regions = np.where(np.arange(n) < n // 2, "county-a", "county-b")
    scores = rng.random(n).astype(np.float32)
    rows, summary_regions = [], {}
    for region, target in (("county-a", 0.3), ("county-b", 0.5)):
        idx = np.flatnonzero(regions == region)
        k = int(np.floor(target * len(idx) + 0.5))
        threshold = float(np.sort(scores[idx])[::-1][k - 1])
        summary_regions[region] = {"n": len(idx), "k": k, "target_fraction": target,
                                   "achieved_fraction": k / len(idx), "exact": True,
                                   "threshold": threshold}
        for i in idx:
            rows.append(dict(footprint_id=f"fp-{i}", region=region, score=float(scores[i]),
                             percentile=0.5, is_residential=bool(scores[i] >= threshold),
                             label=int(rng.random() < 0.4), threshold=threshold,
                             target_fraction=target, model_id="m1", run_id="r1",
                             geometry=None))
    pq.write_table(contracts.validate_rows(rows, contracts.SCORES_SCHEMA),
                   folder / "scores" / "part-00000-of-00001.parquet")
    errors = [contracts.ErrorRecord("chips-00001-of-00002.tfrecord", "fp-x", "decode",
                                    "undecodable_image", "not a PNG").to_row(),
              contracts.ErrorRecord("chips-00001-of-00002.tfrecord", "offset 1234", "read",
                                    "corrupt_record", "CRC mismatch").to_row()]
    pq.write_table(pa.Table.from_pylist(errors, schema=contracts.ERRORS_SCHEMA),
                   folder / "errors" / "part-00000-of-00001.parquet")
    (folder / "summary.json").write_text(json.dumps({
        "run": {"run_id": "r1", "model": str(folder / "no-model")},
        "regions": summary_regions,
        "totals": {"input_records": n + 2, "scored": n, "errors": 2, "reconciled": True,
                   "residential": sum(r["k"] for r in summary_regions.values())},
        "duplicates": {"count": 0}}))
    return folder


def _segment_run(folder, tmp_path):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    paths = noise_tiles(tiles, n=2, size=64)
    (folder / "masks").mkdir(parents=True)
    import rasterio

    for path in paths:
        with rasterio.open(path) as src:
            mask = np.zeros((1, 64, 64), np.uint8)
            mask[0, 10:30, 10:40] = 255
            write_tile(folder / "masks" / os.path.basename(path), mask, crs=src.crs,
                       transform=src.transform)
    (folder / "summary.json").write_text(json.dumps({
        "raster": str(tiles / "*.tif"),
        "tiles": {"matched": 2, "written": 2, "rejected": 0, "skipped_nodata": 0, "failed": 0},
        "windows": {"planned": 8, "inferred": 8, "nodata": 0, "failed": 0},
        "reconciliation": {"tiles_ok": True, "windows_ok": True},
        "footprints": {"count": 2}, "truth": {"iou": 0.71}}))
    return folder


def test_score_report_shows_regions_fractions_errors_and_accuracy(tmp_path):
    run = _score_run(tmp_path / "score")
    path = build_report(str(run))
    page = open(path, encoding="utf-8").read()
    assert find_runs(str(run)) == [("score", str(run))]
    for text in ("county-a", "county-b", "30.00%", "50.00%", "undecodable_image",
                 "CRC mismatch", "accuracy", "reconciles: yes"):
        assert text in page, text
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # histograms, matrix
    assert "http://" not in page and "https://" not in page  # nothing loaded from outside


def test_segment_report_has_thumbnails_coverage_and_iou(tmp_path):
    run = _segment_run(tmp_path / "seg", tmp_path)
    page = open(build_report(str(run)), encoding="utf-8").read()
    assert "0.710" in page and "Tiles reconcile: yes" in page
    assert len(re.findall(r"data:image/png;base64", page)) == 2  # thumbnails, coverage


def test_report_command(tmp_path, capsys):
    run = _score_run(tmp_path / "score")
    assert cli.main(["report", str(run), "--title", "County run"]) == 0
    assert str(run / "report.html") in capsys.readouterr().out
    assert "<h1>County run</h1>" in (run / "report.html").read_text()
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


def _chromium(args, tmp_path):
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chrome-profile'}",
         "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="Chromium not installed (quickstart.sh test installs it)")
def test_report_renders_with_its_images_in_headless_chromium(tmp_path):
    assert CHROMIUM, "CI must have Chromium: quickstart.sh test installs Debian's chromium"
    run = _score_run(tmp_path / "score")
    _segment_run(tmp_path / "score" / "segment", tmp_path)
    path = build_report(str(run))
    result = _chromium(["--dump-dom", f"file://{path}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    total = re.search(r'data-images-total="(\d+)"', result.stdout)
    loaded = re.search(r'data-images-loaded="(\d+)"', result.stdout)
    assert total and loaded, "the page's load handler did not run"
    assert int(total.group(1)) == 4 and loaded.group(1) == total.group(1)
    shot = tmp_path / "shot.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,1600", f"file://{path}"],
                       tmp_path)
    assert result.returncode == 0 and shot.exists()
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # not a blank page
