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
