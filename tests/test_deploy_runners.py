"""The jobs give the same rows on every runner the deployments use.

* **Portable runner** -- the protocol Flink uses: the job goes as a portable
  pipeline proto to a job service (here Beam's local job service), whose SDK
  harness runs in an *external* worker pool (a separate process, as the Beam
  worker-pool sidecar is on Flink task managers). The real Flink cluster runs
  the same jobs in ``test_engines_flink.py``, Prism in ``test_engines_prism.py``.
* **DirectRunner multi-processing** -- ``--direct_running_mode=multi_processing``
  with two worker processes, so every element crosses a process boundary.

Each run is compared row for row with the in-process DirectRunner run of the
same job on the same inputs (``prepare``, ``score``, ``segment``; see
``runner_rows``). Nothing is mocked: these are Beam's own services and the
jobs' public entry points.
"""

from __future__ import annotations

import engines
import pytest
import runner_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """A local Beam job service and an external worker pool: ``(job, worker)`` endpoints."""
    logs = tmp_path_factory.mktemp("portable")
    with engines.services() as started:
        worker = engines.start_worker_pool(logs, started)
        job = engines.start_local_job_service(logs, started)
        yield job, worker


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return runner_rows.shared_inputs(tmp_path_factory)


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_portable_runner_with_external_worker_pool_gives_the_same_rows(
    job, inputs, portable_services
):
    reference = runner_rows.reference_rows(job, inputs)
    endpoint, worker = portable_services
    output = str(inputs["root"] / f"out-{job}-portable")
    args = [
        "--runner=PortableRunner",
        f"--job_endpoint={endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker}",
        "--sdk_worker_parallelism=1",
    ]
    assert runner_rows.run_job(job, inputs, output, args) == reference


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_direct_multi_processing_gives_the_same_rows(job, inputs):
    reference = runner_rows.reference_rows(job, inputs)
    output = str(inputs["root"] / f"out-{job}-multi")
    args = [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]
    assert runner_rows.run_job(job, inputs, output, args) == reference
