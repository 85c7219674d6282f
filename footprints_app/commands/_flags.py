"""Flag groups the pipeline commands share, with defaults taken from the job configs.

``prepare``, ``score`` and ``segment`` share flags (the output, the run id,
``--dry-run``, batch sizes, the accelerator hint, the extra tables). Each
group is added by one function here, so a flag is spelled, explained and
checked one way. A default is never written here: it is the field default of
the job's config dataclass (``ScoreConfig.batch_size``, ...), read only when
``--help`` is printed, so building the parser imports neither Beam nor
TensorFlow. A flag left out arrives as :class:`ConfigDefault`;
:func:`resolve_defaults` (called by ``footprints_app.cli.parse_command_line``)
replaces it with the field's value once the command is known, and
:func:`settings` maps flags to the config's setting names.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import importlib.util
import os
from typing import Any


class ConfigDefault:
    """The default of ``field`` of a job config class, looked up when shown.

    Args:
        config: ``"module:Class"`` of a config dataclass, e.g.
            ``"pipeline.score:ScoreConfig"``.
        field: The field's name.
    """

    def __init__(self, config: str, field: str):
        self.config = config
        self.field = field

    def value(self) -> Any:
        """The field's default (imports the config's module)."""
        module, name = self.config.split(":")
        cls = getattr(importlib.import_module(module), name)
        return {f.name: f.default for f in dataclasses.fields(cls)}[self.field]

    def shown(self) -> Any:
        """The field's default read from the config module's source, not imported.

        The config modules import Beam (about two seconds), which ``--help``
        must not pay, so the default is read from the class body with
        :mod:`ast`: a literal, ``dataclasses.field(default=literal)`` or a
        module-level literal constant. Anything else falls back to
        :meth:`value`. ``tests/test_flags.py`` checks both ways agree for
        every flag.
        """
        module, name = self.config.split(":")
        found = _static_defaults(module, name)
        return found[self.field] if self.field in found else self.value()

    def __str__(self) -> str:
        """What ``%(default)s`` shows in ``--help``."""
        return str(self.shown())


@functools.cache
def _module_tree(module: str) -> ast.Module | None:
    """The parsed source of ``module``, found without importing it."""
    # Only the top-level package is looked up: find_spec of a submodule would
    # import its parent packages, and pipeline.inference's imports Beam.
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.origin:
        return None
    base = os.path.join(os.path.dirname(spec.origin), *rest)
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if rest and os.path.isfile(path) or not rest and path.endswith("__init__.py"):
            with open(path if rest else spec.origin, encoding="utf-8") as f:
                return ast.parse(f.read())
    return None


@functools.cache
def _static_constants(module: str) -> dict[str, Any]:
    """Module-level literal constants of ``module``, and those it imports by name."""
    tree = _module_tree(module)
    constants: dict[str, Any] = {}
    for node in tree.body if tree else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    constants[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            wanted = {a.name: a.asname or a.name for a in node.names}
            if node.module.split(".")[0] in ("pipeline", "model_training", "footprints"):
                source = _static_constants(node.module)
                constants.update({alias: source[n] for n, alias in wanted.items() if n in source})
    return constants


@functools.cache
def _static_defaults(module: str, name: str) -> dict[str, Any]:
    """``{field: default}`` of the literal defaults of class ``name`` in ``module``'s source."""
    tree = _module_tree(module)
    if tree is None:
        return {}
    constants = _static_constants(module)

    def literal(value: ast.expr) -> Any:
        if isinstance(value, ast.Name) and value.id in constants:
            return constants[value.id]
        if isinstance(value, ast.Call) and getattr(value.func, "attr", None) == "field":
            for kw in value.keywords:
                if kw.arg == "default":
                    return literal(kw.value)
            raise ValueError("no literal default")
        return ast.literal_eval(value)

    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.value is not None
                ):
                    try:
                        out[item.target.id] = literal(item.value)
                    except (ValueError, TypeError, SyntaxError):
                        pass
    return out


def resolve_defaults(args: argparse.Namespace) -> None:
    """Replaces every :class:`ConfigDefault` in ``args`` with the config field's value."""
    for name, value in vars(args).items():
        if isinstance(value, ConfigDefault):
            setattr(args, name, value.value())


def settings(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """``{setting: value}`` of parsed flags, for a config's ``create``.

    Args:
        args: The parsed flags.
        **names: ``setting="dest"`` pairs: the config's field name and the
            flag's ``dest``.
    """
    out = {}
    for setting, dest in names.items():
        value = getattr(args, dest)
        out[setting] = value.value() if isinstance(value, ConfigDefault) else value
    return out


def add_output_flags(
    parser: argparse.ArgumentParser, *, metavar: str, help: str, run_id_help: str
) -> None:
    """``--output``, ``--run-id`` and ``--dry-run``, which every pipeline command has."""
    parser.add_argument("--output", required=True, metavar=metavar, help=help)
    parser.add_argument("--run-id", help=run_id_help)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the inputs and print the plan (files, tiles, windows, "
        "estimated work) without running anything",
    )


def add_batch_flags(parser: argparse.ArgumentParser, config: str, *, what: str) -> None:
    """``--batch-size`` and ``--min-batch-size``, checked by ``jobs.check_batch_sizes``."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ConfigDefault(config, "batch_size"),
        metavar="N",
        help=f"largest batch of {what} handed to the model (default: %(default)s)",
    )
    parser.add_argument(
        "--min-batch-size", type=int, metavar="N", help="smallest batch (default: --batch-size)"
    )


def add_serving_graph_flag(parser: argparse.ArgumentParser, config: str) -> None:
    """``--serving-graph``: freeze the model's signature or serve it as saved."""
    parser.add_argument(
        "--serving-graph",
        choices=["frozen", "saved"],
        default=ConfigDefault(config, "serving_graph"),
        help="frozen (default): the model's signature with its weights folded into constants "
        "(about 1.2x faster on CPU), checked against the saved graph on each worker's first "
        "batch, which is used instead if any output differs by more than 1e-5; saved: the "
        "signature as saved",
    )


def add_runtime_flags(parser: argparse.ArgumentParser, config: str) -> None:
    """``--runtime``, ``--int8`` and ``--allow-inexact-int8``: which runtime serves the model."""
    parser.add_argument(
        "--runtime",
        choices=["auto", "tensorflow", "onnxruntime"],
        default=ConfigDefault(config, "runtime"),
        help="auto (default): ONNX Runtime when the model folder has model.onnx (written by "
        "training or `footprints convert onnx`) and onnxruntime is installed, else TensorFlow; "
        "tensorflow: the SavedModel; onnxruntime: the ONNX copy (chips decoded without TensorFlow)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="serve the model's int8 ONNX copy (model.int8.onnx, `footprints convert onnx "
        "--int8`); refused when its model card says int8 was not within tolerance",
    )
    parser.add_argument(
        "--allow-inexact-int8",
        action="store_true",
        help="with --int8: serve the int8 model even where its card says it is not within "
        "tolerance of the fp32 model",
    )


def add_accelerator_flag(parser: argparse.ArgumentParser, *, steps: str, example: str) -> None:
    """``--accelerator``: the Beam resource hint of the inference steps."""
    parser.add_argument(
        "--accelerator",
        metavar="HINT",
        help=f"Beam accelerator hint for {steps}, e.g. '{example}'; loads one model per GPU",
    )


def add_table_flags(
    parser: argparse.ArgumentParser,
    *,
    crs_dest: str,
    csv_help: str,
    bigquery_help: str,
    crs_help: str,
) -> None:
    """``--csv``, ``--bigquery-table`` and ``--output-crs``: the extra copies of the main table."""
    parser.add_argument("--csv", action="store_true", help=csv_help)
    parser.add_argument("--bigquery-table", metavar="PROJECT:DATASET.TABLE", help=bigquery_help)
    parser.add_argument(
        "--output-crs",
        f"--{crs_dest.replace('_', '-')}",
        dest=crs_dest,
        metavar="CRS",
        help=crs_help + "; centroid_lon/centroid_lat are always EPSG:4326",
    )
