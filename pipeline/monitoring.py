"""What a long run shows while it runs, and the metrics it leaves behind.

* :class:`ShowProgress` is a pass-through step that prints, at most every
  few seconds per worker process, how many elements went by, the rate, and
  the dead letters so far. It costs one clock read per element (about 0.1 us
  against the milliseconds each chip or window costs), so it stays on in
  every run; ``FOOTPRINTS_PROGRESS=0`` silences it, and
  ``FOOTPRINTS_PROGRESS_EVERY=SECONDS`` sets how often it prints (5 s by default).
* :func:`collect_metrics` reads a finished run's Beam counters and
  distributions back (records read, scored, dead-lettered, windows skipped,
  batch sizes, inference latency) and :func:`run_to_summary` writes
  them into the run's ``summary.json`` under ``metrics``. Counts that must
  reconcile are computed as data in the pipeline (see
  :mod:`pipeline.counting`); these metrics are for monitoring, and some
  runners report them only as "attempted".
* :func:`relative_paths` makes every path in a summary relative to the run's
  folder before it is written, so a run folder moved, copied or shared still
  points at its own outputs (and, where their relative place is kept, at its
  inputs); :func:`resolve_path` reads such a path back.
"""

from __future__ import annotations

import os
import posixpath
import sys
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.execution import MetricResult
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.metrics.metricbase import MetricName
from apache_beam.pvalue import PCollection
from apache_beam.runners.runner import PipelineResult

from pipeline.writers.files import (
    OutputLocation,
    claim_output,
    read_json,
    write_json_atomic,
    written_files,
)

PROGRESS_ENV = "FOOTPRINTS_PROGRESS"
PROGRESS_EVERY_ENV = "FOOTPRINTS_PROGRESS_EVERY"

T = TypeVar("T")


class _ProgressFn(beam.DoFn):
    """Counts elements and prints a line every ``every`` seconds."""

    def __init__(self, what: str, every: float) -> None:
        self.what = what
        self.every = every

    def setup(self) -> None:
        self._enabled = os.environ.get(PROGRESS_ENV, "1") != "0"
        every = os.environ.get(PROGRESS_EVERY_ENV)
        if every is not None:
            self.every = float(every)
        self._count = 0
        self._start = self._last = time.monotonic()

    def process(self, element: T) -> Iterator[T]:
        self._count += 1
        if self._enabled:
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                rate = self._count / max(now - self._start, 1e-9)
                print(
                    f"  progress [{self.what}]: {self._count} done, {rate:,.1f}/s "
                    f"(pid {os.getpid()})",
                    file=sys.stderr,
                    flush=True,
                )
        yield element

    def teardown(self) -> None:
        if self._enabled and self._count:
            elapsed = time.monotonic() - self._start
            print(
                f"  progress [{self.what}]: {self._count} done in {elapsed:,.1f} s "
                f"(pid {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )


class ShowProgress(beam.PTransform[PCollection[T], PCollection[T]]):
    """Pass-through that reports throughput of ``what`` every ``every`` seconds."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        super().__init__()
        self.what = what
        self.every = every

    def expand(self, pcoll: PCollection[T]) -> PCollection[T]:
        """Passes ``pcoll`` through unchanged, printing its throughput to stderr."""
        result: PCollection[T] = pcoll | beam.ParDo(_ProgressFn(self.what, self.every))
        return result


def _is_system_metric(metric: MetricName) -> bool:
    # Prism reports the SDK's own monitoring infos (element counts, msecs per bundle,
    # data-channel indexes) as counters in namespace "beam" named "metric:...:v1"; they are
    # not the job's counts and differ from runner to runner.
    system: bool = metric.namespace == "beam" and (metric.name or "").startswith("metric:")
    return system


def collect_metrics(result: PipelineResult) -> dict[str, Any]:
    """``{"counters": {ns/name: n}, "distributions": {ns/name: {...}}}`` of a run.

    Committed values where the runner has them, else attempted ones.
    """
    try:
        query = result.metrics().query(MetricsFilter())
    except Exception:  # a runner without metrics support
        return {}

    def value(r: MetricResult) -> Any:
        return r.committed if r.committed is not None else r.attempted

    counters: dict[str, int] = {}
    for r in query.get("counters", []):
        if _is_system_metric(r.key.metric):
            continue
        key = f"{r.key.metric.namespace}/{r.key.metric.name}"
        counters[key] = counters.get(key, 0) + int(value(r) or 0)
    distributions: dict[str, dict[str, Any]] = {}
    for r in query.get("distributions", []):
        d = value(r)
        if d is None or not d.count:
            continue
        key = f"{r.key.metric.namespace}/{r.key.metric.name}"
        distributions[key] = {
            "count": d.count,
            "sum": d.sum,
            "min": d.min,
            "max": d.max,
            "mean": d.sum / d.count,
        }
    return {
        "counters": dict(sorted(counters.items())),
        "distributions": dict(sorted(distributions.items())),
    }


def run_to_summary(pipeline: beam.Pipeline, summary_path: str) -> dict[str, Any]:
    """Runs a built job whose last step writes ``summary_path``; returns that summary.

    The run owns the location the summary names (its folder, or for
    ``PREFIX-summary.json`` the ``PREFIX-*`` files): before the job starts,
    everything an earlier run of any command left there is removed
    (:func:`pipeline.writers.files.claim_output`), the summary first, so a
    killed run leaves none behind and a summary's presence means a finished
    run. Afterwards the run's metrics and ``files`` (every file it wrote,
    relative to the output folder) are added to the summary.
    """
    location = OutputLocation.of_summary(summary_path)
    if FileSystems.exists(summary_path):
        FileSystems.delete([summary_path])
    claim_output(location)
    result = pipeline.run()
    result.wait_until_finish()
    summary = relative_paths(read_json(summary_path), location)
    summary["files"] = written_files(location)
    metrics = collect_metrics(result)
    if metrics:
        summary["metrics"] = metrics
    write_json_atomic(summary_path, summary)
    return summary


def add_warnings(summary_path: str, warnings: list[dict[str, Any]]) -> dict[str, Any]:
    """Appends ``{"code", "message"}`` warnings to a finished run's summary.json; returns it."""
    summary: dict[str, Any] = read_json(summary_path)
    if warnings:
        summary["warnings"] = [*summary.get("warnings", []), *warnings]
        write_json_atomic(summary_path, summary)
    return summary


#: Keys whose string values are input paths as the user gave them (maybe
#: relative to the directory the command ran in).
INPUT_PATH_KEYS = frozenset(
    {
        "chips",
        "classifier",
        "footprints",
        "images",
        "model",
        "output",
        "raster",
        "rasters",
        "truth_footprints",
        "truth_masks",
    }
)
#: Sections that hold no paths (counts, messages, metric names).
_NO_PATHS = frozenset({"counts", "checks", "errors_by_reason", "warnings", "metrics"})


def relative_paths(summary: dict[str, Any], location: OutputLocation) -> dict[str, Any]:
    """``summary`` with every path relative to the run's folder (posix separators).

    The rules: a path under the run's folder (local, absolute or as given,
    or a URL such as ``gs://b/run/masks/a.tif``) becomes relative to it
    (``masks/a.tif``); any other absolute local path, and a relative input
    path at one of :data:`INPUT_PATH_KEYS` (relative to the directory the
    command ran in), becomes relative to the folder too
    (``../area/tiles/*.tif``); a URL outside the folder stays as given.
    Counts, checks, warnings and metrics are left alone.

    Example: run folder ``/data/out/segment``:
    ``{"inputs": {"raster": "/data/area/*.tif"}, "stac": ["/data/out/segment/stac/c.json"]}``
    -> ``{"inputs": {"raster": "../../area/*.tif"}, "stac": ["stac/c.json"]}``.
    """
    folder = location.folder.rstrip("/") or "/"
    url = "://" in folder
    base = folder if url else os.path.abspath(folder)

    def convert(value: str, input_path: bool) -> str:
        if "://" in value:
            return value[len(folder) + 1 :] if url and value.startswith(folder + "/") else value
        if url:
            return value  # a local input of a run that writes to object storage
        if os.path.isabs(value) or input_path or value.startswith(folder + os.sep):
            return os.path.relpath(os.path.abspath(value), base).replace(os.sep, "/")
        return value

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: v if k in _NO_PATHS else walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and value:
            return convert(value, key in INPUT_PATH_KEYS)
        return value

    relative: dict[str, Any] = walk(summary, None)
    return relative


def resolve_path(summary_path: str, path: str) -> str:
    """A path read from ``summary_path`` (see :func:`relative_paths`) made usable from here.

    Example: ``resolve_path("out/segment/summary.json", "masks/a.tif")`` ->
    ``"out/segment/masks/a.tif"``; a URL or an absolute path comes back as it is.
    """
    if "://" in path or os.path.isabs(path):
        return path
    folder = OutputLocation.of_summary(summary_path).folder
    if "://" in folder:
        return posixpath.normpath(posixpath.join(folder, path)).replace(":/", "://", 1)
    return os.path.normpath(os.path.join(folder, path))
