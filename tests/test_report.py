"""report.html: built from a run's outputs, self-contained, and rendered by a real browser."""

import base64
import glob
import html
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


def _score_run(folder, n=200, seed=0, model=None, names=("county-a", "county-b")):
    rng = np.random.default_rng(seed)
    (folder / "scores").mkdir(parents=True)
    (folder / "errors").mkdir()
    regions = np.where(np.arange(n) < n // 2, names[0], names[1])
    scores = rng.random(n).astype(np.float32)
    rows, summary_regions = [], {}
    for region, target in ((names[0], 0.3), (names[1], 0.5)):
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
            "expected_fraction": 0.31 if region == names[0] else 0.41,
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
            "chips-00001-of-00002.tfrecord", "offset 1234", "read", "corrupt_shard", "CRC mismatch"
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


def test_a_model_named_relative_to_its_run_folder_is_found_from_anywhere(tmp_path, monkeypatch):
    # summary.json names inputs relative to the run folder (a moved run still works), so the
    # report must resolve them there, not against the directory it is started from.
    _model(tmp_path / "models" / "classifier", weak=True)
    run = _score_run(tmp_path / "out", model=os.path.join("..", "models", "classifier", "model"))
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    page = open(build_report(str(run)), encoding="utf-8").read()
    top = page[: page.index("<h2>")]
    assert "weak_model" in top and "AUC 0.55 &lt; 0.6" in top


def test_the_imagery_named_relative_to_its_run_folder_is_found_from_anywhere(tmp_path, monkeypatch):
    # The headline map draws the tiles summary.json names ("../area/tiles/*.tif"); read from
    # another directory the glob matched nothing and the map showed the masks on black.
    from footprints_app.report import discovery

    tiles = tmp_path / "area" / "tiles"
    tiles.mkdir(parents=True)
    for name in ("a.tif", "b.tif"):
        (tiles / name).write_bytes(b"")
    run = tmp_path / "out" / "segment"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps({"job": "segment", "inputs": {"raster": "../../area/tiles/*.tif"}})
    )
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    raster = discovery.summary(str(run))["inputs"]["raster"]
    assert sorted(os.path.basename(p) for p in glob.glob(raster)) == ["a.tif", "b.tif"]


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
    # histograms, matrix, reliability, curves; the headline map, mosaic, tiles, IoU bars,
    # coverage
    assert int(total.group(1)) == expected == 9 and loaded.group(1) == total.group(1)
    shot = tmp_path / "shot.png"
    result = _chromium(
        [f"--screenshot={shot}", "--window-size=1200,1600", f"file://{path}"], tmp_path
    )
    assert result.returncode == 0 and shot.exists()
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # not a blank page


# --------------------------------------------------------------------------
# The analyst's report: escaping, the headline, the order, the colours
# --------------------------------------------------------------------------

NASTY = (
    "<script>alert(1)</script>",
    "$\\undefinedcmd{x}$",
    "\"county\" & 'parish'",
    "north\nside",
)


def test_region_names_from_the_data_reach_no_renderer_unescaped(tmp_path, capsys):
    # Two runs cover the four names: matplotlib read "$\undefinedcmd{x}$" as
    # math text and `footprints report` exited 1.
    for i, names in enumerate((NASTY[:2], NASTY[2:])):
        run = _score_run(tmp_path / f"run{i}", names=names)
        assert cli.main(["report", str(run)]) == 0, capsys.readouterr().err
        page = (run / "report.html").read_text(encoding="utf-8")
        for name in names:
            assert html.escape(name) in page, name
        assert "<script>alert" not in page
        # The histograms were drawn with the names as their titles.
        assert 'alt="score distribution per region with threshold"' in page


def _lonlat_of_tiles(paths):
    """The tiles' corners in lon/lat, through pyproj (not the report's code)."""
    import pyproj
    import rasterio

    lons, lats = [], []
    for path in paths:
        with rasterio.open(path) as src:
            t = pyproj.Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
            x0, y0, x1, y1 = src.bounds
            lon, lat = t.transform([x0, x0, x1, x1], [y0, y1, y0, y1])
            lons += lon
            lats += lat
    return min(lons), min(lats), max(lons), max(lats)


def test_headline_says_where_how_big_and_how_many(tmp_path):
    from footprints_app.report import facts

    run = _segment_run(tmp_path / "seg", tmp_path)
    masks = [str(run / "masks" / "t0.tif"), str(run / "masks" / "t1.tif")]
    found = facts.headline("Test county", "segment", str(run))
    west, south, east, north = _lonlat_of_tiles(masks)
    assert found.extent == pytest.approx((west, south, east, north), abs=1e-6)
    # Two 64-px tiles of RES m side by side, on the ground (UTM's scale error < 0.1%).
    assert found.area_km2 == pytest.approx(2 * (64 * RES) ** 2 / 1e6, rel=2e-3)
    assert found.buildings == 2
    page = open(build_report(str(run), "Test county"), encoding="utf-8").read()
    headline = page[page.index("id='headline'") : page.index('id="map"')]
    for text in ("Test county", "km²", "Buildings found in the imagery", "not recorded"):
        assert text in headline, text
    assert f"{abs(west):.4f}°" in headline and f"{north:.4f}°N" in headline


def test_report_reads_top_down_headline_map_tables_outputs_then_model(tmp_path):
    model = _model(tmp_path / "models" / "classifier")
    out = tmp_path / "out"
    _segment_run(out / "segment", tmp_path)
    _score_run(out / "score", model=model)
    stages = {  # as json.dump(sort_keys=True) wrote them: alphabetical
        name: {"seconds": 1.0, "reconciles": True}
        for name in sorted(
            ["training_area", "sample_area", "prepare", "train_classifier", "score", "segment"]
        )
    }
    (out / "demo_summary.json").write_text(json.dumps({"stages": stages, "warnings": []}))
    page = open(build_report(str(out)), encoding="utf-8").read()
    marks = [
        "id='headline'",
        'id="map"',
        "per tile</h2>",
        "per region</h2>",
        "<h2>Outputs</h2>",
        "<h2>Model details",
        "quality ece",
    ]
    where = [page.index(m) for m in marks]
    assert where == sorted(where), dict(zip(marks, where, strict=True))
    # No raw key/value of a model above the model details.
    assert "quality ece" not in page[: page.index("<h2>Model details")]
    rows = re.findall(r"<tr><td>(\w+)</td><td>[^<]*</td><td>1.0</td></tr>", page)
    assert rows == [
        "training_area",
        "sample_area",
        "prepare",
        "train_classifier",
        "score",
        "segment",
    ]


def test_map_legend_has_the_colours_of_the_qgis_style(tmp_path):
    from footprints_app.report import maps
    from pipeline.writers.export import style_qml

    qml = style_qml()
    qgis = {}
    labels = dict(re.findall(r'<category [^>]*symbol="(\d+)" value="[^"]*" label="([^"]+)"', qml))
    for name, rgb in re.findall(
        r'<symbol type="fill" name="(\d+)".*?name="color" value="(\d+,\d+,\d+),255"', qml
    ):
        qgis[labels[name]] = "#" + "".join(f"{int(v):02x}" for v in rgb.split(","))
    assert set(qgis) == {"residential", "non-residential", "not classified"}
    for key, (colour, text) in maps.STYLES.items():
        if text in qgis:
            assert colour == qgis[text], key
    assert {maps.STYLES[k][1] for k in ("residential", "non_residential", "not_classified")} == set(
        qgis
    )


# --------------------------------------------------------------------------
# A real run: segment --classifier, exported as the demo exports it
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A real ``segment --classifier`` run, exported by the demo's export stage."""
    from table_fixtures import classified_run

    from footprints_app.commands import demo

    root = tmp_path_factory.mktemp("report-real")
    classified_run(root, root / "out" / "segment")
    stage = demo.export_geopackage(str(root / "out" / "segment"), str(root / "out"))
    return root / "out", stage


@pytest.mark.slow
def test_demo_exports_a_geopackage_that_the_report_links(exported_run):
    import pyogrio

    out, stage = exported_run
    classified = pq.read_table(out / "segment" / "classified")
    summary = json.loads((out / "segment" / "summary.json").read_text())
    # table_fixtures' clean rectangles leave no speck under its --min-area 1.
    assert summary["counts"]["footprints_too_small"] == 0 and summary["inputs"]["min_area"] == 1
    gpkg = out / stage["path"]
    assert stage["path"] == "segment/export/footprints.gpkg"
    read_back = pyogrio.read_dataframe(gpkg, layer="footprints")
    assert stage["features"] == classified.num_rows == len(read_back)
    assert sorted(read_back["footprint_id"]) == sorted(classified["footprint_id"].to_pylist())
    assert (out / stage["style"]).exists()
    page = open(build_report(str(out / "segment")), encoding="utf-8").read()
    headline = page[page.index("id='headline'") : page.index('id="map"')]
    hrefs = re.findall(r'href="([^"]+)"', headline)
    assert {"classified", "export/footprints.gpkg", "stac/collection.json"} <= set(hrefs)
    everything = set(re.findall(r'href="([^"]+)"', page))
    assert {"export/footprints.gpkg", "export/footprints.qml", "classified"} <= everything
    assert all((out / "segment" / h).exists() for h in everything)


@pytest.mark.slow
def test_headline_map_is_in_lonlat_with_the_classes_coloured(exported_run):
    from footprints.styles import NON_RESIDENTIAL, RESIDENTIAL

    out, _ = exported_run
    page = open(build_report(str(out / "segment")), encoding="utf-8").read()
    [png] = re.findall(r'id="map" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    png = base64.b64decode(png)
    classified = pq.read_table(out / "segment" / "classified", columns=["is_residential"])
    flags = classified["is_residential"].to_pylist()
    assert True in flags and False in flags
    # Both classes are drawn in the QGIS style's colours (outlines and legend).
    assert _colour_share(png, RESIDENTIAL.colour, 30) > 0.0005
    assert _colour_share(png, NON_RESIDENTIAL.colour, 30) > 0.0005
    # Houston (tests/table_fixtures.py, state-plane feet): the extent in degrees.
    headline = page[page.index("id='headline'") : page.index('id="map"')]
    assert re.search(r"95\.\d{4}°W to 95\.\d{4}°W, 29\.\d{4}°N to 29\.\d{4}°N", headline)


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium not installed (quickstart.sh test installs it)",
)
def test_first_screen_holds_the_headline_numbers_and_the_map(exported_run, tmp_path):
    """At 1280x1000, the headline's numbers and the whole map are above the fold."""
    assert CHROMIUM, "CI must have Chromium: quickstart.sh test installs Debian's chromium"
    out, _ = exported_run
    path = build_report(str(out / "segment"), "Houston test area")
    size = ["--window-size=1280,1000", "--hide-scrollbars"]
    result = _chromium([*size, "--dump-dom", f"file://{path}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert re.search(r'data-viewport="1280x\d+"', dom), "the window size was not applied"
    boxes = {
        name: [int(v) for v in re.search(rf'data-{name}-box="([-\d,]+)"', dom).group(1).split(",")]
        for name in ("headline", "map")
    }
    headline, map_box = boxes["headline"], boxes["map"]
    assert 0 <= headline[1] < 200 and 0 <= map_box[1] < 200, boxes
    assert map_box[3] <= 1000 and map_box[3] - map_box[1] > 400, boxes  # all of it, and large
    assert map_box[0] >= headline[2] - 1, boxes  # beside the headline, not under it
    # The numbers, as the run's summary has them, are in the headline's text.
    summary = json.loads((out / "segment" / "summary.json").read_text())
    found = summary["counts"]["footprints"]
    [region] = summary["scores"]["regions"].values()
    text = re.sub(r"<[^>]+>", " ", dom[dom.index('id="headline"') : dom.index('id="map"')])
    assert re.search(rf"\b{found}\b", text) and f"{region['k']} of {region['n']}" in text
    # The screenshot's first screen shows the map's pixels where the DOM says.
    shot = tmp_path / "first-screen.png"
    result = _chromium([*size, f"--screenshot={shot}", f"file://{path}"], tmp_path)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    from PIL import Image

    from footprints.styles import RESIDENTIAL

    screen = np.asarray(Image.open(shot).convert("RGB"))
    assert screen.shape[:2] == (1000, 1280)
    left, top, right, bottom = map_box
    buf = io.BytesIO()
    Image.fromarray(screen[top:bottom, left:right]).save(buf, format="PNG")
    assert _colour_share(buf.getvalue(), RESIDENTIAL.colour, 30) > 0.0005
    blank = screen[top:bottom, left:right].std()
    assert blank > 10  # an image, not an empty box


@pytest.mark.parametrize(
    ("width_m", "bar_m"), [(1200, 200), (260, 50), (99, 10), (5000, 1000), (40_000, 5000)]
)
def test_scale_bar_is_a_round_length_near_a_fifth_of_the_map(width_m, bar_m):
    from footprints_app.report.maps import scale_length

    assert scale_length(width_m) == bar_m


def test_degrees_name_their_hemisphere():
    from footprints_app.report.maps import degrees

    assert degrees(-95.37, "lon", 2) == "95.37°W" and degrees(2.35, "lon", 1) == "2.4°E"
    assert degrees(29.76, "lat", 3) == "29.760°N" and degrees(-33.9, "lat", 0) == "34°S"
