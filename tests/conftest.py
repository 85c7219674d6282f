"""Shared fixtures: the generated sample area, built once per test session."""

import os

import pytest

# TensorFlow's C++ start-up chatter is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def sample_area(tmp_path_factory):
    """A 2x2-tile sample area (512 px tiles, 0.5 m, EPSG:32615), seed 0."""
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area

    return generate_sample_area(
        str(tmp_path_factory.mktemp("sample_area")), SampleAreaConfig(seed=0)
    )


# --------------------------------------------------------------------------
# The `slow` rule: a test that trains a model or runs a job is marked slow.
#
# Checked while the tests run, not by reading them, so no call path escapes
# it: the test itself, its fixtures, the helpers they call, `cli.main(...)`.
# Two things count as heavy:
#
# * training: `keras.Model.fit` is called;
# * a job: a Beam pipeline is run from a job module (`JOB_MODULES`: the
#   prepare, score and segment jobs and `run_to_summary`, through which every
#   job runs); a `TestPipeline` around one transform is not a job.
#
# Both are seen by wrapping class methods (`Pipeline.run`, `Model.fit`),
# which every caller looks up when it calls, however it imported them. A test
# not marked slow that does either, or that uses a fixture that did, fails
# with the reason. The wrappers are installed only once Beam or Keras is
# imported, so the rule costs nothing to tests that use neither.
# --------------------------------------------------------------------------

import sys  # noqa: E402

JOB_MODULES = (
    "pipeline.prepare",
    "pipeline.score",
    "pipeline.segment",
    "pipeline.jobs",
    "pipeline.monitoring",
)

_heavy: list[str] = []  # what the current test (setup or call) did that is heavy
_heavy_fixtures: dict[str, str] = {}  # fixture name -> what its setup did


def _job_frame() -> str | None:
    """The job module and function on the stack, e.g. ``pipeline.score.run_config``."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module in JOB_MODULES:
            return f"{module}.{frame.f_code.co_name}"
        frame = frame.f_back
    return None


def _install_wrappers() -> None:
    beam = sys.modules.get("apache_beam")
    if beam is not None and not getattr(beam.Pipeline.run, "_slow_rule", False):
        run = beam.Pipeline.run

        def pipeline_run(self, *args, **kwargs):
            job = _job_frame()
            if job:
                _heavy.append(f"runs a job pipeline ({job})")
            return run(self, *args, **kwargs)

        pipeline_run._slow_rule = True
        beam.Pipeline.run = pipeline_run
    keras = sys.modules.get("keras")
    if keras is not None and not getattr(keras.Model.fit, "_slow_rule", False):
        fit = keras.Model.fit

        def model_fit(self, *args, **kwargs):
            _heavy.append(f"trains a model ({type(self).__name__}.fit)")
            return fit(self, *args, **kwargs)

        model_fit._slow_rule = True
        keras.Model.fit = model_fit


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Remembers fixtures whose setup trains or runs a job."""
    _install_wrappers()
    before = len(_heavy)
    try:
        return (yield)
    finally:
        _install_wrappers()
        if len(_heavy) > before:
            _heavy_fixtures.setdefault(fixturedef.argname, _heavy[before])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Starts each test with a clean record."""
    _heavy.clear()
    _install_wrappers()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fails a test not marked slow that trained or ran a job, or used a fixture that did."""
    _install_wrappers()
    result = yield
    if item.get_closest_marker("slow") is not None:
        return result
    reasons = list(dict.fromkeys(_heavy))
    reasons += [
        f"uses fixture {name!r}, which {why}"
        for name, why in _heavy_fixtures.items()
        if name in item.fixturenames
    ]
    if reasons:
        pytest.fail(
            f"{item.nodeid} {'; '.join(reasons)}: mark it @pytest.mark.slow "
            "(the slow rule, tests/conftest.py)",
            pytrace=False,
        )
    return result
