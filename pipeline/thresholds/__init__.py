"""Thresholds: exactly k residential footprints per region, distributed.

The logic is in :mod:`pipeline.thresholds.selection` (plain functions with
their own tests); this module holds :class:`LabelExactFraction`, the thin
Beam transform around them. It works on whole batches of scored chips
(:class:`~pipeline.inference.ScoredBatch`), with numpy, so Beam's
per-element cost is paid per batch. Its ``expand()`` is the algorithm:

1. count each region and sketch its sketch keys' quantiles, in one
   combiner per region fed one list of keys per batch (partial results
   merged, nothing gathered);
2. plan each region's bracket (a side input, one small record per region);
3. split every batch above / below / inside its regions' brackets (numpy
   comparisons), with percentiles (``searchsorted`` on the sketch);
4. group only the bracket elements by region and pick exactly the missing
   ``k - above`` by rank key;
5. label the batches with their regions' thresholds (a side input).

Beside the threshold, each region's :class:`RegionResult` carries what its
scores say (:mod:`pipeline.thresholds.expected`): the share a calibrated
model expects, with its Poisson-binomial spread, and whether the scores can
rank at all; one more combiner per region, fed one array per batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from pipeline.inference import ScoredBatch
from pipeline.ptransform import DataclassTransform
from pipeline.sources.chips import ChipMeta
from pipeline.thresholds.expected import ScoreStatsFn
from pipeline.thresholds.fractions import RegionFractions
from pipeline.thresholds.selection import (
    DEFAULT_EPSILON,
    RegionPlan,
    percentiles,
    plan_region,
    quantile_combine_fn,
    rank_key,
    resolve_bracket,
    sketch_keys,
)

NAMESPACE = "score"


class LabelledBatch(NamedTuple):
    """Scored chips with their labels and their regions' thresholds and targets, as columns.

    Attributes:
        metas: The chips' metadata.
        scores: float32 model scores.
        percentiles: Within-region percentiles (0-100).
        is_residential: bool labels.
        thresholds: The region's threshold, per chip (NaN until known).
        targets: The region's target fraction, per chip (NaN until known).
    """

    metas: tuple[ChipMeta, ...]
    scores: np.ndarray
    percentiles: np.ndarray
    is_residential: np.ndarray
    thresholds: np.ndarray
    targets: np.ndarray


class RegionResult(NamedTuple):
    """What the summary reports for one region.

    ``scores`` is :func:`pipeline.thresholds.expected.score_stats` of the
    region's scores (expected share, its sd, spread, ties), or None.
    """

    region: str
    n: int
    k: int
    target_fraction: float
    threshold: float
    residential: int
    bracket_size: int
    scores: dict | None = None


class _CountMin(beam.CombineFn):
    """(count, min) of the scores above a region's bracket, from per-batch (count, min)."""

    def create_accumulator(self):
        return 0, math.inf

    def add_input(self, acc, count_min):
        return acc[0] + count_min[0], min(acc[1], count_min[1])

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), min(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


class _CountSketch(beam.CombineFn):
    """A region's count and quantile sketch, fed one list of sketch keys per batch."""

    def __init__(self, epsilon: float):
        self._sketch = quantile_combine_fn(epsilon, batched=True)

    def create_accumulator(self):
        return 0, self._sketch.create_accumulator()

    def add_input(self, acc, keys):
        return acc[0] + len(keys), self._sketch.add_input(acc[1], keys)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return (sum(a[0] for a in accs), self._sketch.merge_accumulators([a[1] for a in accs]))

    def compact(self, acc):
        return acc[0], self._sketch.compact(acc[1])

    def extract_output(self, acc):
        return acc[0], self._sketch.extract_output(acc[1])


def _sketch_inputs(batch: ScoredBatch):
    """``(region, [sketch keys])`` for each region of a batch."""
    keys = sketch_keys(batch.scores, batch.footprint_ids)
    for region, idx in batch.by_region().items():
        yield region, keys[idx].tolist()


def _plan(region_sketch, fractions: RegionFractions, epsilon: float):
    region, (n, quantiles) = region_sketch
    return region, plan_region(region, n, fractions.for_region(region), quantiles, epsilon)


class SplitByBracketFn(beam.DoFn):
    """Splits each batch by its regions' brackets, with percentiles.

    Outputs: main, the batch without its bracket chips (a
    :class:`LabelledBatch` whose thresholds are not yet known); ``inside``,
    ``(region, (meta, score, percentile))`` per bracket chip; ``above``,
    ``(region, (count, lowest score))`` per batch and region above the bracket.
    """

    ABOVE, INSIDE = "above", "inside"

    def __init__(self) -> None:
        self._inside = beam.metrics.Metrics.counter(NAMESPACE, "records_in_exact_pass")
        self._quantiles: dict[str, tuple[RegionPlan, np.ndarray]] = {}

    def _quantiles_of(self, plan: RegionPlan) -> np.ndarray:
        cached = self._quantiles.get(plan.region)
        if cached is None or cached[0] is not plan:
            cached = plan, np.asarray(plan.quantiles, dtype=np.uint64)
            self._quantiles[plan.region] = cached
        return cached[1]

    def process(self, batch: ScoredBatch, plans: dict[str, RegionPlan]):
        """Splits one batch by its regions' brackets (see the class docstring)."""
        keys = sketch_keys(batch.scores, batch.footprint_ids)
        pct = np.empty(batch.size)
        above = np.zeros(batch.size, dtype=bool)
        outside = np.ones(batch.size, dtype=bool)
        for region, idx in batch.by_region().items():
            plan = plans[region]
            region_keys = keys[idx]
            pct[idx] = percentiles(plan, region_keys, self._quantiles_of(plan))
            is_above, is_below = plan.sides(region_keys)
            above[idx] = is_above
            if is_above.any():
                lowest = float(batch.scores[idx[is_above]].min())
                yield beam.pvalue.TaggedOutput(self.ABOVE, (region, (int(is_above.sum()), lowest)))
            for i in idx[~(is_above | is_below)]:
                self._inside.inc()
                outside[i] = False
                yield beam.pvalue.TaggedOutput(
                    self.INSIDE, (region, (batch.metas[i], float(batch.scores[i]), float(pct[i])))
                )
        if not outside.all():
            kept = np.flatnonzero(outside)
            if not len(kept):
                return
            batch = batch.take(kept)
            pct, above = pct[kept], above[kept]
        unknown = np.full(batch.size, np.nan)
        yield LabelledBatch(batch.metas, batch.scores, pct, above, unknown, unknown)


def _region_scores(batch: ScoredBatch):
    """``(region, scores)`` for each region of a batch."""
    for region, idx in batch.by_region().items():
        yield region, batch.scores[idx]


def _resolve(grouped, plans: dict[str, RegionPlan], stats: dict[str, dict] | None = None):
    """Exact pass of one region: yields its labelled bracket chips, then its RegionResult."""
    region, groups = grouped
    plan = plans[region]
    inside = list(groups["inside"])
    above, above_min = (list(groups["above"]) or [(0, math.inf)])[0]
    keys = [
        rank_key(score, meta.footprint_id, meta.source, meta.position) for meta, score, _ in inside
    ]
    res = resolve_bracket(plan, above, above_min if above else None, keys)
    target = float(plan.target)
    if inside:
        yield LabelledBatch(
            tuple(meta for meta, _, _ in inside),
            np.asarray([score for _, score, _ in inside], dtype=np.float32),
            np.asarray([pct for _, _, pct in inside], dtype=np.float64),
            np.asarray(res.selected, dtype=bool),
            np.full(len(inside), res.threshold),
            np.full(len(inside), target),
        )
    yield beam.pvalue.TaggedOutput(
        "regions",
        RegionResult(
            region,
            plan.n,
            plan.k,
            target,
            res.threshold,
            res.residential,
            len(inside),
            (stats or {}).get(region),
        ),
    )


def _label_outside(batch: LabelledBatch, results: dict[str, RegionResult]) -> LabelledBatch:
    regions = [results[meta.region] for meta in batch.metas]
    return batch._replace(
        thresholds=np.asarray([r.threshold for r in regions], dtype=np.float64),
        targets=np.asarray([r.target_fraction for r in regions], dtype=np.float64),
    )


@dataclasses.dataclass
class LabelExactFraction(DataclassTransform):
    """Labels exactly ``floor(p * N + 1/2)`` chips residential in every region.

    Attributes:
        fractions: Target fraction per region (and the default).
        epsilon: Rank error of the quantile sketch that brackets each
            region's threshold; the exact pass handles about
            ``2 * (2 * epsilon + 1/(Q-1)) * N`` chips per region, and
            percentiles are within ``100 * (epsilon + 1/(2(Q-1)))`` points.

    Input: PCollection of :class:`~pipeline.inference.ScoredBatch`.

    Returns:
        ``{"chips": PCollection[LabelledBatch], "regions": PCollection[RegionResult]}``.
    """

    fractions: RegionFractions
    epsilon: float = DEFAULT_EPSILON

    def expand(self, scored):
        """Sketches each region's scores, picks thresholds and labels every chip."""
        plans = (
            scored
            | "SketchKeys" >> beam.FlatMap(_sketch_inputs)
            | "CountAndSketch" >> beam.CombinePerKey(_CountSketch(self.epsilon))
            | "Plan" >> beam.Map(_plan, self.fractions, self.epsilon)
        )
        plans_si = beam.pvalue.AsDict(plans)
        stats_si = beam.pvalue.AsDict(
            scored
            | "RegionScores" >> beam.FlatMap(_region_scores)
            | "ScoreStats" >> beam.CombinePerKey(ScoreStatsFn())
        )

        sides = scored | "SplitByBracket" >> beam.ParDo(SplitByBracketFn(), plans_si).with_outputs(
            SplitByBracketFn.ABOVE, SplitByBracketFn.INSIDE, main="outside"
        )
        above_stats = sides[SplitByBracketFn.ABOVE] | "AboveCountMin" >> beam.CombinePerKey(
            _CountMin()
        )
        # Every region has a plan, so every region gets a group, even with an
        # empty bracket (k = 0 or k = N).
        resolved = (
            {"plan": plans, "inside": sides[SplitByBracketFn.INSIDE], "above": above_stats}
            | "GroupBracket" >> beam.CoGroupByKey()
            | "ExactPass"
            >> beam.FlatMap(_resolve, plans_si, stats_si).with_outputs("regions", main="chips")
        )
        results_si = beam.pvalue.AsDict(
            resolved.regions | "ByName" >> beam.Map(lambda r: (r.region, r))
        )
        outside = sides.outside | "LabelOutside" >> beam.Map(_label_outside, results_si)
        chips = (resolved.chips, outside) | "AllLabelled" >> beam.Flatten()
        return {"chips": chips, "regions": resolved.regions}
