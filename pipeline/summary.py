"""The layout every job's ``summary.json`` starts with, and its file name.

Every job (``prepare``, ``score``, ``segment``) writes one summary, and its
first keys are the same for all three (:data:`HEAD_KEYS`, made by
:func:`summary_head`); the job's own sections follow. The jobs' shape is
:mod:`pipeline.jobs`; this is on the ground floor because the score writer
(:mod:`pipeline.writers.scores`) builds a summary too, and the report reads
:data:`SUMMARY_FILE` without loading Beam.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The keys every job's summary.json starts with, in this order.
HEAD_KEYS = (
    "job",
    "run_id",
    "inputs",
    "counts",
    "reconciles",
    "checks",
    "errors_by_reason",
    "warnings",
)


#: The summary's file name inside a job's output folder (score, segment).
SUMMARY_FILE = "summary.json"


def summary_head(
    job: str,
    run_id: str,
    *,
    inputs: Mapping[str, Any],
    counts: Mapping[str, Any],
    checks: Mapping[str, bool],
    errors_by_reason: Mapping[str, int],
    warnings: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The keys every summary.json starts with (see the module docstring).

    Args:
        job: The job's name.
        run_id: The run's id.
        inputs: What the run read and the settings it ran with.
        counts: The counts that ``checks`` compare.
        checks: Each reconciliation equation (text) and whether it holds;
            ``reconciles`` is true when all of them hold.
        errors_by_reason: Dead letters per reason.
        warnings: ``{"code", "message"}`` warnings.

    Example: ``checks={"inputs == chips + errors": True}`` gives
    ``reconciles: true, checks: ["inputs == chips + errors"]``.
    """
    return {
        "job": job,
        "run_id": run_id,
        "inputs": dict(inputs),
        "counts": dict(counts),
        "reconciles": all(checks.values()),
        "checks": list(checks),
        "errors_by_reason": dict(sorted(errors_by_reason.items())),
        "warnings": [dict(w) for w in warnings],
    }


def duplicate_warnings(duplicates: dict[str, Any] | None) -> list[dict[str, str]]:
    """A ``duplicate_id`` warning when footprint ids repeat, else [].

    Args:
        duplicates: summary.json ``duplicates`` (``count``, ``records``,
            ``examples``), as :func:`duplicate_report`
            makes it.
    """
    if not duplicates or not duplicates.get("count"):
        return []
    examples = ", ".join(repr(e["footprint_id"]) for e in duplicates.get("examples", [])[:3])
    return [
        {
            "code": "duplicate_id",
            "message": f"{duplicates['count']} footprint ids occur more than once "
            f"({duplicates.get('records', '?')} records, e.g. {examples}); every "
            "record was kept and counted, so each such footprint counts once per "
            "record: give every footprint a unique id (--id-field)",
        }
    ]


def duplicate_report(id_counts: list[tuple[str, int]], limit: int = 20) -> dict[str, Any]:
    """``{"count": ids seen more than once, "records": their records, "examples": [...]}``."""
    dups = sorted((fid, n) for fid, n in id_counts if n > 1)
    return {
        "count": len(dups),
        "records": sum(n for _, n in dups),
        "examples": [{"footprint_id": f, "times": n} for f, n in dups[:limit]],
    }
