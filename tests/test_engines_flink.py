"""prepare, score and segment on a real Flink cluster give the DirectRunner's rows.

The fixture starts, on loopback, a Flink session cluster (one JobManager, one
TaskManager with two slots, from the Flink distribution fetched by
``deploy/flink/fetch-engines.sh``), Beam's Flink job server pointed at it with
``--flink-master``, and the Python SDK worker pool as the EXTERNAL environment:
the shape of ``deploy/flink`` (job server, task managers, worker-pool sidecar),
submitted with the flags of ``deploy/flink/submit.sh``. Each job's rows are
compared with the in-process DirectRunner's (``runner_rows``), and the cluster's
REST API must list the job as FINISHED, so the rows cannot have come from
anywhere but Flink. Every service is stopped, with its process group, at the end.

``--experiments=pre_optimize=all``: the SDK fuses the graph into stages before submission.
Without it the job server's own fuser fails prepare ("PCollectionNodes [...ReadErrorsOnly...]
were consumed but never produced", the Java runners' bug apache/beam#34647, fixed after 2.62).

Versions (``.tools/versions.json``): Flink 1.19.3, Beam Java 2.62.0 job server
(the newest served on Maven Central for a Flink that Beam 2.77 supports),
Python SDK 2.77.0.
"""

from __future__ import annotations

import json
import os
import subprocess

import engines
import pytest
import runner_rows

pytestmark = pytest.mark.slow

SUBMIT_TIMEOUT_S = 600  # one small job on a busy 2-core machine takes about a minute


@pytest.fixture(scope="module")
def flink(tmp_path_factory):
    """``(rest, job_endpoint, artifact_endpoint, worker_pool)`` of a running Flink stack."""
    engines.require("flink")
    logs = tmp_path_factory.mktemp("flink")
    with engines.services() as started:
        rest = engines.start_flink_cluster(logs, started, slots=2)
        job, artifact = engines.start_flink_job_server(logs, started, rest)
        worker = engines.start_worker_pool(logs, started)
        yield rest, job, artifact, worker


# One deadline per job and the shared inputs: the same for every engine test.
bounded = engines.bounded_job
inputs = runner_rows.engine_inputs


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_flink_cluster_gives_the_same_rows(job, inputs, flink):
    reference = runner_rows.reference_rows(job, inputs)
    rest, job_endpoint, artifact_endpoint, worker = flink
    engines.wait_until_flink_idle(rest)
    before = {j["jid"] for j in engines.flink_jobs(rest)}
    output = str(inputs["root"] / f"out-{job}-flink")
    rows = runner_rows.run_job(
        job, inputs, output, engines.flink_submit_args(job_endpoint, artifact_endpoint, worker)
    )
    ran = [j for j in engines.flink_jobs(rest) if j["jid"] not in before]
    assert [j["state"] for j in ran] == ["FINISHED"], ran
    assert rows == reference


def test_submit_script_runs_score_on_the_flink_cluster(inputs, flink, tmp_path):
    """docs/deploy.md's submit command, as documented, against the local cluster."""
    reference = runner_rows.reference_rows("score", inputs)
    rest, job_endpoint, artifact_endpoint, worker = flink
    engines.wait_until_flink_idle(rest)
    before = {j["jid"] for j in engines.flink_jobs(rest)}
    output = str(tmp_path / "score")
    # The two endpoints the script fixes for the compose/Kubernetes layout (artifact port
    # 8098, worker pool on localhost:50000) are this cluster's loopback ports here.
    env = engines.venv_env(ARTIFACT_ENDPOINT=artifact_endpoint, WORKER_POOL=worker)
    done = subprocess.run(
        [
            "bash",
            os.path.join(engines.ROOT, "deploy", "flink", "submit.sh"),
            "score",
            job_endpoint,
            "2",
            "--",
            "--chips",
            inputs["chips"],
            "--model",
            inputs["classifier"],
            "--residential-fraction",
            "0.4",
            "--output",
            output,
            "--batch-size",
            "16",
            "--run-id",
            "same-run",
            "--quantile-epsilon",
            "0.05",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBMIT_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ran = [j for j in engines.flink_jobs(rest) if j["jid"] not in before]
    assert [j["state"] for j in ran] == ["FINISHED"], ran
    with open(os.path.join(output, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert runner_rows.score_rows(output, summary) == reference
