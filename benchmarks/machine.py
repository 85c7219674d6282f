"""What every benchmark script needs: the machine line and measured child processes.

Every figure a benchmark prints depends on the machine, and the load average
most of all on a shared machine, so each script prints :func:`describe` with
its figures (at the start and at the end of a long run). Each measured run
is a fresh process (:func:`run_child`), so its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``?`` where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "?"


def median_spread(values: list[float], width: int, digits: int, spread_digits: int) -> str:
    """A table cell: the median of ``values`` and their ``min..max`` spread.

    Example: ``median_spread([1.5, 1.25, 2.0], 11, 3, 2)`` -> ``"      1.500   1.25..2.00  "``.
    """
    import statistics

    low, high = min(values), max(values)
    return (
        f"{statistics.median(values):>{width}.{digits}f} "
        f"{low:>6.{spread_digits}f}..{high:<6.{spread_digits}f}"
    )


def describe() -> str:
    """CPUs, model, load average, platform and the versions of Python, Beam and rasterio."""
    import apache_beam
    import rasterio

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), load average {load}, {platform.platform()}, "
        f"Python {platform.python_version()}, Beam {apache_beam.__version__}, "
        f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})"
    )


def run_child(script: str, spec: str, what: str, env: dict[str, str] | None = None) -> dict:
    """Runs ``python SCRIPT --child SPEC`` and returns the JSON its last output line holds.

    Raises:
        RuntimeError: the child failed (with the end of its stderr).
    """
    done = subprocess.run(
        [sys.executable, script, "--child", spec],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tuned_ort_session(model_dir: str):
    """The plain ONNX Runtime loops' session of ``model_dir/model.onnx``, tuned by hand.

    What a careful user sets on two cores: intra-op threads = cores, one
    inter-op thread, sequential execution, every graph optimisation, and no
    spinning (decoding needs the cores between batches).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
