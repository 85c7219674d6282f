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


def _zero_filled(tally: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    return {name: int(tally.get(name, 0)) for name in sorted(names)}


def count_all(pipeline: beam.Pipeline, pcolls: Mapping[str, beam.PCollection],
              label: str = "Counts") -> beam.PCollection:
    """Counts each PCollection; returns a singleton PCollection ``{name: count}``.

    Example: ``count_all(p, {"chips": chips, "errors": errors})`` gives one
    element like ``{"chips": 97, "errors": 3}`` (0 for an empty PCollection).

    One tally for all names (tag, flatten, sum per name) rather than a
    ``Count.Globally`` per PCollection: a count per PCollection added about
    five transforms each, which was half of a large job's graph and most of
    its start-up time on DirectRunner.
    """
    tagged = [pcoll | f"{label}.Tag.{name}" >> beam.Map(lambda _, n: (n, 1), name)
              for name, pcoll in pcolls.items()]
    return (tagged
            | f"{label}.All" >> beam.Flatten(pipeline=pipeline)
            | f"{label}.Sum" >> beam.CombinePerKey(sum)
            | f"{label}.ToDict" >> beam.combiners.ToDict()
            | f"{label}.ZeroFill" >> beam.Map(_zero_filled, tuple(pcolls)))


def count_by(pcoll: beam.PCollection, key_fn, label: str) -> beam.PCollection:
    """A singleton ``{key: count}`` of ``key_fn(element)`` over ``pcoll``."""
    return (pcoll
            | f"{label}.Key" >> beam.Map(lambda x: (str(key_fn(x)), 1))
            | f"{label}.Sum" >> beam.CombinePerKey(sum)
            | f"{label}.ToDict" >> beam.combiners.ToDict()
            | f"{label}.Sorted" >> beam.Map(lambda d: dict(sorted(d.items()))))
