"""The shared flag groups: defaults shown by --help are the configs' own defaults."""

import argparse

from footprints_app import cli
from footprints_app.commands._flags import ConfigDefault, _static_defaults


def _config_defaults(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _config_defaults(sub, (*path, name))
        elif isinstance(action.default, ConfigDefault):
            yield " ".join(path), action.dest, action.default


def test_help_defaults_read_from_source_equal_the_imported_config_defaults():
    found = list(_config_defaults(cli.build_parser()))
    # prepare, score and segment all take defaults from their configs.
    assert {command for command, _, _ in found} >= {"prepare", "score", "segment"}
    for command, dest, default in found:
        module, name = default.config.split(":")
        # Found in the source, so --help needs no import (test_layers checks none happens).
        assert default.field in _static_defaults(module, name), (command, dest, default.config)
        # shown() reads the class body with ast (no Beam import); value() imports it.
        assert default.shown() == default.value(), (command, dest, default.config)
