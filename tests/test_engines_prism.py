"""prepare, score and segment on Beam's Prism runner give the DirectRunner's rows.

Prism (Beam's Go portable runner) is built from the Go module proxy at the installed Beam's
version by ``deploy/flink/fetch-engines.sh`` and passed as ``--prism_location``: a local
path, so the PrismRunner uses it as is and downloads nothing. Prism starts its own job
service; the SDK harness runs in this process (LOOPBACK, Prism's default).

Note: Beam 2.77's DirectRunner itself tries Prism first for the pipelines it deems supported,
downloading the binary from GitHub into ``~/.apache_beam/cache/prism``; offline that fails
and it falls back to its in-process runner, which is what the reference rows come from here.
Rows are compared with the in-process DirectRunner's (``runner_rows``).
"""

from __future__ import annotations

import engines
import pytest
import runner_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prism():
    return engines.require("prism")["paths"]["binary"]


# One deadline per job and the shared inputs: the same for every engine test.
bounded = engines.bounded_job
inputs = runner_rows.engine_inputs


@pytest.mark.parametrize("job", sorted(runner_rows.JOBS))
def test_prism_gives_the_same_rows(job, inputs, prism):
    reference = runner_rows.reference_rows(job, inputs)
    output = str(inputs["root"] / f"out-{job}-prism")
    # Beam 2.77's DirectRunner first tries Prism itself (downloading it from GitHub, which
    # fails offline, then falls back), and PrismRunner keeps one job server per process:
    # without this experiment the run would reuse that server, built without our binary.
    args = [
        "--runner=PrismRunner",
        f"--prism_location={prism}",
        "--prism_log_level=warn",
        "--experiments=disable_prism_server_singleton",
    ]
    assert runner_rows.run_job(job, inputs, output, args) == reference
