"""Thresholds: exactly k residential footprints per region, distributed.

The logic is in :mod:`pipeline.thresholds.selection` (plain functions with
their own tests); this module holds :class:`LabelExactFraction`, the thin
Beam transform around them. It works on whole batches of scored chips
(:class:`~pipeline.values.ScoredBatch`), with numpy, so Beam's
per-element cost is paid per batch. Its ``expand()`` is the algorithm:

1. count each region and sketch its sketch keys' quantiles, in one
   combiner per region fed one list of keys per batch (partial results
   merged, nothing gathered); at the same time the batches are written to
   spill files (:mod:`pipeline.thresholds.spill`), so that only file names
   wait for the passes below, not the chips (a runner keeps what waits in
   its shuffle, the in-process DirectRunner in memory);
2. plan each region's bracket (a side input, one small record per region);
3. read the spill back and split every batch above / below / inside its
   regions' brackets (numpy comparisons), keeping only the bracket chips
   and the above-counts;
4. group only the bracket elements by region and pick exactly the missing
   ``k - above`` by rank key;
5. read the spill once more and label the chips outside the brackets with
   their regions' thresholds (a side input) and percentiles
   (``searchsorted`` on the sketch); then the spill folder is removed.

Beside the threshold, each region's :class:`RegionResult` carries what its
scores say (:mod:`pipeline.thresholds.expected`): the share a calibrated
model expects, with its Poisson-binomial spread, and whether the scores can
rank at all; one more combiner per region, fed one array per batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypedDict

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.pvalue import AsDict, AsIter, AsSingleton, PCollection, TaggedOutput
from apache_beam.transforms import combiners

from footprints.contracts import METRICS_SCORE
from pipeline.ptransform import DataclassTransform
from pipeline.settings.score import DEFAULT_EPSILON
from pipeline.thresholds.expected import ScoreStatsFn
from pipeline.thresholds.fractions import RegionFractions
from pipeline.thresholds.selection import (
    RegionPlan,
    SketchKey,
    percentiles,
    plan_region,
    quantile_combine_fn,
    rank_key,
    resolve_bracket,
    sketch_keys,
)
from pipeline.thresholds.spill import SpillBatchesFn, default_spill_dir, read_spill, remove_spill
from pipeline.values import ChipMeta, ScoredBatch

NAMESPACE = METRICS_SCORE

#: ``(count, lowest score)`` of a region's chips above its bracket.
CountMin = tuple[int, float]
#: A chip inside its region's bracket: ``(meta, score, percentile)``.
BracketChip = tuple[ChipMeta, float, float]
#: The state of Beam's quantile sketch (its ``_QuantileState``, opaque here).
SketchState = Any


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
    scores: dict[str, Any] | None = None


class _CountMin(beam.CombineFn):
    """(count, min) of the scores above a region's bracket, from per-batch (count, min)."""

    def __init__(self) -> None:
        # Beam's CombineFn.__init__ is unannotated, and mypy's untyped_calls_exclude
        # does not reach a call through super().
        super().__init__()  # type: ignore[no-untyped-call]

    def create_accumulator(self) -> CountMin:
        return 0, math.inf

    def add_input(self, acc: CountMin, count_min: CountMin) -> CountMin:
        return acc[0] + count_min[0], min(acc[1], count_min[1])

    def merge_accumulators(self, accs: Iterable[CountMin]) -> CountMin:
        accs = list(accs)
        return sum(a[0] for a in accs), min(a[1] for a in accs)

    def extract_output(self, acc: CountMin) -> CountMin:
        return acc


class _CountSketch(beam.CombineFn):
    """A region's count and quantile sketch, fed one list of sketch keys per batch."""

    def __init__(self, epsilon: float) -> None:
        self._sketch = quantile_combine_fn(epsilon, batched=True)

    def create_accumulator(self) -> tuple[int, SketchState]:
        return 0, self._sketch.create_accumulator()

    def add_input(
        self, acc: tuple[int, SketchState], keys: list[SketchKey]
    ) -> tuple[int, SketchState]:
        return acc[0] + len(keys), self._sketch.add_input(acc[1], keys)

    def merge_accumulators(
        self, accs: Iterable[tuple[int, SketchState]]
    ) -> tuple[int, SketchState]:
        accs = list(accs)
        return (sum(a[0] for a in accs), self._sketch.merge_accumulators([a[1] for a in accs]))

    def compact(self, acc: tuple[int, SketchState]) -> tuple[int, SketchState]:
        return acc[0], self._sketch.compact(acc[1])

    def extract_output(self, acc: tuple[int, SketchState]) -> tuple[int, list[SketchKey]]:
        return acc[0], self._sketch.extract_output(acc[1])


def _sketch_inputs(batch: ScoredBatch) -> Iterator[tuple[str, list[SketchKey]]]:
    """``(region, [sketch keys])`` for each region of a batch."""
    keys = sketch_keys(batch.scores, batch.footprint_ids)
    for region, idx in batch.by_region().items():
        yield region, keys[idx].tolist()


def _plan(
    region_sketch: tuple[str, tuple[int, list[SketchKey]]],
    fractions: RegionFractions,
    epsilon: float,
) -> tuple[str, RegionPlan]:
    region, (n, quantiles) = region_sketch
    return region, plan_region(region, n, fractions.for_region(region), quantiles, epsilon)


class _BracketSidesFn(beam.DoFn):
    """Reads spill files and places each chip above, below or inside its region's bracket."""

    def __init__(self) -> None:
        self._quantiles: dict[str, tuple[RegionPlan, np.ndarray]] = {}

    def _quantiles_of(self, plan: RegionPlan) -> np.ndarray:
        cached = self._quantiles.get(plan.region)
        if cached is None or cached[0] is not plan:
            cached = plan, np.asarray(plan.quantiles, dtype=np.uint64)
            self._quantiles[plan.region] = cached
        return cached[1]

    def sides(
        self, batch: ScoredBatch, plans: dict[str, RegionPlan]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(percentiles, above, inside)`` of a batch's chips (numpy, per region)."""
        keys = sketch_keys(batch.scores, batch.footprint_ids)
        pct = np.empty(batch.size)
        above = np.zeros(batch.size, dtype=bool)
        inside = np.zeros(batch.size, dtype=bool)
        for region, idx in batch.by_region().items():
            plan = plans[region]
            region_keys = keys[idx]
            pct[idx] = percentiles(plan, region_keys, self._quantiles_of(plan))
            is_above, is_below = plan.sides(region_keys)
            above[idx] = is_above
            inside[idx] = ~(is_above | is_below)
        return pct, above, inside


@beam.typehints.with_input_types(str, dict[str, RegionPlan])
class SplitByBracketFn(_BracketSidesFn):
    """First pass over the spilled batches: what the exact pass needs per region.

    Input: spill file paths (:mod:`pipeline.thresholds.spill`). Outputs:
    ``inside``, ``(region, (meta, score, percentile))`` per bracket chip;
    ``above``, ``(region, (count, lowest score))`` per batch and region above
    the bracket. The other chips are labelled by :class:`LabelChipsFn`,
    which reads the files again once the thresholds are known.
    """

    ABOVE, INSIDE = "above", "inside"

    def __init__(self) -> None:
        super().__init__()
        self._inside = Metrics.counter(NAMESPACE, "records_in_exact_pass")

    def process(
        self, path: str, plans: dict[str, RegionPlan]
    ) -> Iterator[TaggedOutput[str, tuple[str, CountMin] | tuple[str, BracketChip]]]:
        """Outputs the bracket chips and above-counts of one spill file."""
        for batch in read_spill(path):
            pct, above, inside = self.sides(batch, plans)
            for region, idx in batch.by_region().items():
                is_above = above[idx]
                if is_above.any():
                    lowest = float(batch.scores[idx[is_above]].min())
                    yield TaggedOutput(self.ABOVE, (region, (int(is_above.sum()), lowest)))
            for i in np.flatnonzero(inside):
                self._inside.inc()
                yield TaggedOutput(
                    self.INSIDE,
                    (
                        batch.metas[i].region,
                        (batch.metas[i], float(batch.scores[i]), float(pct[i])),
                    ),
                )


@beam.typehints.with_input_types(
    str, dict[str, RegionPlan], dict[str, RegionResult], Iterable[LabelledBatch]
)
@beam.typehints.with_output_types(LabelledBatch)
class LabelChipsFn(_BracketSidesFn):
    """Second pass over the spilled batches: every chip's labels, in one stage.

    Input: spill file paths, and one :data:`BRACKET` item. A path gives one
    :class:`LabelledBatch` per spilled batch with chips outside its regions'
    brackets, labelled with the regions' thresholds and targets; the
    :data:`BRACKET` item gives the exact pass's labelled bracket chips (an
    iterable side input, small: about ``4 * epsilon`` of the chips). All
    labelled chips so leave one transform: a Flatten of the two streams
    would be materialized whole by the in-process DirectRunner.
    """

    def process(
        self,
        item: str,
        plans: dict[str, RegionPlan],
        results: dict[str, RegionResult],
        bracket: Iterable[LabelledBatch] = (),
    ) -> Iterator[LabelledBatch]:
        """Outputs the labelled chips of one spill file, or the bracket's."""
        if item == BRACKET:
            yield from bracket
            return
        for batch in read_spill(item):
            pct, above, inside = self.sides(batch, plans)
            if inside.any():
                kept = np.flatnonzero(~inside)
                if not len(kept):
                    continue
                batch = batch.take(kept)
                pct, above = pct[kept], above[kept]
            unknown = np.full(batch.size, np.nan)
            yield _label_outside(
                LabelledBatch(batch.metas, batch.scores, pct, above, unknown, unknown), results
            )


#: The work item of :class:`LabelChipsFn` that outputs the bracket chips (no path is empty).
BRACKET = ""


def _region_scores(batch: ScoredBatch) -> Iterator[tuple[str, np.ndarray]]:
    """``(region, scores)`` for each region of a batch."""
    for region, idx in batch.by_region().items():
        yield region, batch.scores[idx]


class BracketGroups(TypedDict):
    """A region's group in the exact pass (``CoGroupByKey`` of its plan, bracket and above)."""

    plan: Iterable[RegionPlan]
    inside: Iterable[BracketChip]
    above: Iterable[CountMin]


class LabelledOutputs(TypedDict):
    """The outputs of :class:`LabelExactFraction`."""

    chips: PCollection[LabelledBatch]
    regions: PCollection[RegionResult]


def _resolve(
    grouped: tuple[str, BracketGroups],
    plans: dict[str, RegionPlan],
    stats: dict[str, dict[str, Any]] | None = None,
) -> Iterator[LabelledBatch | TaggedOutput[str, RegionResult]]:
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
    yield TaggedOutput(
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


@beam.typehints.with_input_types(ScoredBatch)
@dataclasses.dataclass
class LabelExactFraction(DataclassTransform):
    """Labels exactly ``floor(p * N + 1/2)`` chips residential in every region.

    Attributes:
        fractions: Target fraction per region (and the default).
        epsilon: Rank error of the quantile sketch that brackets each
            region's threshold; the exact pass handles about
            ``2 * (2 * epsilon + 1/(Q-1)) * N`` chips per region, and
            percentiles are within ``100 * (epsilon + 1/(2(Q-1)))`` points.
        spill_dir: Folder the scored batches wait in between the passes
            (:mod:`pipeline.thresholds.spill`), owned by this transform: it
            is emptied and removed at the end. Every worker must reach it.
            Default: a new folder under ``--temp_location``, else under the
            local temp folder.

    Input: PCollection of :class:`~pipeline.values.ScoredBatch`.

    Returns:
        ``{"chips": PCollection[LabelledBatch], "regions": PCollection[RegionResult]}``.
    """

    fractions: RegionFractions
    epsilon: float = DEFAULT_EPSILON
    spill_dir: str | None = None

    def expand(self, scored: PCollection[ScoredBatch]) -> LabelledOutputs:
        """Sketch, spill, bracket pass, exact pass, labelling pass; then the spill goes."""
        spill_dir = self.spill_dir or default_spill_dir(
            scored.pipeline.options.view_as(GoogleCloudOptions).temp_location
        )
        plans = (
            scored
            | "SketchKeys" >> beam.FlatMap(_sketch_inputs)
            | "CountAndSketch" >> beam.CombinePerKey(_CountSketch(self.epsilon))
            | "Plan" >> beam.Map(_plan, self.fractions, self.epsilon)
        )
        plans_si = AsDict(plans)
        stats_si = AsDict(
            scored
            | "RegionScores" >> beam.FlatMap(_region_scores)
            | "ScoreStats" >> beam.CombinePerKey(ScoreStatsFn())
        )
        # The batches wait for the plans (and later the thresholds) on disk;
        # only the file names wait in the runner (see the spill module).
        spilled = (
            scored
            | "Spill" >> beam.ParDo(SpillBatchesFn(spill_dir))
            | "SpreadSpill" >> beam.Reshuffle()
        )
        sides = spilled | "SplitByBracket" >> beam.ParDo(SplitByBracketFn(), plans_si).with_outputs(
            SplitByBracketFn.ABOVE, SplitByBracketFn.INSIDE
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
        results_si = AsDict(resolved.regions | "ByName" >> beam.Map(lambda r: (r.region, r)))
        work = (
            spilled,
            scored.pipeline | "BracketItem" >> beam.Create([BRACKET]),
        ) | "LabelWork" >> beam.Flatten()
        chips = work | "LabelAll" >> beam.ParDo(
            LabelChipsFn(), plans_si, results_si, AsIter(resolved.chips)
        )
        done = chips | "CountLabelled" >> combiners.Count.Globally()
        _ = (
            scored.pipeline
            | "SpillDir" >> beam.Create([spill_dir])
            | "RemoveSpill" >> beam.Map(remove_spill, AsSingleton(done))
        )
        return {"chips": chips, "regions": resolved.regions}
