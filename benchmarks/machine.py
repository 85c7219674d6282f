"""The machine a benchmark ran on, in one line: CPUs, model, load average, versions.

Every figure a benchmark prints depends on these, and the load average most
of all on a shared machine, so each script prints this line with its
figures (at the start and at the end of a long run).
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``?`` where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "?"


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
