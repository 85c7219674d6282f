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
