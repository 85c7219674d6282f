"""Thresholds: exactly k residential footprints per region, distributed.

The logic is in :mod:`pipeline.thresholds.selection` (plain functions with
their own tests); this module holds :class:`LabelExactFraction`, the thin
Beam transform around them. Its ``expand()`` is the algorithm:

1. count each region and sketch its ``(score, tie_hash)`` quantiles, both as
   combiners (partial results merged, nothing gathered);
2. plan each region's bracket (a side input, one small record per region);
3. split every footprint above / below / inside its bracket;
4. group only the bracket elements by region and pick exactly the missing
   ``k - above`` by rank key;
5. label everything with the region's threshold (a side input).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import apache_beam as beam

from pipeline.inference import ScoredChip
from pipeline.thresholds.fractions import RegionFractions
from pipeline.thresholds.selection import (
    DEFAULT_EPSILON,
    RegionPlan,
    percentile,
    plan_region,
    quantile_combine_fn,
    rank_key,
    resolve_bracket,
    sketch_key,
)

NAMESPACE = "score"


class LabelledChip(NamedTuple):
    """A scored chip with its label and its region's threshold and target."""

    chip: ScoredChip
    percentile: float
    is_residential: bool
    threshold: float
    target_fraction: float


class RegionResult(NamedTuple):
    """What the summary reports for one region."""

    region: str
    n: int
    k: int
    target_fraction: float
    threshold: float
    residential: int
    bracket_size: int


class _CountMin(beam.CombineFn):
    """(count, min) of the scores above a region's bracket."""

    def create_accumulator(self):
        return 0, math.inf

    def add_input(self, acc, score):
        return acc[0] + 1, min(acc[1], score)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), min(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


def _plan(region_count, quantiles, fractions: RegionFractions, epsilon: float):
    region, n = region_count
    return region, plan_region(region, n, fractions.for_region(region), quantiles[region],
                               epsilon)


class SplitByBracketFn(beam.DoFn):
    """Sends each chip above, below or inside its region's bracket, with its percentile."""

    ABOVE, BELOW, INSIDE = "above", "below", "inside"

    def __init__(self):
        self._inside = beam.metrics.Metrics.counter(NAMESPACE, "records_in_exact_pass")

    def process(self, chip: ScoredChip, plans: dict[str, RegionPlan]):
        plan = plans[chip.meta.region]
        key = sketch_key(chip.score, chip.meta.footprint_id)
        side = plan.side(key)
        pct = percentile(plan, key)
        if side == self.INSIDE:
            self._inside.inc()
            yield beam.pvalue.TaggedOutput(self.INSIDE, (chip.meta.region, (chip, pct)))
        else:
            yield beam.pvalue.TaggedOutput(side, (chip, pct))


def _resolve(grouped, plans: dict[str, RegionPlan]):
    """Exact pass of one region: yields labelled bracket chips, then its RegionResult."""
    region, groups = grouped
    plan = plans[region]
    inside = list(groups["inside"])
    above, above_min = (list(groups["above"]) or [(0, math.inf)])[0]
    keys = [rank_key(c.score, c.meta.footprint_id, c.meta.source, c.meta.position)
            for c, _ in inside]
    res = resolve_bracket(plan, above, above_min if above else None, keys)
    target = float(plan.target)
    for (chip, pct), chosen in zip(inside, res.selected):
        yield LabelledChip(chip, pct, chosen, res.threshold, target)
    yield beam.pvalue.TaggedOutput("regions", RegionResult(
        region, plan.n, plan.k, target, res.threshold, res.residential, len(inside)))


def _label_outside(chip_pct, is_residential: bool, results: dict[str, RegionResult]):
    chip, pct = chip_pct
    result = results[chip.meta.region]
    return LabelledChip(chip, pct, is_residential, result.threshold, result.target_fraction)


@dataclasses.dataclass
class LabelExactFraction(beam.PTransform):
    """Labels exactly ``floor(p * N + 1/2)`` chips residential in every region.

    Attributes:
        fractions: Target fraction per region (and the default).
        epsilon: Rank error of the quantile sketch that brackets each
            region's threshold; the exact pass handles about
            ``2 * (2 * epsilon + 1/(Q-1)) * N`` chips per region, and
            percentiles are within ``100 * (epsilon + 1/(2(Q-1)))`` points.

    Input: PCollection of :class:`~pipeline.inference.ScoredChip`.

    Returns:
        ``{"chips": PCollection[LabelledChip], "regions": PCollection[RegionResult]}``.
    """

    fractions: RegionFractions
    epsilon: float = DEFAULT_EPSILON

    def __post_init__(self):
        super().__init__()

    def expand(self, scored):
        by_region = scored | "ByRegion" >> beam.Map(lambda c: (c.meta.region, c))
        counts = by_region | "CountRegion" >> beam.combiners.Count.PerKey()
        sketches = (scored
                    | "SketchKey" >> beam.Map(
                        lambda c: (c.meta.region, sketch_key(c.score, c.meta.footprint_id)))
                    | "Sketch" >> beam.CombinePerKey(quantile_combine_fn(self.epsilon)))
        plans = counts | "Plan" >> beam.Map(
            _plan, beam.pvalue.AsDict(sketches), self.fractions, self.epsilon)
        plans_si = beam.pvalue.AsDict(plans)

        sides = scored | "SplitByBracket" >> beam.ParDo(SplitByBracketFn(), plans_si).with_outputs(
            SplitByBracketFn.ABOVE, SplitByBracketFn.BELOW, SplitByBracketFn.INSIDE)
        above_stats = (sides[SplitByBracketFn.ABOVE]
                       | "AboveScore" >> beam.Map(lambda cp: (cp[0].meta.region, cp[0].score))
                       | "AboveCountMin" >> beam.CombinePerKey(_CountMin()))
        # Every region has a plan, so every region gets a group, even with an
        # empty bracket (k = 0 or k = N).
        resolved = ({"plan": plans, "inside": sides[SplitByBracketFn.INSIDE],
                     "above": above_stats}
                    | "GroupBracket" >> beam.CoGroupByKey()
                    | "ExactPass" >> beam.FlatMap(_resolve, plans_si).with_outputs(
                        "regions", main="chips"))
        results_si = beam.pvalue.AsDict(
            resolved.regions | "ByName" >> beam.Map(lambda r: (r.region, r)))
        above = sides[SplitByBracketFn.ABOVE] | "LabelAbove" >> beam.Map(
            _label_outside, True, results_si)
        below = sides[SplitByBracketFn.BELOW] | "LabelBelow" >> beam.Map(
            _label_outside, False, results_si)
        chips = (resolved.chips, above, below) | "AllLabelled" >> beam.Flatten()
        return {"chips": chips, "regions": resolved.regions}
