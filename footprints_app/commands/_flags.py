"""Flag groups the pipeline commands share, declared from the jobs' settings.

``prepare``, ``score`` and ``segment`` share flags (the output, the run id,
``--dry-run``, batch sizes, the accelerator hint, the extra tables). Each
group is added by one function here, so a flag is added in one order
everywhere; its name, type, default and help are those of the setting it
fills (:func:`pipeline.settings.flag`, in the Beam-free modules
:mod:`pipeline.settings.score`, ...), so building the parser imports neither
Beam nor TensorFlow. :func:`pipeline.settings.from_flags` turns the parsed
flags back into settings.
"""

from __future__ import annotations

import argparse

from pipeline.settings import add_flag


def add_output_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings: type,
    *,
    metavar: str,
    help: str,
) -> None:
    """``--output``, ``--run-id`` and ``--dry-run``, which every pipeline command has."""
    parser.add_argument("--output", required=True, metavar=metavar, help=help)
    add_flag(parser, settings, "run_id")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the inputs and print the plan (files, tiles, windows, "
        "estimated work) without running anything",
    )


def add_batch_flags(parser: argparse.ArgumentParser, settings: type) -> None:
    """``--batch-size`` and ``--min-batch-size`` (checked by ``settings.check_batch_sizes``)."""
    add_flag(parser, settings, "batch_size")
    add_flag(parser, settings, "min_batch_size")


def add_runtime_flags(parser: argparse.ArgumentParser, settings: type) -> None:
    """``--runtime``, ``--int8`` and ``--allow-inexact-int8``: which runtime serves the model."""
    for field in ("runtime", "int8", "allow_inexact_int8"):
        add_flag(parser, settings, field)


def add_table_flags(parser: argparse.ArgumentParser, settings: type, *, crs: str) -> None:
    """``--csv``, ``--bigquery-table`` and ``--output-crs`` (setting ``crs``): extra copies."""
    for field in ("csv", "bigquery_table", crs):
        add_flag(parser, settings, field)
