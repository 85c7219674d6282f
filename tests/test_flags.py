"""Flags are declared from the jobs' Beam-free settings (pipeline.settings)."""

import argparse
import dataclasses

import pytest

from footprints.errors import ConfigError
from footprints_app import cli
from pipeline import settings
from pipeline.chipping import ChipSpec
from pipeline.labels import ClassMap
from pipeline.settings.prepare import PrepareSettings
from pipeline.settings.score import ScoreSettings, check_epsilon
from pipeline.settings.segment import SegmentSettings

JOBS = {
    "score": (ScoreSettings,),
    "segment": (SegmentSettings,),
    "prepare": (PrepareSettings, ChipSpec, ClassMap),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


@pytest.mark.parametrize("command", sorted(JOBS))
def test_every_flag_setting_is_a_flag_with_the_fields_default_and_help(command):
    actions = {a.dest: a for a in _subparser(command)._actions}
    declared = [
        (cls, f)
        for cls in JOBS[command]
        for f in dataclasses.fields(cls)
        if settings.FLAG in f.metadata
    ]
    assert len(declared) > 5
    for cls, field in declared:
        meta = field.metadata[settings.FLAG]
        action = actions[field.name]
        assert settings.flag_name(cls, field.name) in action.option_strings
        assert action.help == meta["help"]
        shown = meta["shown_default"]
        expected = field.default if shown is dataclasses.MISSING else shown
        assert action.default == expected, (command, field.name)


def test_from_flags_is_the_settings_of_a_command_line():
    args = cli.build_parser().parse_args(
        [
            "score",
            "--chips",
            "c/*.tfrecord",
            "--model",
            "m",
            "--residential-fraction",
            "0.4",
            "--output",
            "o",
            "--quantile-epsilon",
            "0.01",
            "--output-crs",
            "EPSG:4326",
            "--batch-size",
            "7",
            "--csv",
        ]
    )
    got = settings.from_flags(ScoreSettings, args)
    # Every declared setting, the given ones as given, the others at their defaults.
    assert got["epsilon"] == 0.01 and got["crs"] == "EPSG:4326" and got["batch_size"] == 7
    assert got["csv"] is True and got["num_shards"] == 1 and got["min_batch_size"] is None
    assert "chips" not in got and "fractions" not in got


def test_score_settings_check_each_rule_on_construction():
    base = {"chips": "c", "model_dir": "m", "fractions": None, "output": "o"}
    ScoreSettings(**base)
    with pytest.raises(ConfigError, match=r"--quantile-epsilon 0.5 must be in \(0, 0.1\]"):
        ScoreSettings(**base, epsilon=0.5)
    with pytest.raises(ConfigError, match="--model-copies 0"):
        ScoreSettings(**base, model_copies=0)
    with pytest.raises(ConfigError, match="--batch-size 4 and --min-batch-size 5"):
        ScoreSettings(**base, batch_size=4, min_batch_size=5)
    # One rule, one message: ScoreChips checks epsilon with the same function.
    with pytest.raises(ConfigError, match="suits regions up to billions"):
        check_epsilon(0.0)


def test_settings_choices_equal_the_runtime_modules_choices():
    # --runtime and --model-format come from pipeline.runtimes (tests/test_runtimes.py).
    from pipeline.inference import segmenter, serving
    from pipeline.settings import segment as segment_settings

    assert settings.SERVING_GRAPHS == serving.SERVING_GRAPHS
    assert segment_settings.TTA_MODES == segmenter.TTA_MODES
