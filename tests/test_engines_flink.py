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

Versions (``.tools/versions.json``): Flink 1.19.3, Beam Java 2.62.0 job server
(the newest served on Maven Central for a Flink that Beam 2.77 supports),
Python SDK 2.77.0.
"""

from __future__ import annotations

import pytest

import engines
import runner_rows

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return runner_rows.shared_inputs(tmp_path_factory)


def submit_args(job_endpoint: str, artifact_endpoint: str, worker: str,
                parallelism: int = 2) -> list[str]:
    """The Beam flags deploy/flink/submit.sh passes (test_deploy_manifests checks they agree)."""
    return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
            f"--artifact_endpoint={artifact_endpoint}", "--environment_type=EXTERNAL",
            f"--environment_config={worker}", "--sdk_worker_parallelism=1",
            f"--parallelism={parallelism}"]


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_flink_cluster_gives_the_same_rows(job, inputs, flink):
    reference = runner_rows.reference_rows(job, inputs)
    rest, job_endpoint, artifact_endpoint, worker = flink
    before = {j["jid"] for j in engines.flink_jobs(rest)}
    output = str(inputs["root"] / f"out-{job}-flink")
    rows = runner_rows.run_job(job, inputs, output,
                               submit_args(job_endpoint, artifact_endpoint, worker))
    ran = [j for j in engines.flink_jobs(rest) if j["jid"] not in before]
    assert [j["state"] for j in ran] == ["FINISHED"], ran
    assert rows == reference
