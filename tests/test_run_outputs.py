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
import signal

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


# Issue 22: the run takes its output safely. Each of these lost data, mixed two runs or
# failed late on main abb1773.


def test_overwrite_never_deletes_inputs_inside_the_output(area, tmp_path, capsys):
    """--overwrite cleared the folder first: chips, tile and model inside it were deleted."""
    from score_helpers import chip_record, write_shards

    out = tmp_path / "run"
    shards = write_shards(str(out / "chips"), [chip_record(f"fp-{i}", 30 * i) for i in range(6)])
    save_classifier(str(out / "clf" / "model"))
    write_geotiff(str(out / "tiles" / "t0.tif"), helpers.bright_scene(64, 64, [(8, 8, 30, 30)])[0])
    before = sorted(str(p) for p in out.rglob("*") if p.is_file())
    score = ["score", "--chips", str(out / "chips" / "*"), "--model", str(area / "clf")]
    score += ["--residential-fraction", "0.5", "--output", str(out), "--overwrite"]
    assert cli.main(score) == 2
    err = capsys.readouterr().err
    assert f"--chips '{out}/chips/*' lies inside --output" in err, err
    assert os.path.dirname(shards[0]) == str(out / "chips")
    outside = write_shards(str(tmp_path / "chips"), [chip_record("fp-9", 90)], 1)
    model = ["score", "--chips", outside[0], "--model", str(out / "clf"), "--output", str(out)]
    assert cli.main([*model, "--residential-fraction", "0.5", "--overwrite"]) == 2
    assert f"--model '{out}/clf' lies inside --output" in capsys.readouterr().err
    segment = ["segment", "--raster", str(out / "tiles" / "t0.tif"), "--model", str(area / "seg")]
    assert cli.main([*segment, "--output", str(out), "--overwrite"]) == 2
    assert "--raster" in capsys.readouterr().err
    assert sorted(str(p) for p in out.rglob("*") if p.is_file()) == before  # nothing deleted


def test_a_second_run_into_a_held_output_fails_fast_and_mixes_nothing(area, tmp_path, capsys):
    """Two score runs into one folder both exited 0 with each other's rows and spill."""
    import subprocess
    import sys
    import textwrap

    from score_helpers import chip_record, write_shards

    write_shards(str(tmp_path / "chips"), [chip_record(f"fp-{i}", 30 * i) for i in range(6)])
    out = tmp_path / "out"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The first run, in its own process, holds the folder (what its CLI does for the run).
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, sys
                from pipeline.writers.files import OutputLocation, OutputLock
                with OutputLock(OutputLocation({str(out)!r})):
                    os.makedirs({str(out / ".spill")!r})
                    open({str(out / ".spill" / "batch-0")!r}, "wb").write(b"first")
                    print("running", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "running"
        argv = ["score", "--chips", str(tmp_path / "chips" / "*"), "--model", str(area / "clf")]
        argv += ["--residential-fraction", "0.5", "--output", str(out)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f"in use by another footprints run (pid {first.pid} on " in err, err
        assert (out / ".spill" / "batch-0").read_bytes() == b"first"  # its claim took nothing
        assert sorted(os.listdir(out)) == [".spill", "run.lock"]
    finally:
        first.stdin.close()  # type: ignore[union-attr]
        first.wait(timeout=120)
    assert first.returncode == 0 and not (out / "run.lock").exists()


def test_bad_output_places_are_refused_before_any_work(area, tmp_path, capsys):
    """A too-long name and a folder under /proc exited 1 mid-run; now 2 before anything."""
    base = ["segment", "--raster", str(area / "tiles" / "*.tif"), "--model", str(area / "seg")]
    long_name = str(tmp_path / ("area-7-orthophotos-2023-" * 12))
    assert cli.main([*base, "--output", long_name]) == 2
    assert "bytes a name" in capsys.readouterr().err
    assert not os.path.exists(long_name[:200])
    if os.path.exists("/proc/self/mounts"):
        assert cli.main([*base, "--output", "/proc/footprints"]) == 2
        assert "pseudo file system" in capsys.readouterr().err


@pytest.mark.slow
def test_an_export_folder_is_an_output_a_rerun_replaces(area, capsys):
    """`footprints export` left export/ in the run folder; the next segment refused it."""
    out = area / "exported"
    base = ["segment", "--raster", str(area / "tiles" / "*.tif"), "--model", str(area / "seg")]
    base += ["--output", str(out), "--halo", "8", "--min-area", "1"]
    assert cli.main(base) == 0
    assert cli.main(["export", "--format", "gpkg", str(out)]) == 0
    assert (out / "export" / "footprints.gpkg").exists()
    assert cli.main(base) == 0, capsys.readouterr().err
    assert not (out / "export").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert "run.lock" not in os.listdir(out) and not any("lock" in f for f in summary["files"])


@pytest.mark.slow
def test_a_full_disk_under_segment_says_no_space_left(area, tmp_path):
    """GDAL's `TIFFWriteDirectoryTagData: IO error` was the whole message on a full disk."""
    import subprocess
    import sys

    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        # A 512 px tile of textured imagery: its probability mask does not compress to
        # the 148 KiB left on the disk.
        write_geotiff(str(tmp_path / "tiles" / "t0.tif"), helpers.random_image(512, 512, seed=3))
        seg = helpers.save_conv_segmenter(str(tmp_path / "seg"), window_size=64)
        (disk / "filler").write_bytes(b"\0" * (1900 * 1024))
        done = subprocess.run(
            [sys.executable, "-m", "footprints_app.cli", "segment", "--raster"]
            + [str(tmp_path / "tiles" / "*.tif"), "--model", seg, "--output", str(disk / "out")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and "failed: no space left on device" in last, last
        assert not (disk / "out" / "summary.json").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_exits_128_plus_it_and_leaves_no_complete_looking_file(
    tmp_path_factory, signum
):
    """Ctrl-C on segment exited 1 "failed: RuntimeError: KeyboardInterrupt"."""
    import subprocess
    import sys

    import pyarrow.parquet as pq
    import rasterio

    root = tmp_path_factory.mktemp("signal")
    # The signal is sent on the first periodic progress line, printed for the first window
    # done (FOOTPRINTS_PROGRESS_EVERY=0), not on the line a worker prints when it is done: the
    # run is still inferring or stitching when signalled, on a quiet machine too.
    write_geotiff(str(root / "tiles" / "t0.tif"), helpers.random_image(2048, 2048, seed=1))
    seg = helpers.save_conv_segmenter(str(root / "seg"), window_size=64)
    out = root / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "footprints_app.cli", "segment", "--raster"]
        + [str(root / "tiles" / "*.tif"), "--model", seg, "--output", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FOOTPRINTS_PROGRESS_EVERY": "0"},
    )
    assert run.stderr is not None
    lines = []
    for line in run.stderr:  # the pipeline is running once windows are counted
        lines.append(line)
        if "progress [windows]" in line and "/s (pid" in line:
            run.send_signal(signum)
            break
    rest = run.stderr.read()
    assert run.wait(timeout=300) == 128 + signum, "".join(lines)[-2000:] + rest[-2000:]
    assert f"interrupted ({signal.Signals(signum).name})" in rest, rest[-2000:]
    assert "RuntimeError" not in rest.strip().splitlines()[-1]
    # As a kill leaves it: no summary, and every file with a final name is whole.
    assert not (out / "summary.json").exists() and not (out / "run.lock").exists()
    for folder, _, names in os.walk(out):
        for name in names:
            path = os.path.join(folder, name)
            if ".tmp-" in path or "beam-temp-" in path:
                continue
            if name.endswith(".tif"):
                with rasterio.open(path) as mask:
                    mask.read(1)
            elif name.endswith(".parquet"):
                pq.read_table(path)


@pytest.mark.slow
def test_two_score_runs_started_together_never_mix(area, tmp_path, capsys):
    """Both exited 0, one scores.csv holding the other's 20 rows beside its own."""
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq
    from score_helpers import chip_record, write_shards

    write_shards(str(tmp_path / "a"), [chip_record(f"a-{i:04d}", i % 250) for i in range(400)])
    write_shards(str(tmp_path / "b"), [chip_record(f"b-{i:02d}", 9 * i) for i in range(20)])
    out = tmp_path / "out"
    common = ["--model", str(area / "clf"), "--residential-fraction", "0.5", "--output", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-m", "footprints_app.cli", "score", "--chips", str(tmp_path / "a" / "*")]
        + common,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = out / "run.lock"
    while first.poll() is None and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.05)  # waits for the first run to take its output, whenever that is
    assert first.poll() is None, "the first run ended before it held its output"
    # The second run starts while the first holds the folder (it has not loaded its model).
    assert cli.main(["score", "--chips", str(tmp_path / "b" / "*"), *common]) == 2
    err = capsys.readouterr().err
    assert f"(pid {first.pid} on " in err, err
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err[-2000:]
    ids = pq.read_table(out / "scores").column("footprint_id").to_pylist()
    assert sorted(ids) == [f"a-{i:04d}" for i in range(400)]
    assert json.loads((out / "summary.json").read_text())["counts"]["scored"] == 400
