"""Progress lines while a job runs, and its Beam metrics in summary.json afterwards."""

import json
import os

import pytest
from raster_fixtures import noise_tiles
from segment_helpers import save_conv_segmenter

from footprints_app import cli
from pipeline.inference.segmenter import NAMESPACE
from pipeline.monitoring import add_warnings
from pipeline.summary import duplicate_warnings
from pipeline.writers.files import read_json


@pytest.mark.slow
def test_segment_summary_holds_metrics_and_progress_is_printed(tmp_path, capfd):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    noise_tiles(tiles, n=2, size=80)
    model = save_conv_segmenter(str(tmp_path / "seg"), window_size=64)
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "segment",
                "--raster",
                str(tiles / "*.tif"),
                "--model",
                model,
                "--output",
                str(out),
                "--halo",
                "8",
            ]
        )
        == 0
    )
    summary = read_json(str(out / "summary.json"))
    counters = summary["metrics"]["counters"]
    assert counters[f"{NAMESPACE}/windows_inferred"] == summary["counts"]["windows"]["inferred"] > 0
    err = capfd.readouterr()
    assert f"progress [windows]: {summary['counts']['windows']['planned']} done" in err.err
    assert "segment: 2 tiles -> 2 masks" in err.out


@pytest.mark.slow
def test_score_summary_holds_metrics_and_progress_is_printed(tmp_path, capfd):
    from score_helpers import chip_record, save_classifier, write_shards

    write_shards(str(tmp_path / "chips"), [chip_record(f"f{i}", i * 9) for i in range(24)], 2)
    model = save_classifier(str(tmp_path / "clf"))
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "score",
                "--chips",
                str(tmp_path / "chips" / "*.tfrecord"),
                "--model",
                model,
                "--residential-fraction",
                "0.25",
                "--output",
                str(out),
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    summary = read_json(str(out / "summary.json"))
    counters = summary["metrics"]["counters"]
    assert counters["footprints.score/records_read"] == 24
    batches = summary["metrics"]["distributions"]
    assert any(k.endswith("batch_size") and v["max"] <= 8 for k, v in batches.items())
    err = capfd.readouterr()
    assert "progress [chips]: 24 done" in err.err
    assert "all: 6 of 24 residential" in err.out


def test_repeated_ids_give_one_warning_with_examples_and_the_fix():
    assert duplicate_warnings(None) == [] and duplicate_warnings({"count": 0}) == []
    (warning,) = duplicate_warnings(
        {
            "count": 2,
            "records": 5,
            "examples": [{"footprint_id": f} for f in ("a", "b", "c", "d")],
        }
    )
    assert warning["code"] == "duplicate_id"
    assert (
        "2 footprint ids occur more than once (5 records, e.g. 'a', 'b', 'c')"
        in (warning["message"])
    )
    assert "'d'" not in warning["message"] and "--id-field" in warning["message"]


def test_warnings_are_appended_to_a_finished_summary(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"reconciles": True, "warnings": [{"code": "a", "message": "m"}]}))
    assert add_warnings(str(path), []) == json.loads(path.read_text())
    got = add_warnings(str(path), [{"code": "b", "message": "n"}])
    assert [w["code"] for w in got["warnings"]] == ["a", "b"]
    assert json.loads(path.read_text()) == got


def test_summary_paths_become_relative_to_the_run_folder(tmp_path, monkeypatch):
    from pipeline.monitoring import relative_paths, resolve_path
    from pipeline.writers.files import OutputLocation

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "out" / "seg"
    summary = {
        "inputs": {"raster": "area/tiles/*.tif", "model": str(tmp_path / "m"), "tta": "flips"},
        "masks": {"masks": [str(run / "masks" / "a.tif")], "mosaics": ["out/seg/masks/m.vrt"]},
        "stac": ["gs://b/elsewhere/x.json"],
        "counts": {"footprints": 3},
        "warnings": [{"code": "c", "message": f"see {tmp_path}"}],
    }
    got = relative_paths(summary, OutputLocation("out/seg"))
    assert got["inputs"] == {"raster": "../../area/tiles/*.tif", "model": "../../m", "tta": "flips"}
    assert got["masks"] == {"masks": ["masks/a.tif"], "mosaics": ["masks/m.vrt"]}
    assert got["stac"] == ["gs://b/elsewhere/x.json"]
    assert got["counts"] == summary["counts"] and got["warnings"] == summary["warnings"]
    (tmp_path / "m").mkdir()
    assert os.path.samefile(resolve_path("out/seg/summary.json", got["inputs"]["model"]), "m")
    on_gcs = relative_paths(
        {"masks": {"masks": ["gs://b/run/masks/a.tif"]}, "inputs": {"raster": "gs://b/t/*.tif"}},
        OutputLocation("gs://b/run"),
    )
    assert on_gcs == {"masks": {"masks": ["masks/a.tif"]}, "inputs": {"raster": "gs://b/t/*.tif"}}
    assert resolve_path("gs://b/run/summary.json", "masks/a.tif") == "gs://b/run/masks/a.tif"
