"""No function in pipeline/ is over 80 lines (issue 25: job modules only wire).

A function's length is ``end_lineno - lineno + 1`` of its ``ast`` node
(decorators not counted, docstring included); nested functions count inside
their parent and on their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 80


def _long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > limit:
                    found.append(
                        f"{path.relative_to(root.parent)}:{node.lineno} {node.name} {length}"
                    )
    return found


def test_the_counter_finds_a_long_function(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n" + "    x = 1\n" * 80 + "\n\ndef g():\n    pass\n")
    assert _long_functions(tmp_path, LIMIT) == [f"{tmp_path.name}/m.py:1 f 81"]


def test_no_pipeline_function_is_over_80_lines():
    found = _long_functions(ROOT / "pipeline", LIMIT)
    assert not found, f"functions over {LIMIT} lines (split them into named steps): {found}"
