import subprocess
import sys

import pytest

from footprints import cli


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
    result = subprocess.run([f"{bin_dir}/footprints", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "prepare" in result.stdout


def test_unknown_flag_on_a_non_pipeline_command_is_an_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        cli.main(["sample-area", "--output", str(tmp_path), "--runner", "DirectRunner"])
    assert done.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_value_gives_exit_2_and_a_fix(capsys, tmp_path):
    code = cli.main(["prepare", "--rasters", str(tmp_path / "*.tif"), "--footprints",
                     str(tmp_path / "f.gpkg"), "--output", str(tmp_path / "c"),
                     "--num-shards", "0"])
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
    vector = write_footprints(tmp_path / "fp.gpkg", [shapely.box(X0 + 5, Y0 - 9, X0 + 9, Y0 - 5)],
                              ["a"])
    out = tmp_path / "out"
    assert cli.main(["prepare", "--rasters", str(tiles / "*.tif"), "--footprints", vector,
                     "--output", str(out / "chips"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "3 files match" in plan and "2 usable" in plan and "1 rejected" in plan
    assert "1 features" in plan

    write_shards(str(tmp_path / "chips"), [chip_record(f"f{i}", i) for i in range(10)], 2)
    model = save_classifier(str(tmp_path / "clf"))
    assert cli.main(["score", "--chips", str(tmp_path / "chips" / "*.tfrecord"), "--model",
                     model, "--residential-fraction", "0.3", "--output", str(out / "s"),
                     "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "2 shards match" in plan and "about 10 records" in plan and "30.00%" in plan

    seg = save_conv_segmenter(str(tmp_path / "seg"), window_size=64)
    assert cli.main(["segment", "--raster", str(tiles / "*.tif"), "--model", seg, "--output",
                     str(out / "g"), "--halo", "8", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "2 valid, 1 rejected" in plan and "windows over 0.0 Mpx" in plan
    windows = int(plan.split("work: ")[1].split(" windows")[0])
    assert windows == 2 * 4  # 100 px tiles, 48 px cores: 2 x 2 windows each
    assert not out.exists()


def test_failure_during_a_run_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from footprints.commands import report

    def explode(args, beam_args):
        raise RuntimeError("disk full\nwhile writing report.html")

    monkeypatch.setattr(report, "run", explode)  # main() registers the handler afresh
    (tmp_path / "run").mkdir()
    code = cli.main(["report", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("footprints report: failed: RuntimeError: while writing report.html")
