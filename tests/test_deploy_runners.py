"""The jobs give the same rows on every runner the deployments use.

* **Portable runner** -- the path Flink uses: the job goes as a portable
  pipeline proto to a job service (here Beam's local job service, in Flink's
  place), whose SDK harness runs in an *external* worker pool (a separate
  process, as the Beam worker-pool sidecar is on Flink task managers). Both
  services are started by the fixture below, as subprocesses on loopback.
* **DirectRunner multi-processing** -- ``--direct_running_mode=multi_processing``
  with two worker processes, so every element crosses a process boundary.

Each run is compared row for row with the in-process DirectRunner run of the
same job on the same inputs (``prepare``, ``score``, ``segment``). Nothing
is mocked: these are Beam's own services and the jobs' public entry points.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


# --------------------------------------------------------------------------
# Local portable services: job service + external SDK worker pool
# --------------------------------------------------------------------------

def _free_port() -> int:
    # The worker pool takes its port on the command line and does not report
    # it, so one is reserved and released here; the small race is acceptable.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}: "
                               f"{open(log.name).read()[-2000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{process.args} did not listen on {port} in {STARTUP_TIMEOUT_S}s")


def _stop(process: subprocess.Popen) -> None:
    """Stops a service and the processes it started (its own process group)."""
    if process.poll() is None:
        # The worker pool's SDK workers are its children; SIGTERM skips its
        # atexit clean-up, so the whole group (created for it below) is signalled.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """A local Beam job service and an external worker pool: ``(job, worker)`` endpoints."""
    logs = tmp_path_factory.mktemp("portable")
    # The worker pool starts SDK workers with a bare `python`: it must be this
    # environment's (in the Beam SDK container it is the image's).
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    started = []
    try:
        worker_port = _free_port()
        pool_log = open(logs / "worker_pool.log", "w")
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={worker_port}"],
            env=env, stdout=pool_log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(pool)
        port_file = logs / "job_service.port"
        job_log = open(logs / "job_service.log", "w")
        job_service = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
             "--port=0", f"--port_file={port_file}"],
            env=env, stdout=job_log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(job_service)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if job_service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the job service did not start: "
                                   f"{(logs / 'job_service.log').read_text()[-2000:]}")
            time.sleep(0.2)
        job_port = int(port_file.read_text())
        _wait_for_port(worker_port, pool, pool_log)
        yield f"localhost:{job_port}", f"localhost:{worker_port}"
    finally:
        for process in reversed(started):
            _stop(process)


def _runner_args(runner: str, services=None) -> list[str]:
    if runner == "in_process":
        return ["--runner=DirectRunner"]
    if runner == "multi_processing":
        return ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                "--direct_num_workers=2"]
    job, worker = services
    return ["--runner=PortableRunner", f"--job_endpoint={job}",
            "--environment_type=EXTERNAL", f"--environment_config={worker}",
            "--sdk_worker_parallelism=1"]


# --------------------------------------------------------------------------
# Inputs, runs and their rows
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import segment_helpers
    from raster_fixtures import RES, X0, Y0, noise_tiles, write_footprints

    from tests.score_helpers import chip_record, save_classifier, write_shards

    root = tmp_path_factory.mktemp("runners")
    # prepare: two noise tiles; footprints inside, across the tile edge, and off the rasters.
    (root / "ortho").mkdir()
    noise_tiles(root / "ortho", n=2, size=120)
    geoms, ids = [], []
    for i in range(16):
        x = X0 + 4 + i * 7.0 * RES * 2
        geoms.append(shapely.box(x, Y0 - 30 - (i % 4) * 6, x + 4, Y0 - 25 - (i % 4) * 6))
        ids.append(f"fp-{i:02d}")
    geoms.append(shapely.box(X0 - 500, Y0, X0 - 490, Y0 + 10))
    ids.append("off-raster")
    footprints = write_footprints(root / "footprints.gpkg", geoms, ids,
                                  classes=["house", "barn", "shed", "church"] * 4 + ["house"],
                                  regions=["north"] * 9 + ["south"] * 8)
    # score: tied and saturated brightness scores in two regions, one bad record.
    records = [chip_record(f"c-{i:03d}", (i * 37) % 256 if i % 5 else 255,
                           region="north" if i < 60 else "south") for i in range(100)]
    records.append(b"not a chip record")
    write_shards(str(root / "chips"), records, 3)
    # segment: two adjacent tiles, a building across their edge, one nodata tile.
    a, _ = segment_helpers.bright_scene(100, 90, [(10, 10, 40, 50), (50, 60, 80, 90)], seed=1)
    b, _ = segment_helpers.bright_scene(100, 70, [(50, 0, 80, 30)], seed=2)
    segment_helpers.write_tile(str(root / "tiles" / "a.tif"), a)
    segment_helpers.write_tile(str(root / "tiles" / "b.tif"), b,
                               origin=(segment_helpers.UTM_ORIGIN[0] + 90 * 0.5,
                                       segment_helpers.UTM_ORIGIN[1]))
    segment_helpers.write_tile(str(root / "tiles" / "e.tif"), np.zeros((3, 40, 40), np.uint8),
                               origin=(segment_helpers.UTM_ORIGIN[0] + 2000,
                                       segment_helpers.UTM_ORIGIN[1]), nodata=0)
    return {
        "root": root, "rasters": str(root / "ortho" / "*.tif"), "footprints": footprints,
        "chips": str(root / "chips" / "*.tfrecord"),
        "classifier": save_classifier(str(root / "classifier")),
        "tiles": str(root / "tiles" / "*.tif"),
        "segmenter": segment_helpers.save_bright_segmenter(str(root / "segmenter"),
                                                           window_size=64),
    }


def _run_prepare(inputs, output, beam_args):
    from pipeline import prepare
    from pipeline.chipping import ChipSpec

    config = prepare.PrepareConfig(
        output=os.path.join(output, "chips"), rasters=inputs["rasters"],
        footprints=inputs["footprints"], id_field="id", class_field="building",
        region_field="region", spec=ChipSpec(size=0, margin=0.25, min_extent=6.0),
        num_shards=2)
    summary = prepare.run(config, beam_args)
    from raster_fixtures import read_shards

    chips = sorted((c.footprint_id, c.label, c.region, c.crs, c.wkb,
                    hashlib.sha256(c.image).hexdigest())
                   for c in read_shards(os.path.join(output, "chips-*-of-*.tfrecord")))
    # Paths name each run's own output; timing distributions differ from run to run.
    ignore = {"output", "shards", "metrics"}
    return {"chips": chips, "errors": _table(config.errors_dir),
            "summary": {k: v for k, v in summary.items() if k not in ignore},
            "counters": summary.get("metrics", {}).get("counters")}


def _run_score(inputs, output, beam_args):
    from pipeline.score import ScoreConfig, run_config

    config = ScoreConfig.create(
        chips=inputs["chips"], model_dir=inputs["classifier"], residential_fraction="0.4",
        output=output, batch_size=16, run_id="same-run", epsilon=0.05)
    summary = run_config(config, beam_args)
    return {"scores": _table(os.path.join(output, "scores"), key="footprint_id"),
            "errors": _table(os.path.join(output, "errors")),
            "summary": {k: summary[k] for k in ("regions", "totals")}}


def _run_segment(inputs, output, beam_args):
    from pipeline.segment import SegmentConfig, run_config

    config = SegmentConfig.create(raster=inputs["tiles"], model_dir=inputs["segmenter"],
                                  output=output, halo=8, batch_size=4, run_id="same-run",
                                  min_area=1.0)
    summary = run_config(config, beam_args)
    masks = {}
    for path in sorted(glob.glob(os.path.join(output, "masks", "*.tif"))):
        with rasterio.open(path) as src:
            masks[os.path.basename(path)] = (src.crs.to_string(), tuple(src.transform),
                                             hashlib.sha256(src.read().tobytes()).hexdigest())
    return {"masks": masks,
            "footprints": _table(os.path.join(output, "footprints"), key="geometry"),
            "errors": _table(os.path.join(output, "errors")),
            "summary": {k: summary[k] for k in ("tiles", "windows", "errors", "reconciliation")}}


def _table(folder: str, key: str | None = None) -> list[dict]:
    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    if not files:
        return []
    rows = pq.read_table(files).to_pylist()
    return sorted(rows, key=lambda r: (r[key] if key else json.dumps(r, sort_keys=True,
                                                                      default=str)))


JOBS = {"prepare": _run_prepare, "score": _run_score, "segment": _run_segment}


@pytest.fixture(scope="module")
def in_process(inputs):
    """The in-process DirectRunner rows of each job, computed once per module."""
    cache = {}

    def rows(job):
        if job not in cache:
            output = str(inputs["root"] / f"out-{job}-in_process")
            cache[job] = JOBS[job](inputs, output, _runner_args("in_process"))
        return cache[job]

    return rows


def _check_reference(job, rows):
    # The comparison means something only if the reference has real content.
    if job == "prepare":
        assert len(rows["chips"]) >= 10 and rows["errors"], rows["summary"]
        assert rows["summary"]["reconciles"]
    elif job == "score":
        assert len(rows["scores"]) == 100 and len(rows["errors"]) == 1
        assert {r["is_residential"] for r in rows["scores"]} == {True, False}
    else:
        assert len(rows["masks"]) == 2 and rows["footprints"]
        assert rows["summary"]["reconciliation"]["tiles_ok"]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_portable_runner_with_external_worker_pool_gives_the_same_rows(
        job, inputs, in_process, portable_services):
    reference = in_process(job)
    _check_reference(job, reference)
    output = str(inputs["root"] / f"out-{job}-portable")
    assert JOBS[job](inputs, output, _runner_args("portable", portable_services)) == reference


@pytest.mark.parametrize("job", sorted(JOBS))
def test_direct_multi_processing_gives_the_same_rows(job, inputs, in_process):
    reference = in_process(job)
    _check_reference(job, reference)
    output = str(inputs["root"] / f"out-{job}-multi")
    assert JOBS[job](inputs, output, _runner_args("multi_processing")) == reference
