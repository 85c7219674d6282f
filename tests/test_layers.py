"""The layers point one way (issue 13; docs/architecture.md, "Layers").

From the bottom up:

* the floor, ``footprints`` (contracts, errors, the version): imports none of
  the project's other packages;
* ``pipeline`` (Beam jobs) and ``model_training`` (Keras training): import the
  floor only, and not each other. They meet through the floor's contracts
  (chip records, model signatures), never through each other's code; none
  imported the other when the layers were drawn, and a piece both need
  belongs in the floor;
* the application, ``footprints_app`` (the command line, reports, the sample
  area): may import everything below it.

The first test reads every module's imports with :mod:`ast` (module level and
inside functions, relative ones resolved; ``tools/import_graph.py`` is that
reader), so an import that only runs in a rarely used branch is caught too.
Inside ``pipeline`` the same graph, by unit (a top-level module or a folder),
must point down its floors (docs/architecture.md, "Floors of pipeline/"): no
unit imports one on a higher floor, job modules do not import each other, and
there is no cycle. The second runs the command line's
``--help`` in a fresh interpreter and checks that neither Beam nor TensorFlow
was loaded, which keeps ``footprints --help`` fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_import_graph():
    # tools/ is not a package: the script is loaded from its file, as `python tools/...` runs it.
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "tools" / "import_graph.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


import_graph = _load_import_graph()
_imported = import_graph.imported

#: Each layered package and what it may import from the project.
ALLOWED = {
    "footprints": {"footprints"},
    "pipeline": {"footprints", "pipeline"},
    "model_training": {"footprints", "model_training"},
    "footprints_app": {"footprints", "pipeline", "model_training", "footprints_app"},
}


def test_no_module_imports_a_layer_above_it():
    offending = []
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            checked += 1
            for line, target in _imported(path):
                top = target.split(".")[0]
                if top in ALLOWED and top not in allowed:
                    offending.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert checked > 50, f"only {checked} modules found under {ROOT}"
    assert not offending, (
        "imports that point up (or across, between pipeline and model_training); "
        "move the caller up or the shared piece down into footprints/:\n" + "\n".join(offending)
    )


def test_the_import_reader_sees_nested_and_relative_imports(tmp_path):
    # The check above can only fail if _imported finds imports inside functions and
    # resolves relative ones; proven here on a module written for it.
    package = tmp_path / "pipeline" / "sub"
    package.mkdir(parents=True)
    module = package / "mod.py"
    module.write_text(
        "import os\n"
        "from . import sibling\n"
        "from .. import other\n"
        "def run():\n"
        "    from footprints_app import cli\n",
        encoding="utf-8",
    )
    assert _imported(module, tmp_path) == [
        (1, "os"),
        (2, "pipeline.sub"),
        (3, "pipeline"),
        (5, "footprints_app"),
    ]


def test_the_import_reader_leaves_out_type_checking_imports(tmp_path):
    # An import under `if TYPE_CHECKING:` never runs (it only names a type for mypy),
    # so it ties no floor to another; its `else:` branch runs and is read.
    module = tmp_path / "pipeline" / "settings.py"
    module.parent.mkdir()
    module.write_text(
        "import typing\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pipeline.sources import vectors\n"
        "if typing.TYPE_CHECKING:\n"
        "    import pipeline.score\n"
        "else:\n"
        "    import json\n"
        "if __debug__:\n"
        "    import pipeline.segment\n",
        encoding="utf-8",
    )
    assert _imported(module, tmp_path) == [
        (1, "typing"),
        (2, "typing"),
        (8, "json"),
        (10, "pipeline.segment"),
    ]


def test_pipeline_imports_point_down_its_floors():
    edges = import_graph.unit_edges(ROOT)
    assert len(edges) > 40, f"only {len(edges)} edges between pipeline's units found"
    up = import_graph.upward(edges)
    assert not up, (
        "imports in pipeline/ that point up its floors (move the shared value down, "
        "into pipeline/values.py or footprints/, or the caller up):\n" + "\n".join(up)
    )
    assert import_graph.cycles(edges) == []
    assert import_graph.main() == 0


def test_the_floor_check_finds_upward_edges_and_cycles():
    # The check above can only fail if upward() and cycles() see a bad graph; a small
    # one with an upward edge (a -> c), an edge across the sealed top floor (c -> d),
    # a unit without a floor (x) and a cycle (a -> b -> a).
    floors = {"a": 0, "b": 0, "c": 1, "d": 1}
    edges = {("a", "b"): ["a.py:1"], ("b", "a"): ["b.py:2"], ("a", "c"): ["a.py:3"]}
    edges |= {("c", "d"): ["c.py:4"], ("d", "x"): ["d.py:5"]}
    assert import_graph.upward(edges, floors, sealed={1}) == [
        "a (floor 0) imports c (floor 1) at a.py:3",
        "c (floor 1) imports d (floor 1) at c.py:4",
        "x has no floor: add it to FLOORS (d.py:5)",
    ]
    assert import_graph.upward({("c", "a"): ["c.py:1"]}, floors, sealed={1}) == []
    assert import_graph.cycles(edges) == [["a", "b"]]
    assert import_graph.cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [
        ["a", "b", "c"]
    ]


def test_the_graph_reads_from_package_import_module(tmp_path):
    # ``from pipeline import chipping`` is an edge to the chipping unit, not to pipeline.
    (tmp_path / "pipeline" / "chipping").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "chipping" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "prepare.py").write_text("from pipeline import chipping, VALUE\n")
    assert import_graph.unit_edges(tmp_path) == {("prepare", "chipping"): ["pipeline/prepare.py:1"]}


#: Runs ``--help`` of the command and of every subcommand (nested ones too) in one
#: interpreter, then reports the exit codes and which heavy frameworks were loaded.
HELP_SCRIPT = """
import argparse, contextlib, io, json, sys
from footprints_app import cli

def commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from commands(sub, (*prefix, name))

codes = {}
for argv in [(), *commands(cli.build_parser())]:
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        try:
            code = cli.main([*argv, "--help"])
        except SystemExit as done:
            code = done.code
    codes[" ".join(argv)] = [code, "usage:" in shown.getvalue()]
loaded = sorted(m for m in ("apache_beam", "tensorflow") if m in sys.modules)
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )


def test_help_loads_neither_beam_nor_tensorflow():
    done = _python("-c", HELP_SCRIPT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    codes = report["codes"]
    for command in ("", "prepare", "train", "train classifier", "score", "segment", "demo"):
        assert command in codes, f"no {command!r} subcommand found in {sorted(codes)}"
    assert all(code == [0, True] for code in codes.values()), codes
    assert report["loaded"] == [], (
        f"--help loaded {report['loaded']}: import them inside the command's handler, "
        "not at module level or in register()"
    )


def test_the_module_entry_point_runs():
    done = _python("-m", "footprints_app.cli", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: footprints" in done.stdout and "prepare" in done.stdout
