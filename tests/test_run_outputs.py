"""A run owns its output folder (issue 11, cases 2 and 5) across commands, end to end.

``segment --classifier`` then a rerun without it must not leave the first
run's ``scores/`` beside the new outputs, the new summary.json must list
exactly what the second run wrote, and ``footprints report`` must read only
those files. ``--model DIR`` where ``DIR/model`` holds the SavedModel (what
``footprints train ... --output DIR`` writes) is accepted.
"""

import glob
import json
import os

import pytest
import segment_helpers as helpers
from raster_fixtures import write_geotiff
from score_helpers import save_classifier

from footprints_app import cli


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    root = tmp_path_factory.mktemp("owned")
    data, _ = helpers.bright_scene(96, 96, [(10, 10, 40, 40), (55, 50, 85, 80)], seed=1)
    write_geotiff(str(root / "tiles" / "t0.tif"), data)
    helpers.save_bright_segmenter(str(root / "seg" / "model"), window_size=64)
    save_classifier(str(root / "clf" / "model"))
    return root


def test_model_folder_written_by_train_is_accepted(area, capsys):
    argv = [
        "segment",
        "--raster",
        str(area / "tiles" / "*.tif"),
        "--model",
        str(area / "seg"),
        "--classifier",
        str(area / "clf"),
        "--residential-fraction",
        "0.5",
        "--output",
        str(area / "dry"),
        "--dry-run",
    ]
    assert cli.main(argv) == 0
    assert f"model: {area / 'seg' / 'model'}" in capsys.readouterr().out
    assert not os.path.exists(area / "dry")


def _strings(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def assert_no_absolute_path(summary: dict, out) -> None:
    """Issue 23: no absolute path; each output path resolves from the run folder alone."""
    found = [(k, v) for k, v in _strings(summary) if os.path.isabs(v) or str(out) in v]
    assert not found, found
    outputs = [
        *summary["footprints"]["files"],
        *summary["masks"]["masks"],
        *summary["masks"]["mosaics"],
        *summary["stac"],
        *summary.get("classified", {}).get("files", []),
    ]
    assert outputs and all((out / p).is_file() for p in outputs), outputs
    # Inputs are relative to the run folder too: they resolve from it.
    assert (out / summary["inputs"]["model"]).is_dir()
    assert glob.glob(str(out / summary["inputs"]["raster"]))


@pytest.mark.slow
def test_segment_rerun_without_classifier_leaves_no_stale_scores(area, capsys):
    from footprints_app.report import build_report, run_files

    out = area / "out"
    base = [
        "segment",
        "--raster",
        str(area / "tiles" / "*.tif"),
        "--model",
        str(area / "seg"),
        "--output",
        str(out),
        "--halo",
        "8",
        "--min-area",
        "1",
    ]
    assert (
        cli.main(base + ["--classifier", str(area / "clf"), "--residential-fraction", "0.5"]) == 0
    )
    first = json.loads((out / "summary.json").read_text())
    assert any(f.startswith("scores/") for f in first["files"])
    assert_no_absolute_path(first, out)
    build_report(str(out))
    assert cli.main(base) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert not (out / "scores").exists() and not (out / "report.html").exists()
    assert first["counts"]["classified"] > 0
    assert not summary.get("scores")
    on_disk = sorted(
        os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/")
        for d, _, names in os.walk(out)
        for f in names
        if f != "summary.json"
    )
    assert summary["files"] == on_disk
    assert {f.split("/")[0] for f in summary["files"]} == {
        "masks",
        "footprints",
        "errors",
        "stac",
        "footprints.bigquery.json",
        "errors.bigquery.json",
    }
    assert not (out / "classified").exists() and not (out / "classified.bigquery.json").exists()
    # A file the run did not write (dropped there later) is not read by the report.
    stray = out / "masks" / "stray.tif"
    stray.write_bytes((out / "masks" / "t0.tif").read_bytes())
    assert str(stray) not in run_files(str(out / "masks"), ".tif")
