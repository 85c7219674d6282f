"""The import graph of ``pipeline/`` by floor: its edges, those that point up, its cycles.

``pipeline/`` is built in floors (docs/architecture.md, "Floors of pipeline/"). A
unit is a top-level module (``pipeline/keys.py``) or a folder (``pipeline/sources/``);
each unit sits on one floor of :data:`FLOORS` and may import units on its own floor
or below, never above (the job modules, on the top floor, not even each other), and
no two units may import each other, even through others.

Usage::

    python tools/import_graph.py          # prints the graph; exit 1 on an upward
                                          # edge, a cycle or a unit without a floor

:func:`imported` is the one reader of a module's imports (module level and inside
functions, relative ones resolved); ``tests/test_layers.py`` uses it for the layers
between packages too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The floors of ``pipeline/``, from the ground up: (name, units on it).
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "values",
        (
            "ptransform",
            "beam_costs",
            "keys",
            "labels",
            "values",
            "windows",
            "runtimes",
            "summary",
            "counting",
            "flags",
            "settings",
        ),
    ),
    (
        "stage pieces",
        (
            "sources",
            "inference",
            "stitching",
            "thresholds",
            "writers",
            "chipping",
            "polygonize",
            "evaluation",
        ),
    ),
    ("composites and job plumbing", ("scoring", "jobs", "monitoring")),
    ("jobs", ("prepare", "score", "segment")),
)

#: Floors whose units never import one another: job modules only wire the floors below.
SEALED_FLOORS = frozenset({len(FLOORS) - 1})

#: A unit -> its floor's number.
FLOOR_OF = {unit: number for number, (_, units) in enumerate(FLOORS) for unit in units}

Edges = Mapping[tuple[str, str], Sequence[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    """``pipeline/sources/rasters.py`` -> ``pipeline.sources.rasters`` (a package: its name)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_type_checking(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those only type checkers see (an ``if TYPE_CHECKING:`` body)."""
    todo = deque([tree])  # breadth first, in ast.walk's order
    while todo:
        node = todo.popleft()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend([node.test, *node.orelse])
        else:
            todo.extend(ast.iter_child_nodes(node))
        yield node


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import the file runs, nested ones included.

    ``from package import module`` names the module when ``root`` holds it (so
    ``from pipeline import chipping`` is ``pipeline.chipping``), else the package.
    Imports under ``if TYPE_CHECKING:`` are left out: they name types for the
    type checker and never run, so they tie no module to another.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            modules = [
                f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}", root)
            ]
            found += [(node.lineno, module) for module in modules] or [(node.lineno, target)]
    return found


def unit_of(module: str, package: str = "pipeline") -> str | None:
    """``pipeline.sources.rasters`` -> ``sources``; None outside ``package`` or for it."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else None


def unit_edges(root: Path = ROOT, package: str = "pipeline") -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the ``file:line`` of each such import."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((root / package).rglob("*.py")):
        source = unit_of(module_name(path, root), package)
        for line, target in imported(path, root):
            dest = unit_of(target, package)
            if source and dest and dest != source:
                edges[source, dest].append(f"{path.relative_to(root)}:{line}")
    return dict(edges)


def upward(
    edges: Edges, floor_of: Mapping[str, int] = FLOOR_OF, sealed: Iterable[int] = SEALED_FLOORS
) -> list[str]:
    """The edges into a higher floor or across a sealed one; those of a unit without a floor."""
    found = []
    sealed = frozenset(sealed)
    for (source, dest), where in sorted(edges.items()):
        if source not in floor_of or dest not in floor_of:
            missing = source if source not in floor_of else dest
            found.append(f"{missing} has no floor: add it to FLOORS ({', '.join(where)})")
        elif floor_of[dest] > floor_of[source] or (
            floor_of[dest] == floor_of[source] and floor_of[dest] in sealed
        ):
            found.append(
                f"{source} (floor {floor_of[source]}) imports {dest} (floor {floor_of[dest]}) "
                f"at {', '.join(where)}"
            )
    return found


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected groups of more than one unit (Tarjan), each sorted."""
    graph: dict[str, list[str]] = defaultdict(list)
    for source, dest in edges:
        graph[source].append(dest)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main(argv: Sequence[str] = ()) -> int:
    """Prints the graph, its upward edges and cycles; 1 if there are any, else 0."""
    edges = unit_edges()
    for number, (name, units) in enumerate(FLOORS):
        print(f"floor {number} ({name}): {', '.join(units)}")
    print(f"\n{len(edges)} edges between units:")
    for (source, dest), where in sorted(edges.items()):
        print(f"  {source} -> {dest}  ({len(where)} imports)")
    found = {unit_of(module_name(path)) or "" for path in (ROOT / "pipeline").rglob("*.py")}
    up = [f"{unit} has no floor: add it to FLOORS" for unit in sorted(found - {"", *FLOOR_OF})]
    up += upward(edges)
    loops = cycles(edges)
    print(
        f"\n{len(up)} upward edges (or across the jobs' floor)"
        + "".join(f"\n  {edge}" for edge in up)
    )
    print(f"{len(loops)} cycles" + "".join(f"\n  {' <-> '.join(loop)}" for loop in loops))
    return 1 if up or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
