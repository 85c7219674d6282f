import os
import subprocess
import sys

import pytest

from footprints_app import cli


def _subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_subcommand_has_useful_help(capsys):
    names = _subcommands()
    assert {"prepare", "sample-area"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert f"footprints {name}" in out and len(out) > 300, name


def test_console_script_runs_help():
    bin_dir = sys.executable.rsplit("/", 1)[0]
    result = subprocess.run(
        [f"{bin_dir}/footprints", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "prepare" in result.stdout


def test_the_command_exits_fast_with_every_output_complete(tmp_path):
    """`python -m footprints_app.cli` skips the interpreter teardown; nothing is lost."""
    import json

    import pyarrow.parquet as pq

    from tests.score_helpers import chip_record, save_classifier, write_shards

    model = save_classifier(str(tmp_path / "model"))
    records = [chip_record(f"b-{i:04d}", 20 + i % 200, region="r1") for i in range(300)]
    write_shards(str(tmp_path / "chips"), records, num_shards=2)
    out = tmp_path / "out"
    run = [sys.executable, "-m", "footprints_app.cli", "score", "--chips"]
    # Buffered streams, as on most machines, so that a lost flush would show.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [*run, str(tmp_path / "chips" / "*"), "--model", model, "--residential-fraction", "0.4"]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The last line printed (flushed before the exit) and every file, whole.
    assert "300 records -> 300 scored" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["residential"] == 120
    assert pq.read_table(out / "scores").num_rows == 300
    # A usage error keeps its exit code.
    bad = subprocess.run(
        [*run, str(tmp_path / "none*"), "--model", model, "--residential-fraction", "0.4"]
        + ["--output", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2 and "matches no files" in bad.stderr


def test_unknown_flag_on_a_non_pipeline_command_is_an_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        cli.main(["sample-area", "--output", str(tmp_path), "--runner", "DirectRunner"])
    assert done.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_value_gives_exit_2_and_a_fix(capsys, tmp_path):
    code = cli.main(
        [
            "prepare",
            "--rasters",
            str(tmp_path / "*.tif"),
            "--footprints",
            str(tmp_path / "f.gpkg"),
            "--output",
            str(tmp_path / "c"),
            "--num-shards",
            "0",
        ]
    )
    assert code == 2
    assert "--num-shards 0 must be at least 1" in capsys.readouterr().err


def test_dry_runs_validate_print_the_plan_and_write_nothing(tmp_path, capsys):
    import shapely
    from raster_fixtures import X0, Y0, noise_tiles, write_footprints
    from score_helpers import chip_record, save_classifier, write_shards
    from segment_helpers import save_conv_segmenter

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    noise_tiles(tiles, n=2, size=100)
    (tiles / "junk.tif").write_bytes(b"not a tiff")
    vector = write_footprints(
        tmp_path / "fp.gpkg", [shapely.box(X0 + 5, Y0 - 9, X0 + 9, Y0 - 5)], ["a"]
    )
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "prepare",
                "--rasters",
                str(tiles / "*.tif"),
                "--footprints",
                vector,
                "--output",
                str(out / "chips"),
                "--dry-run",
            ]
        )
        == 0
    )
    plan = capsys.readouterr().out
    assert "3 files match" in plan and "2 usable" in plan and "1 rejected" in plan
    assert "1 features" in plan

    write_shards(str(tmp_path / "chips"), [chip_record(f"f{i}", i) for i in range(10)], 2)
    model = save_classifier(str(tmp_path / "clf"))
    assert (
        cli.main(
            [
                "score",
                "--chips",
                str(tmp_path / "chips" / "*.tfrecord"),
                "--model",
                model,
                "--residential-fraction",
                "0.3",
                "--output",
                str(out / "s"),
                "--dry-run",
            ]
        )
        == 0
    )
    plan = capsys.readouterr().out
    assert "2 shards match" in plan and "about 10 records" in plan and "30.00%" in plan

    seg = save_conv_segmenter(str(tmp_path / "seg"), window_size=64)
    assert (
        cli.main(
            [
                "segment",
                "--raster",
                str(tiles / "*.tif"),
                "--model",
                seg,
                "--output",
                str(out / "g"),
                "--halo",
                "8",
                "--dry-run",
            ]
        )
        == 0
    )
    plan = capsys.readouterr().out
    assert "2 valid, 1 rejected" in plan and "windows over 0.0 Mpx" in plan
    windows = int(plan.split("work: ")[1].split(" windows")[0])
    assert windows == 2 * 4  # 100 px tiles, 48 px cores: 2 x 2 windows each
    assert not out.exists()


def test_failure_during_a_run_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from footprints_app.commands import report

    def explode(args, beam_args):
        raise RuntimeError("disk full\nwhile writing report.html")

    monkeypatch.setattr(report, "run", explode)  # main() registers the handler afresh
    (tmp_path / "run").mkdir()
    code = cli.main(["report", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("footprints report: failed: RuntimeError: while writing report.html")


def test_a_bug_exits_1_not_2_nothing_ran(tmp_path, capsys, monkeypatch):
    """StitchError is a broken invariant of the code: a failed run (1), not bad flags (2)."""
    from footprints.errors import EXIT_FAILED, EXIT_USAGE
    from footprints_app.commands import report
    from pipeline.stitching.stitch import StitchError

    def stitch_bug(args, beam_args):
        raise StitchError("window (0, 1) of 'a' arrived twice")

    monkeypatch.setattr(report, "run", stitch_bug)
    (tmp_path / "run").mkdir()
    code = cli.main(["report", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert (code, EXIT_FAILED, EXIT_USAGE) == (1, 1, 2)
    assert err.startswith("footprints report: failed: StitchError: window (0, 1)"), err


# --------------------------------------------------------------------------
# Issue 11: one exact command line, outputs checked first, a run owns its output
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [
                "segment",
                "--raster",
                "t/*.tif",
                "--model",
                "m",
                "--output",
                "o",
                "--mask-treshold",
                "0.7",
            ],
            "unknown option --mask-treshold; did you mean --mask-threshold?",
        ),
        (
            [
                "score",
                "--chips",
                "c",
                "--model",
                "m",
                "--residential-fraction",
                "0.3",
                "--output",
                "o",
                "--batchsize",
                "8",
            ],
            "unknown option --batchsize; did you mean --batch-size?",
        ),
        (
            [
                "score",
                "--chips",
                "c",
                "--model",
                "m",
                "--residential-fraction",
                "0.3",
                "--output",
                "o",
                "--bogus-flag",
                "1",
            ],
            "unknown option --bogus-flag",
        ),
        (
            [
                "prepare",
                "--images",
                "i",
                "--output",
                "o/c",
                "--runner",
                "DirectRunner",
                "--direct_num_worker",
                "2",
            ],
            "did you mean --direct_num_workers?",
        ),
    ],
)
def test_typos_stop_before_anything_runs(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing was written


def test_beam_region_is_not_taken_for_our_region_flags():
    args, beam = cli.parse_command_line(
        [
            "prepare",
            "--rasters",
            "r/*.tif",
            "--footprints",
            "f.gpkg",
            "--output",
            "o/c",
            "--runner",
            "DataflowRunner",
            "--project",
            "P",
            "--region",
            "us-central1",
        ]
    )
    assert args.region_field is None and beam[-2:] == ["--region", "us-central1"]
    args, beam = cli.parse_command_line(
        [
            "score",
            "--chips",
            "c",
            "--model",
            "m",
            "--residential-fraction",
            "0.3",
            "--output",
            "o",
            "--region",
            "us-central1",
        ]
    )
    assert args.region_fractions is None and beam == ["--region", "us-central1"]
    with pytest.raises(SystemExit):  # and our own flags are never abbreviated either
        cli.parse_command_line(
            ["score", "--chips", "c", "--model", "m", "--residential-frac", "0.3", "--output", "o"]
        )


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for line in ("0  done", "1  the run failed", "2  nothing ran", "3  done, but"):
        assert line in out


def test_bad_output_locations_fail_first_with_the_fix(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    # The chips and the model do not exist: the output is checked before them.
    base = [
        "score",
        "--chips",
        str(tmp_path / "none*"),
        "--model",
        str(tmp_path / "nomodel"),
        "--residential-fraction",
        "0.3",
        "--output",
    ]
    cases = {
        str(afile): "is a file, not a folder",
        str(afile / "sub"): "which is a file",
        "gs://Bad_Bucket/x": "not a valid gs:// path",
        str(stray): "entries no footprints run writes (notes.txt)",
    }
    if os.geteuid() != 0:  # root writes anywhere
        cases[str(locked / "out")] = "permission denied"
    for output, message in cases.items():
        assert cli.main(base + [output]) == 2, output
        assert message in capsys.readouterr().err
    assert (stray / "notes.txt").exists()
    # --overwrite: the stray entry is deleted, then the run goes on (and fails on the chips).
    assert cli.main(base + [str(stray), "--overwrite"]) == 2
    assert "--chips" in capsys.readouterr().err and not (stray / "notes.txt").exists()
    prefix = ["prepare", "--images", str(tmp_path / "none"), "--output"]
    assert cli.main(prefix + [str(afile / "chips")]) == 2
    assert "afile' is a file" in capsys.readouterr().err


def test_claim_output_removes_what_any_earlier_run_left(tmp_path):
    from pipeline.writers.files import OutputLocation, claim_output, written_files

    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    (run / "scores" / "old.parquet").write_text("old")
    (run / "scores.csv").write_text("old run")
    (run / "summary.json").write_text("{}")
    (run / "keep.txt").write_text("not ours")
    assert claim_output(OutputLocation(str(run))) == ["scores", "scores.csv", "summary.json"]
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]
    chips = tmp_path / "chips"
    chips.mkdir()
    for name in (
        "area-00000-of-00002.tfrecord",
        "area-summary.json",
        "area-2023-00000-of-00001.tfrecord",
        "other-00000-of-00001.tfrecord",
    ):
        (chips / name).write_text("x")
    (chips / "area-errors").mkdir()
    (chips / "area-errors" / "e.parquet").write_text("x")
    location = OutputLocation(str(chips / "area"), prefix=True)
    assert claim_output(location) == [
        "area-00000-of-00002.tfrecord",
        "area-errors",
        "area-summary.json",
    ]
    assert sorted(p.name for p in chips.iterdir()) == [
        "area-2023-00000-of-00001.tfrecord",
        "other-00000-of-00001.tfrecord",
    ]
    (chips / "area-00000-of-00001.tfrecord").write_text("new")
    assert written_files(location) == ["area-00000-of-00001.tfrecord"]


@pytest.mark.slow
def test_score_rerun_leaves_nothing_stale_and_says_what_is_silent(tmp_path, capsys):
    """Issue 11 cases 2 and 5: stale scores.csv, unmatched regions, duplicate ids, --model DIR."""
    import json

    from score_helpers import chip_record, save_classifier, write_shards

    records = [chip_record(f"fp-{i}", 10 + i * 20, region="county-041") for i in range(10)]
    records.append(chip_record("fp-3", 90, region="county-041"))  # a repeated id
    write_shards(str(tmp_path / "chips"), records, 2)
    save_classifier(str(tmp_path / "clf" / "model"))  # what `train --output clf` writes
    fractions = tmp_path / "fractions.csv"
    fractions.write_text("region,residential_fraction\ncounty-41,0.6\n")  # typo: no such region
    out = tmp_path / "out"
    base = [
        "score",
        "--chips",
        str(tmp_path / "chips" / "*.tfrecord"),
        "--model",
        str(tmp_path / "clf"),
        "--residential-fraction",
        "0.3",
        "--output",
        str(out),
    ]
    assert cli.main(base + ["--csv"]) == 0
    assert (out / "scores.csv").exists()
    capsys.readouterr()
    assert cli.main(base + ["--region-fractions", str(fractions)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert not (out / "scores.csv").exists()
    assert summary["files"] and all((out / f).is_file() for f in summary["files"])
    assert {f.split("/")[0] for f in summary["files"]} == {
        "scores",
        "errors",
        "scores.bigquery.json",
        "errors.bigquery.json",
    }
    codes = [w["code"] for w in summary["warnings"]]
    assert codes == ["unmatched_region", "duplicate_id"]
    assert "'county-41'" in summary["warnings"][0]["message"]
    assert "WARNING [unmatched_region]" in printed and "WARNING [duplicate_id]" in printed
    assert cli.main(base + ["--region-fractions", str(fractions), "--strict-regions"]) == 3
