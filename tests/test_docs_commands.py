"""Every ``footprints`` command line in the README and docs/ parses exactly (issue 11).

The documented command lines are the contract with users: each is taken from
the ```bash blocks of README.md and docs/*.md (continuation lines joined),
and parsed by the real parser without running it. A flag that is neither the
command's own nor a registered Beam pipeline option fails the test, as it
would fail the command (exit 2). Lines that elide required flags with
``...`` are checked flag by flag; ``[--flag value]`` (optional) is read as
``--flag value``.
"""

from __future__ import annotations

import glob
import os
import re
import shlex

import pytest

from footprints_app import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def documented_commands(program: str = "footprints") -> list[tuple[str, str]]:
    """``(file, command line)`` for every ``PROGRAM ...`` line of a code block."""
    found = []
    for path in [
        os.path.join(ROOT, "README.md"),
        *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))),
    ]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for block in BLOCK.findall(text):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.strip().removeprefix("$ ").replace("[", "").replace("]", "")
                line = line.split(" #", 1)[0].split(" | ", 1)[0].split(" && ", 1)[0]
                if line.startswith(f"{program} "):
                    found.append((os.path.relpath(path, ROOT), line))
    return found


COMMANDS = documented_commands()


def test_the_docs_have_command_lines():
    assert len(COMMANDS) > 10
    assert any("--region" in c.split() for _, c in COMMANDS), "no documented Dataflow line"


@pytest.mark.parametrize(
    "where, line", COMMANDS, ids=[f"{w}:{i}" for i, (w, _) in enumerate(COMMANDS)]
)
def test_documented_command_line_parses(where, line):
    argv = shlex.split(line)[1:]
    if "..." not in argv:
        try:
            cli.parse_command_line(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                return
            pytest.fail(f"{where}: `{line}` does not parse (exit {exc.code})")
        return
    # Elided: check each flag against the (sub)command's own flags and Beam's.
    parser = cli.build_parser()
    words = [w for w in argv if not w.startswith("-") and w != "..."]
    sub = parser
    for word in words:
        actions = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions or word not in actions[0].choices:
            break
        sub = actions[0].choices[word]
    ours = {o for a in sub._actions for o in a.option_strings}
    flags = [w.split("=", 1)[0] for w in argv if w.startswith("--")]
    beam = {o for a in cli.beam_option_parser()._actions for o in a.option_strings}
    unknown = [f for f in flags if f not in ours and f not in beam]
    assert not unknown, f"{where}: `{line}` uses unknown flags {unknown}"
