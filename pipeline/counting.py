"""Counts that reconcile, computed inside the pipeline.

Every job ends with ``input == written + errors`` in its summary. Beam's
metrics would give the same numbers on most runners, but their delivery
differs (committed vs attempted, and some portable runners report none), so
the counts that must reconcile are computed as data: one global ``Count`` per
PCollection, gathered into one dict that the summary writer receives.
Per-stage Beam counters are kept as well, for progress and monitoring.
"""

from __future__ import annotations

from collections.abc import Mapping

import apache_beam as beam


def _gather(_, **counts: int) -> dict[str, int]:
    return {name: int(value) for name, value in sorted(counts.items())}


def count_all(pipeline: beam.Pipeline, pcolls: Mapping[str, beam.PCollection],
              label: str = "Counts") -> beam.PCollection:
    """Counts each PCollection; returns a singleton PCollection ``{name: count}``.

    Example: ``count_all(p, {"chips": chips, "errors": errors})`` gives one
    element like ``{"chips": 97, "errors": 3}``.
    """
    sides = {
        name: beam.pvalue.AsSingleton(
            pcoll | f"{label}.{name}" >> beam.combiners.Count.Globally())
        for name, pcoll in pcolls.items()
    }
    return (pipeline
            | f"{label}.Start" >> beam.Create([None])
            | f"{label}.Gather" >> beam.Map(_gather, **sides))


def count_by(pcoll: beam.PCollection, key_fn, label: str) -> beam.PCollection:
    """A singleton ``{key: count}`` of ``key_fn(element)`` over ``pcoll``."""
    return (pcoll
            | f"{label}.Key" >> beam.Map(lambda x: (str(key_fn(x)), 1))
            | f"{label}.Sum" >> beam.CombinePerKey(sum)
            | f"{label}.ToDict" >> beam.combiners.ToDict()
            | f"{label}.Sorted" >> beam.Map(lambda d: dict(sorted(d.items()))))
