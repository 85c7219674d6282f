"""Every job reads its inputs from and writes its outputs to ``gs://``, through a GCS emulator.

Statewide runs keep tiles, vectors, chip shards, models and outputs in a bucket. Here the
bucket is served by a local emulator (PyPI ``gcp-storage-emulator``, in memory, on loopback),
and every reader the jobs use is pointed at it with its own documented option:

* Beam's ``FileSystems`` (``gcsio``, google-cloud-storage): ``STORAGE_EMULATOR_HOST``;
* GDAL ``/vsigs/`` (rasterio opens ``gs://`` tiles, pyogrio the footprints GeoPackage):
  ``CPL_GS_ENDPOINT`` with ``GS_NO_SIGN_REQUEST=YES``. The emulator does not implement the
  XML API's bucket listing (``GET /bucket/?prefix=...`` answers 501), which GDAL uses to look
  for side-car files; ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` stops it asking;
* TensorFlow reads ``gs://`` only from Google's endpoint (no emulator option): the jobs copy a
  remote model to local disk through ``FileSystems`` first
  (:func:`footprints.contracts.local_model_dir`).

The inputs of ``runner_rows`` are uploaded, each job runs on them with gs:// paths only
(DirectRunner), its outputs (chip shards, scores, masks, footprints, errors, summary) are
downloaded and their rows compared with the same job's run on local disk.
"""

from __future__ import annotations

import json
import os
import sys

import engines
import pytest
import runner_rows

pytestmark = pytest.mark.slow

BUCKET = "footprints-it"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A running emulator, with this process's clients pointed at it; yields the bucket URL."""
    pytest.importorskip("gcp_storage_emulator")
    logs = tmp_path_factory.mktemp("gcs")
    port = engines.free_port()
    settings = {
        "STORAGE_EMULATOR_HOST": f"http://localhost:{port}",
        "CPL_GS_ENDPOINT": f"http://localhost:{port}/",
        "GS_NO_SIGN_REQUEST": "YES",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GOOGLE_CLOUD_PROJECT": "footprints-test",
    }
    saved = {k: os.environ.get(k) for k in settings}
    with engines.services() as started:
        emulator = engines.Service(
            "gcs_emulator",
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host=localhost",
                f"--port={port}",
                "--in-memory",
                f"--default-bucket={BUCKET}",
            ],
            logs,
        )
        started.append(emulator)
        emulator.wait_for_port(port)
        os.environ.update(settings)
        try:
            yield f"gs://{BUCKET}"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def upload_tree(local: str, url: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    for folder, _, names in os.walk(local):
        for name in names:
            path = os.path.join(folder, name)
            with (
                open(path, "rb") as src,
                FileSystems.create(url + "/" + os.path.relpath(path, local)) as dst,
            ):
                dst.write(src.read())


def download_tree(url: str, local: str) -> list[str]:
    """Copies every object under ``url`` to ``local``; returns their relative paths."""
    from apache_beam.io.filesystems import FileSystems

    names = []
    for meta in FileSystems.match([url + "/**"])[0].metadata_list:
        name = meta.path[len(url) + 1 :]
        os.makedirs(os.path.dirname(os.path.join(local, name)), exist_ok=True)
        with FileSystems.open(meta.path) as src, open(os.path.join(local, name), "wb") as dst:
            dst.write(src.read())
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return runner_rows.shared_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def remote_inputs(inputs, gcs):
    """The same inputs, uploaded: every path a gs:// URL."""
    root = str(inputs["root"])
    models = ("classifier", "segmenter", "onnx-classifier", "onnx-segmenter")
    for name in ("ortho", "chips", "tiles", *models):
        upload_tree(os.path.join(root, name), f"{gcs}/inputs/{name}")
    upload_tree_file = os.path.join(root, "footprints.gpkg")
    from apache_beam.io.filesystems import FileSystems

    with (
        open(upload_tree_file, "rb") as src,
        FileSystems.create(f"{gcs}/inputs/footprints.gpkg") as dst,
    ):
        dst.write(src.read())
    remote = {
        k: v.replace(root, f"{gcs}/inputs") if isinstance(v, str) else v for k, v in inputs.items()
    }
    assert all(v.startswith("gs://") for k, v in remote.items() if k != "root"), remote
    return remote


# What each job must have written to the bucket (besides its tables' parquet files).
EXPECTED = {
    "prepare": {
        "chips-summary.json",
        "chips-00000-of-00002.tfrecord",
        "chips-00001-of-00002.tfrecord",
    },
    "score": {"summary.json"},
    "segment": {"summary.json"},
}


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_job_reads_and_writes_gs_and_gives_the_same_rows(job, inputs, remote_inputs, gcs, tmp_path):
    reference = runner_rows.reference_rows(job, inputs)
    url = f"{gcs}/runs/{job}"
    start, rows_of = runner_rows.JOBS[job]
    summary = start(remote_inputs, url, ["--runner=DirectRunner"])
    written = download_tree(url, str(tmp_path))
    kind = job.split("-")[0]  # score-onnxruntime writes what score does
    assert EXPECTED[kind] <= set(written), written
    if kind == "segment":
        assert {"masks/a.tif", "masks/b.tif"} <= set(written), written
    assert any(name.endswith(".parquet") for name in written), written
    name = "chips-summary.json" if job == "prepare" else "summary.json"
    assert json.loads((tmp_path / name).read_text()) == summary
    rows = rows_of(str(tmp_path), summary)
    # Dead letters name their source file: the same file, at its gs:// address.
    for row in rows["errors"]:
        if row.get("source"):
            row["source"] = row["source"].replace(f"{gcs}/inputs", str(inputs["root"]))
    assert rows == reference
