"""The jobs' settings: plain dataclasses, one module per job, no Beam and no TensorFlow.

Each job (``score``, ``segment``, ``prepare``) has a settings class here
whose fields are the job's settings with their defaults, checked in
``__post_init__`` (each value rule once, with one message). A field that is
a command-line flag says so in its metadata (:func:`flag`, from
:mod:`pipeline.flags`, which this package re-exports): the command declares
the flag from the field (:func:`add_flag`) and :func:`from_flags` turns the
parsed flags back into settings, for every job the same way. The flags
every model-serving job shares are declared once below, as are the
settings' shared rule :func:`check_batch_sizes` and :class:`FolderOutput`.

The job modules (:mod:`pipeline.score`, ...) subclass these classes to add
the checks that read inputs (globs, models, CRSs) in ``create``. Importing a
settings module costs nothing, so ``footprints --help`` shows the defaults
without loading Beam (``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

from typing import Any

from footprints.errors import ConfigError
from pipeline import runtimes
from pipeline.flags import (
    FLAG,
    add_flag,
    comma_ints,
    comma_list,
    flag,
    flag_name,
    from_flags,
    low_high,
)
from pipeline.summary import SUMMARY_FILE

__all__ = [
    "FLAG",
    "SERVING_GRAPHS",
    "FolderOutput",
    "add_flag",
    "check_batch_sizes",
    "check_serving_graph",
    "comma_ints",
    "comma_list",
    "flag",
    "flag_name",
    "from_flags",
    "low_high",
    "accelerator_flag",
    "allow_inexact_int8_flag",
    "batch_size_flag",
    "bigquery_table_flag",
    "csv_flag",
    "int8_flag",
    "min_batch_size_flag",
    "output_crs_flag",
    "run_id_flag",
    "runtime_flag",
    "serving_graph_flag",
]

# --------------------------------------------------------------------------
# Settings every model-serving job has (score, segment): one declaration each
# --------------------------------------------------------------------------

#: ``--serving-graph`` choices (:mod:`pipeline.inference.serving`).
SERVING_GRAPHS = ("frozen", "saved")


def check_serving_graph(graph: str) -> None:
    """Raises ConfigError unless ``graph`` is one of :data:`SERVING_GRAPHS`."""
    if graph not in SERVING_GRAPHS:
        raise ConfigError(f"--serving-graph {graph!r} must be one of {SERVING_GRAPHS}")


def batch_size_flag(default: int, what: str) -> Any:
    """``--batch-size``: the largest batch of ``what`` handed to the model."""
    return flag(
        default,
        f"largest batch of {what} handed to the model (default: %(default)s)",
        metavar="N",
    )


def min_batch_size_flag() -> Any:
    """``--min-batch-size``: the smallest batch (None: ``--batch-size``)."""
    return flag(None, "smallest batch (default: --batch-size)", metavar="N", type=int)


def serving_graph_flag() -> Any:
    """``--serving-graph``: freeze the model's signature or serve it as saved."""
    return flag(
        "frozen",
        "frozen (default): the model's signature with its weights folded into constants "
        "(about 1.2x faster on CPU), checked against the saved graph on each worker's first "
        "batch, which is used instead if any output differs by more than 1e-5; saved: the "
        "signature as saved",
        choices=SERVING_GRAPHS,
    )


def runtime_flag() -> Any:
    """``--runtime``: which runtime serves the model."""
    return flag(
        "auto",
        "auto (default): ONNX Runtime when the model folder has model.onnx (written by "
        "training or `footprints convert onnx`) and onnxruntime is installed, else TensorFlow; "
        + "; ".join(f"{r.name}: {r.serves}" for r in runtimes.RUNTIMES.values()),
        choices=runtimes.CHOICES,
    )


def int8_flag() -> Any:
    """``--int8``: serve the int8 ONNX copy."""
    return flag(
        False,
        "serve the model's int8 ONNX copy (model.int8.onnx, `footprints convert onnx "
        "--int8`); refused when its model card says int8 was not within tolerance",
    )


def allow_inexact_int8_flag() -> Any:
    """``--allow-inexact-int8``."""
    return flag(
        False,
        "with --int8: serve the int8 model even where its card says it is not within "
        "tolerance of the fp32 model",
    )


def accelerator_flag(steps: str, example: str) -> Any:
    """``--accelerator``: the Beam resource hint of the inference steps."""
    return flag(
        None,
        f"Beam accelerator hint for {steps}, e.g. '{example}'; loads one model per GPU",
        metavar="HINT",
    )


def run_id_flag(default: Any, help: str) -> Any:
    """``--run-id``."""
    return flag(default, help)


def csv_flag(help: str) -> Any:
    """``--csv``: also write the main table as CSV."""
    return flag(False, help)


def bigquery_table_flag(help: str) -> Any:
    """``--bigquery-table``: also load the main table into BigQuery."""
    return flag(None, help, metavar="PROJECT:DATASET.TABLE")


def output_crs_flag(alias: str, help: str) -> Any:
    """``--output-crs`` (and ``alias``): the CRS of the geometry columns."""
    return flag(
        None,
        help + "; centroid_lon/centroid_lat are always EPSG:4326",
        name="--output-crs",
        aliases=(alias,),
        metavar="CRS",
    )


# --------------------------------------------------------------------------
# Shared by the settings classes
# --------------------------------------------------------------------------


class FolderOutput:
    """The ``summary_path`` of settings whose job writes into one folder, ``output``.

    A mixin for the frozen settings dataclasses of ``score`` and ``segment``
    (``prepare`` writes beside a shard prefix instead).
    """

    output: str

    @property
    def summary_path(self) -> str:
        """Where the run's summary.json goes."""
        # Beam's FileSystems joins local paths and URLs alike; imported only when asked.
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.join(self.output, SUMMARY_FILE)


def check_batch_sizes(
    batch_size: int,
    min_batch_size: int | None = None,
    flags: tuple[str, str | None] = ("--batch-size", "--min-batch-size"),
) -> None:
    """Raises ConfigError unless ``1 <= min_batch_size <= batch_size``.

    Args:
        batch_size: The largest batch handed to a model.
        min_batch_size: The smallest batch; None means ``batch_size``.
        flags: The flag names the message shows (None: the job has no
            smallest-batch flag).
    """
    low = min_batch_size or batch_size
    if 1 <= low <= batch_size:
        return
    if flags[1] is None:
        raise ConfigError(f"{flags[0]} {batch_size!r} must be at least 1")
    raise ConfigError(
        f"{flags[0]} {batch_size} and {flags[1]} {low} must satisfy "
        "1 <= min <= batch size; set the smallest batch no larger than the largest"
    )
