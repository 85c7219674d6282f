"""Progress lines while a job runs, and its Beam metrics in summary.json afterwards."""

from raster_fixtures import noise_tiles
from segment_helpers import save_conv_segmenter

from footprints import cli
from pipeline.inference.segmenter import NAMESPACE
from pipeline.writers.files import read_json


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
    assert counters["score/records_read"] == 24
    batches = summary["metrics"]["distributions"]
    assert any(k.endswith("batch_size") and v["max"] <= 8 for k, v in batches.items())
    err = capfd.readouterr()
    assert "progress [chips]: 24 done" in err.err
    assert "all: 6 of 24 residential" in err.out
