"""report.html: built from a run's outputs, self-contained, and rendered by a real browser."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from raster_fixtures import RES, UTM, X0, Y0, footprint_rows, noise_tiles, write_geotiff
from rasterio.transform import from_origin

from footprints import contracts
from footprints_app import cli
from footprints_app.report import build_report, find_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _score_run(folder, n=200, seed=0, model=None):
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
        summary_regions[region] = {
            "n": len(idx),
            "k": k,
            "target_fraction": target,
            "achieved_fraction": k / len(idx),
            "exact": True,
            "threshold": threshold,
        }
        # What the calibrated model expects (helper cls's fields): county-a
        # agrees with its target, county-b does not.
        summary_regions[region]["scores"] = {
            "expected_fraction": 0.31 if region == "county-a" else 0.41,
            "expected_sd": 0.03,
            "can_rank": True,
        }
        for i in idx:
            rows.append(
                dict(
                    footprint_id=f"fp-{i}",
                    region=region,
                    score=float(scores[i]),
                    percentile=0.5,
                    is_residential=bool(scores[i] >= threshold),
                    label=int(rng.random() < 0.4),
                    threshold=threshold,
                    target_fraction=target,
                    classifier_model_id="m1",
                    run_id="r1",
                    geometry=None,
                )
            )
    pq.write_table(
        contracts.validate_rows(rows, contracts.SCORES_SCHEMA),
        folder / "scores" / "part-00000-of-00001.parquet",
    )
    errors = [
        contracts.ErrorRecord(
            "chips-00001-of-00002.tfrecord", "fp-x", "decode", "undecodable_image", "not a PNG"
        ).to_row(),
        contracts.ErrorRecord(
            "chips-00001-of-00002.tfrecord", "offset 1234", "read", "corrupt_record", "CRC mismatch"
        ).to_row(),
    ]
    pq.write_table(
        pa.Table.from_pylist(errors, schema=contracts.ERRORS_SCHEMA),
        folder / "errors" / "part-00000-of-00001.parquet",
    )
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "job": "score",
                "run_id": "r1",
                "inputs": {"model": model or str(folder / "no-model")},
                "counts": {
                    "input_records": n + 2,
                    "scored": n,
                    "errors": 2,
                    "residential": sum(r["k"] for r in summary_regions.values()),
                },
                "reconciles": True,
                "checks": ["input_records == scored + errors"],
                "regions": summary_regions,
                "duplicates": {"count": 0},
            }
        )
    )
    return folder


def _model(folder, *, weak=False, kind="footprint-classifier"):
    """A model folder as training leaves it: model/assets/model_card.json and the curves PNG."""
    from PIL import Image

    assets = folder / "model" / "assets"
    assets.mkdir(parents=True)
    edges = np.linspace(0, 1, 16).tolist()
    mean = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    (assets / "model_card.json").write_text(
        json.dumps(
            {
                "model_type": kind,
                "metrics": {"auc": 0.55 if weak else 0.97},
                "quality": {
                    "weak": weak,
                    "reasons": ["AUC 0.55 < 0.6"] if weak else [],
                    "auc": 0.55 if weak else 0.97,
                    "ece": 0.031,
                    "ece_uncalibrated": 0.12,
                    "temperature": 1.7,
                    "reliability": {
                        "bin_edges": edges,
                        "mean_score": mean,
                        "fraction_positive": [min(1.0, m * 1.05) for m in mean],
                        "count": [10 + i for i in range(15)],
                    },
                },
                "splits": {
                    "train": {"buildings": 800, "chips": 800},
                    "validation": {"buildings": 200, "chips": 200},
                },
            }
        )
    )
    # A recognisable curves image: its bytes must reach the page unchanged.
    Image.fromarray(np.full((40, 60, 3), (10, 200, 30), np.uint8)).save(
        folder / "training_curves.png"
    )
    return str(folder / "model")


def _segment_run(folder, tmp_path, *, files=True, model=None):
    """A segment run's outputs of the agreed shapes: masks, footprints, truth/, summary.json."""
    import rasterio
    import shapely
    from shapely.geometry import box

    from pipeline.writers.tables import geoparquet_schema

    tiles = tmp_path / "tiles"
    tiles.mkdir(exist_ok=True)
    paths = noise_tiles(tiles, n=2, size=64)
    (folder / "masks").mkdir(parents=True)
    for path in paths:
        with rasterio.open(path) as src:
            mask = np.zeros((1, 64, 64), np.uint8)
            mask[0, 10:30, 10:40] = 255
            write_geotiff(
                folder / "masks" / os.path.basename(path),
                mask,
                crs=src.crs,
                transform=src.transform,
            )
    # A mask an earlier run left behind: not in `files`, so never shown.
    write_geotiff(
        folder / "masks" / "stale.tif",
        np.zeros((1, 64, 64), np.uint8),
        transform=from_origin(X0 + 5000, Y0, RES, RES),
    )
    x0, y0 = X0, Y0
    found = box(x0 + 5, y0 - 15, x0 + 20, y0 - 5)  # t0's mask rectangle, in metres
    false = box(x0 + 32 + 5, y0 - 15, x0 + 32 + 20, y0 - 5)  # on t1
    missed = box(x0 + 2, y0 - 30, x0 + 8, y0 - 24)
    (folder / "footprints").mkdir()
    rows = footprint_rows(
        [
            {
                "footprint_id": f"t{i}-000000",
                "tile": f"t{i}",
                "area_m2": g.area,
                "mean_probability": 1.0,
                "geometry": shapely.to_wkb(g),
            }
            for i, g in enumerate((found, false))
        ],
        UTM,
    )
    pq.write_table(
        contracts.validate_rows(
            rows, geoparquet_schema(contracts.FOOTPRINTS_SCHEMA, UTM, ["Polygon"])
        ),
        folder / "footprints" / "part-00000-of-00001.parquet",
    )
    (folder / "truth").mkdir()
    objects = pa.table(
        {
            "status": ["true_positive", "false_positive", "false_negative"],
            "footprint_id": ["t0-000000", "t1-000000", None],
            "truth_index": [0, None, 1],
            "tile": ["t0", "t1", "t0"],
            "iou": [0.93, None, None],
            "geometry": [shapely.to_wkb(g) for g in (found, false, missed)],
        }
    )
    pq.write_table(objects, folder / "truth" / "objects.parquet")
    summary = {
        "job": "segment",
        "inputs": {"raster": str(tiles / "*.tif"), "model": model, "mask_threshold": 0.5},
        "counts": {
            "tiles": {"matched": 2, "written": 2, "rejected": 0, "skipped_nodata": 0, "failed": 0},
            "windows": {"planned": 8, "inferred": 8, "nodata": 0, "failed": 0},
            "footprints": 2,
        },
        "reconciles": True,
        "checks": ["tiles.matched == ...", "windows.planned == ..."],
        "footprints": {"crs": UTM},
        "warnings": [
            {
                "code": "scores_cannot_rank",
                "message": "Scores in region area tie for 90% of footprints.",
            }
        ],
        "truth": {
            "iou": 0.71,
            "tiles": {"t0": 0.8, "t1": 0.6},
            "source": {"kind": "footprints", "features": 2, "rejected": 0},
            "tile_objects": {
                "t0": {"true_positive": 1, "false_positive": 0, "false_negative": 1},
                "t1": {"true_positive": 0, "false_positive": 1, "false_negative": 0},
            },
            "objects": {
                "iou_threshold": 0.5,
                "matching": "one-to-one, greedy by IoU",
                "predicted": 2,
                "truth": 2,
                "true_positives": 1,
                "false_positives": 1,
                "false_negatives": 1,
                "precision": 0.5,
                "recall": 0.5,
                "f1": 0.5,
                "mean_matched_iou": 0.93,
            },
            "files": ["truth/objects.parquet"],
        },
    }
    if files:
        summary["files"] = [
            "footprints/part-00000-of-00001.parquet",
            "masks/t0.tif",
            "masks/t1.tif",
            "truth/objects.parquet",
        ]
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _colour_share(png: bytes, hex_colour: str, tolerance: int = 40) -> float:
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return float((np.abs(rgb - target).sum(axis=-1) < tolerance).mean())


def _images(page):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_score_report_shows_regions_fractions_errors_and_accuracy(tmp_path):
    run = _score_run(tmp_path / "score")
    path = build_report(str(run))
    page = open(path, encoding="utf-8").read()
    assert find_runs(str(run)) == [("score", str(run))]
    for text in (
        "county-a",
        "county-b",
        "30.00%",
        "50.00%",
        "undecodable_image",
        "CRC mismatch",
        "accuracy",
        "reconciles: yes",
    ):
        assert text in page, text
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # histograms, matrix
    assert "http://" not in page and "https://" not in page  # nothing loaded from outside


def test_score_report_shows_what_the_model_expects_beside_the_target(tmp_path):
    model = _model(tmp_path / "models" / "classifier")
    run = _score_run(tmp_path / "score", model=model)
    page = open(build_report(str(run)), encoding="utf-8").read()
    assert "31% +/- 3%" in page and "41% +/- 3%" in page
    a, b = (page[page.index(f"<td>{r}</td>") :].split("</tr>")[0] for r in ("county-a", "county-b"))
    assert "agree" in a and "DISAGREE" not in a
    assert "DISAGREE: target +9% vs the model" in b
    assert 'alt="reliability diagram"' in page and "ECE" not in page.split("<h3>Model")[0]
    assert "quality ece" in page and "0.031" in page
    curves = (tmp_path / "models" / "classifier" / "training_curves.png").read_bytes()
    assert curves in _images(page)  # embedded as it is


def test_segment_report_measures_maps_links_and_every_tile(tmp_path):
    model = _model(tmp_path / "models" / "segmenter", kind="footprint-segmenter")
    run = _segment_run(tmp_path / "seg", tmp_path, model=model)
    page = open(build_report(str(run)), encoding="utf-8").read()
    assert "Counts reconcile: yes" in page
    # The measures and the per-tile table.
    for text in (
        "pixel IoU, all tiles",
        "0.710",
        "object F1",
        "missed (false negatives)",
        "<td>t0</td><td>0.800</td><td>1</td><td>0</td><td>1</td>",
        "<td>t1</td><td>0.600</td><td>0</td><td>1</td><td>0</td>",
    ):
        assert text in page, text
    # Relative links that resolve from the report's folder; nothing stale.
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert {
        "masks/t0.tif",
        "masks/t1.tif",
        "summary.json",
        "truth/objects.parquet",
        "footprints/part-00000-of-00001.parquet",
    } <= set(hrefs)
    assert all((run / h).exists() for h in hrefs)
    assert "stale" not in page
    # No absolute path of the machine: not the run folder, not the input tiles.
    assert str(tmp_path) not in page and "/tmp" not in page
    # Maps: the mosaic and the tile panels colour found/false/missed as the legend says.
    from footprints_app.report.maps import STYLES

    images = _images(page)
    mosaic = images[page[: page.index('alt="mosaic of every tile')].count("data:image/png")]
    for status in ("true_positive", "false_positive", "false_negative"):
        assert _colour_share(mosaic, STYLES[status][0]) > 0.0005, status
    assert 'alt="tiles t0, t1"' in page and 'alt="pixel IoU per tile"' in page
    # The segmenter's curves are embedded; a weak model and the run's warning head the page.
    assert (tmp_path / "models" / "segmenter" / "training_curves.png").read_bytes() in images


def test_warnings_and_weak_models_are_a_red_banner_at_the_top(tmp_path):
    model = _model(tmp_path / "models" / "classifier", weak=True)
    run = _score_run(tmp_path / "out", model=model)
    _segment_run(tmp_path / "out" / "segment", tmp_path)
    page = open(build_report(str(run)), encoding="utf-8").read()
    top = page[: page.index("<h2>")]
    assert "class='banner'" in top and "2 warnings" in top
    assert "scores_cannot_rank" in top and "Scores in region area tie" in top
    assert "weak_model" in top and "AUC 0.55 &lt; 0.6" in top
    quiet = _score_run(tmp_path / "quiet", model=_model(tmp_path / "models" / "good"))
    assert "class='banner'" not in open(build_report(str(quiet)), encoding="utf-8").read()


def test_maps_draw_a_legend_with_counts(tmp_path):
    from shapely.geometry import box

    from footprints_app.report import maps

    plt, fig, axes = maps._figure(1, 1, (3, 3))
    handles = maps._draw_footprints(
        axes[0, 0], {"residential": [box(0, 0, 1, 1)] * 3, "non_residential": []}, 1.0
    )
    plt.close(fig)
    assert [h.get_label() for h in handles] == ["residential (3)", "non-residential (0)"]


def test_report_command(tmp_path, capsys):
    run = _score_run(tmp_path / "score")
    assert cli.main(["report", str(run), "--title", "County run"]) == 0
    assert str(run / "report.html") in capsys.readouterr().out
    assert "<h1>County run</h1>" in (run / "report.html").read_text()
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


def _chromium(args, tmp_path):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chrome-profile'}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium not installed (quickstart.sh test installs it)",
)
def test_report_renders_with_its_images_in_headless_chromium(tmp_path):
    assert CHROMIUM, "CI must have Chromium: quickstart.sh test installs Debian's chromium"
    run = _score_run(tmp_path / "score", model=_model(tmp_path / "models" / "classifier"))
    _segment_run(tmp_path / "score" / "segment", tmp_path)
    path = build_report(str(run))
    expected = len(_images(open(path, encoding="utf-8").read()))
    result = _chromium(["--dump-dom", f"file://{path}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    total = re.search(r'data-images-total="(\d+)"', result.stdout)
    loaded = re.search(r'data-images-loaded="(\d+)"', result.stdout)
    assert total and loaded, "the page's load handler did not run"
    # histograms, matrix, reliability, curves; mosaic, tiles, IoU bars, coverage
    assert int(total.group(1)) == expected == 8 and loaded.group(1) == total.group(1)
    shot = tmp_path / "shot.png"
    result = _chromium(
        [f"--screenshot={shot}", "--window-size=1200,1600", f"file://{path}"], tmp_path
    )
    assert result.returncode == 0 and shot.exists()
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # not a blank page
