"""The `slow` rule of tests/conftest.py finds a job by the module that runs its pipeline."""

import conftest


def _caller_of_pipeline_run():
    # Stands in for the `Pipeline.run` wrapper: `_job_frame` skips itself and its caller.
    return conftest._job_frame()


def _define(module: str):
    namespace = {"__name__": module, "probe": _caller_of_pipeline_run}
    exec("def run_config():\n    return probe()\n", namespace)
    return namespace["run_config"]


def test_a_pipeline_run_from_a_job_module_is_a_job():
    assert _define("pipeline.score")() == "pipeline.score.run_config"
    assert _define("pipeline.monitoring")() == "pipeline.monitoring.run_config"


def test_a_pipeline_run_from_anywhere_else_is_not():
    assert _define("pipeline.thresholds")() is None
    assert _define("tests.test_thresholds")() is None
    assert _caller_of_pipeline_run() is None
