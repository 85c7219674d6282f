"""The pure parts of the classifier handlers: accelerator hints, TensorFlow error lines and
what a score must be to be labelled."""

import math

import pytest

from footprints.errors import ConfigError, Reason
from pipeline.inference.handlers import (
    InferenceFailure,
    accelerator_count,
    score_outcome,
    tf_error_reason,
)


@pytest.mark.parametrize(
    "hint, count",
    [
        ("type:nvidia-tesla-t4;count:1;install-nvidia-driver", 1),
        ("type:nvidia-l4;count:4", 4),
        ("type:nvidia-h100-80gb;count:8;install-nvidia-driver:5xx", 8),
    ],
)
def test_accelerator_count_reads_the_gpu_count_of_a_beam_hint(hint, count):
    assert accelerator_count(hint) == count


@pytest.mark.parametrize(
    "hint",
    ["nvidia-tesla-t4", "type:nvidia-tesla-t4;count:0", "count:1;type:t4", "type:t4;count:x"],
)
def test_a_malformed_accelerator_hint_is_a_config_error_with_an_example(hint):
    with pytest.raises(ConfigError) as err:
        accelerator_count(hint)
    assert repr(hint) in str(err.value)
    assert "type:nvidia-tesla-t4;count:1;install-nvidia-driver" in str(err.value)


def test_tf_error_reason_keeps_the_line_that_says_what_went_wrong():
    noisy = (
        "Graph execution error:\n\nDetected at node DecodePng defined at (most recent call last):\n"
        '  File "serve.py", line 3\n'
        "Invalid PNG. Failed to initialize decoder.\n"
        "\t [[{{node DecodePng}}]] [Op:__inference_serve_1]"
    )
    assert tf_error_reason(ValueError(noisy)) == "Invalid PNG. Failed to initialize decoder."
    assert tf_error_reason(ValueError("plain reason")) == "plain reason"
    assert tf_error_reason(ValueError("")) == "ValueError"


@pytest.mark.parametrize(
    "score, reason",
    [
        (0.0, None),
        (1.0, None),
        (0.37, None),
        (7.5, Reason.SCORE_OUT_OF_RANGE),
        (-0.01, Reason.SCORE_OUT_OF_RANGE),
        (1.0000001, Reason.SCORE_OUT_OF_RANGE),
        (math.nan, Reason.NON_FINITE_SCORE),
        (math.inf, Reason.NON_FINITE_SCORE),
    ],
)
def test_only_a_probability_is_labelled(score, reason):
    outcome = score_outcome(score)
    if reason is None:
        assert outcome == score
    else:
        assert isinstance(outcome, InferenceFailure) and outcome.error == reason
        assert "sigmoid" in outcome.message or "normalization" in outcome.message
