"""A run owns its output safely (issue 22): what ``pipeline.writers.files`` checks and holds.

Each test here was a way to lose or mix files, or to fail late, on main abb1773:
a killed ``--csv`` run's Beam temporary folder (and an ``export/`` folder) made the next
run refuse the folder; a second run into a held folder went ahead; an output name too
long for the file system, a folder under ``/proc`` and a ``gs://`` output without
credentials were found only mid-run. The checks run on real folders, a real Beam sink, a
real second process holding the lock, and the real Google auth library.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from footprints.errors import ConfigError
from pipeline.writers.files import (
    LOCK_NAME,
    OutputLocation,
    OutputLock,
    check_inputs_outside,
    check_output,
    claim_output,
    file_system_type,
    no_space_left,
    written_files,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_killed_csv_runs_beam_temporary_folder_and_an_export_are_recognised(tmp_path):
    import apache_beam as beam

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    # What Beam's text sink leaves when a `score --csv` run is killed: its temporary folder
    # beside scores.csv, made by the sink itself (the name is Beam's, not ours).
    sink = beam.io.textio._TextSink(str(out / "scores.csv"))
    temp = sink.initialize_write()
    assert os.path.isdir(temp) and os.path.dirname(temp) == str(out)
    with open(os.path.join(temp, "part"), "w") as f:
        f.write("fp-1,0.3\n")
    # What `footprints export --format gpkg OUT` writes by default.
    (out / "export").mkdir()
    (out / "export" / "footprints.gpkg").write_bytes(b"gpkg")
    location = OutputLocation(str(out))
    check_output(location)  # refused both before: "entries no footprints run writes"
    assert sorted(claim_output(location)) == sorted(
        ["export", "summary.json", os.path.basename(temp)]
    )
    assert os.listdir(out) == []
    # The same beside a prefix (prepare): Beam's temporary folder of its errors table.
    chips = tmp_path / "chips"
    chips.mkdir()
    errors = beam.io.textio._TextSink(str(chips / "area-errors")).initialize_write()
    (chips / "area-run.lock").write_text("{}")
    prefix = OutputLocation(str(chips / "area"), prefix=True)
    check_output(prefix)
    assert claim_output(prefix) == [os.path.basename(errors)]  # the lock is never claimed
    # Still refused: a name no run writes.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"entries no footprints run writes \(notes.txt\)"):
        check_output(location)


def _hold(location: OutputLocation) -> subprocess.Popen:
    """Another process that takes the lock and keeps it until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys
        from pipeline.writers.files import OutputLocation, OutputLock
        with OutputLock(OutputLocation({location.path!r}, prefix={location.prefix})):
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_into_a_held_output_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    location = OutputLocation(str(out))
    holder = _hold(location)
    try:
        # The holder's files in progress (scoring's spill): a second claim would delete them.
        (out / ".spill").mkdir()
        (out / ".spill" / "batch-0").write_bytes(b"scored")
        with pytest.raises(ConfigError) as refused:
            OutputLock(OutputLocation(str(out) + "/")).acquire()  # however it is spelled
        message = str(refused.value)
        assert f"pid {holder.pid} on " in message and "in use by another footprints run" in message
        assert (out / ".spill" / "batch-0").read_bytes() == b"scored"
        written = json.loads((out / LOCK_NAME).read_text())
        assert written["pid"] == holder.pid and written["host"] == os.uname().nodename
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, its lock goes with the process
        holder.wait()
    assert (out / LOCK_NAME).exists()
    # A lock left by a killed run is taken over; the lock is re-entrant within a process.
    lock = OutputLock(location)
    with lock:
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        with OutputLock(OutputLocation(str(out))):
            pass
        assert (out / LOCK_NAME).exists()
        assert written_files(location) == [".spill/batch-0"]  # the lock is not an output
    assert not (out / LOCK_NAME).exists()


def test_prefix_outputs_lock_only_their_prefix(tmp_path):
    area = OutputLocation(str(tmp_path / "chips" / "area"), prefix=True)
    holder = _hold(area)
    try:
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            OutputLock(area).acquire()
        # Another prefix in the same folder is another output.
        with OutputLock(OutputLocation(str(tmp_path / "chips" / "other"), prefix=True)):
            assert (tmp_path / "chips" / "other-run.lock").exists()
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=60)
    assert not (tmp_path / "chips" / "area-run.lock").exists()


def test_inputs_inside_the_output_are_refused_before_anything_is_claimed(tmp_path):
    out = tmp_path / "out"
    (out / "chips").mkdir(parents=True)
    (out / "chips" / "chips-00000-of-00001.tfrecord").write_bytes(b"x")
    location = OutputLocation(str(out))
    for flag, value in {
        "--chips": str(out / "chips" / "*.tfrecord"),
        "--model": str(out / "model"),
        "--rasters": str(out / "*.tif"),
        "--footprints": str(tmp_path / "elsewhere" / ".." / "out" / "fp.gpkg"),
    }.items():
        with pytest.raises(ConfigError, match=f"{flag} .* lies inside --output"):
            check_inputs_outside(location, {flag: value})
    check_inputs_outside(location, {"--chips": str(tmp_path / "chips" / "*.tfrecord")})
    # Beside a prefix only PREFIX-* is the run's: other shards in its folder are inputs.
    chips = OutputLocation(str(out / "chips" / "chips"), prefix=True)
    with pytest.raises(ConfigError, match="chips-00000-of-00001.tfrecord"):
        check_inputs_outside(chips, {"--chips": str(out / "chips" / "*.tfrecord")})
    check_inputs_outside(
        OutputLocation(str(out / "chips" / "area"), prefix=True),
        {"--chips": str(out / "chips" / "*.tfrecord")},
    )


def test_names_longer_than_the_file_system_allows_are_refused_first(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(ConfigError, match=f"allows {name_max} bytes a name"):
        check_output(OutputLocation(str(tmp_path / ("run-" * 70))))
    # A prefix gets the shard and temporary suffixes added to its name.
    with pytest.raises(ConfigError, match="adds up to"):
        check_output(OutputLocation(str(tmp_path / ("a" * (name_max - 10))), prefix=True))
    check_output(OutputLocation(str(tmp_path / ("a" * (name_max - 10)))))
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    deep = os.path.join(str(tmp_path), *(["d" * 200] * (path_max // 200)))
    with pytest.raises(ConfigError, match=f"allows {path_max} bytes a path"):
        check_output(OutputLocation(deep))


def test_pseudo_file_systems_are_refused(tmp_path):
    if file_system_type("/proc") != "proc":
        pytest.skip("no /proc mount table on this system")
    for folder in ("/proc/footprints-out", "/proc/self/out", "/sys/kernel/footprints"):
        with pytest.raises(ConfigError, match="pseudo file system"):
            check_output(OutputLocation(folder))
    assert file_system_type(str(tmp_path)) not in (None, "proc", "sysfs")


def test_gs_output_without_credentials_is_refused_at_once(tmp_path, monkeypatch):
    pytest.importorskip("google.auth")
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default login here
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # and not a Google Cloud VM
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    with pytest.raises(DefaultCredentialsError):
        google.auth.default()  # the independent check: this machine has none
    location = OutputLocation("gs://footprints-runs/area-7/score")
    with pytest.raises(ConfigError, match="no Google Cloud credentials"):
        check_output(location)
    check_output(location, translate_only=True)  # a Dataflow dry run writes nothing


def test_a_full_disk_is_named_whatever_the_writer_said(tmp_path):
    location = OutputLocation(str(tmp_path))
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("wrapped by the runner") from exc
    except RuntimeError as wrapped:
        assert "no space left on device" in (no_space_left(location, wrapped) or "")
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    gdal = RuntimeError("TIFFWriteDirectoryTagData: IO error writing tag data")
    if free > 64 * 1024 * 1024:  # an IO error on a disk with room is not a full disk
        assert no_space_left(location, gdal) is None
    assert no_space_left(location, ValueError("bad value")) is None


def test_signals_map_to_their_shell_exit_codes():
    from footprints_app import cli

    assert cli._SIGNAL_EXITS == {
        signal.SIGINT: 128 + signal.SIGINT,
        signal.SIGTERM: 128 + signal.SIGTERM,
    }
