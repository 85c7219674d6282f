"""Exact top-k selection per region, as plain functions.

The rule: in a region of N scored footprints with target fraction p, exactly
``k = floor(p * N + 1/2)`` footprints are residential: the first k in
descending *rank key* order. The rank key is
``(score, tie_hash(id), id, source, position)``: the score first, then a
stable 63-bit hash of the footprint id, so ties in score (saturated 0.0 and
1.0, quantized scores) are broken the same way on every runner and worker
count, and in an order unrelated to how ids were assigned. The id, source
and position only matter for hash collisions and duplicate ids.

Distributed, nobody sorts a whole region. The steps, each a function here:

1. a quantile sketch (Beam's MRL ``ApproximateQuantilesCombineFn``, rank
   error below ``epsilon * N``) over the *sketch key* of each region: one
   unsigned 64-bit integer, the float32 score's order-preserving bits then
   the top 32 bits of the tie hash (:func:`sketch_keys`). It is a coarsening
   of the rank key (never orders two footprints against it), so a bracket
   in sketch-key space is a bracket in rank-key space; the hash spreads ties,
   so the bracket holds few elements even when half the region scored
   exactly 1.0; and being a machine integer, batches of keys are computed,
   compared and ranked with numpy;
2. :func:`plan_region` turns the sketch into a bracket ``[lo, hi]`` that
   must contain the k-th largest key;
3. every footprint is classified above, below or inside the bracket
   (:meth:`RegionPlan.side`), and the region's above-count is summed;
4. :func:`resolve_bracket` sorts only the bracket (about
   ``2 * (2 * epsilon + 1/(Q-1)) * N`` elements) and picks the remaining
   ``k - above`` exactly.

Example: scores ``[0.9, 0.9, 0.9, 0.1]``, ``p = 0.5`` -> ``k = 2``; the
two residential footprints are the two of the three 0.9s with the larger
``tie_hash`` of their id, whatever the runner.

Percentiles come from the same sketch (:func:`percentile`) and are within
:func:`percentile_bound` (``100 * (epsilon + 2 / (Q - 1))``) percentage
points of the exact within-region percent rank; see ``docs/scoring.md``.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

SketchKey = int
RankKey = tuple[float, int, str, str, str]


class BracketMissedError(RuntimeError):
    """The quantile sketch's bracket did not contain the threshold.

    The sketch guarantees a rank error below ``epsilon * N``, and the bracket
    is twice as wide, so this means a bug or a region far larger than the
    sketch was sized for (10^9 elements).
    """


def tie_hash(footprint_id: str) -> int:
    """A stable 63-bit hash of a footprint id (BLAKE2b), the same in every process.

    Python's ``hash()`` is salted per process, so it would break ties
    differently on every worker; this one is fixed by the id alone.
    """
    digest = hashlib.blake2b(footprint_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def sketch_keys(scores: Sequence[float] | np.ndarray, footprint_ids: Sequence[str]) -> np.ndarray:
    """The sketch keys of a batch: uint64 ``score bits << 32 | tie_hash >> 31``.

    The score is taken as float32 (what the model returns; a float64 is
    rounded, which keeps the order) and its bits are made order-preserving
    (sign bit flipped for positives, all bits flipped for negatives; -0.0
    counts as 0.0). The key orders footprints as :func:`rank_key` does, with
    footprints that agree on the score and the first 32 bits of the tie hash
    equal; such equal keys always land on the same side of a bracket, and
    the exact pass orders them by the full rank key.
    """
    bits = (np.asarray(scores, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    ordered = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    hashes = np.fromiter(
        (tie_hash(f) >> 31 for f in footprint_ids), dtype=np.uint64, count=len(footprint_ids)
    )
    return (ordered.astype(np.uint64) << np.uint64(32)) | hashes


def sketch_key(score: float, footprint_id: str) -> SketchKey:
    """The key the quantile sketch orders, for one footprint (see :func:`sketch_keys`)."""
    return int(sketch_keys([score], [footprint_id])[0])


def rank_key(score: float, footprint_id: str, source: str = "", position: str = "") -> RankKey:
    """The total order of footprints; residential = the k largest."""
    return (score, tie_hash(footprint_id), footprint_id, source, position)


def target_count(n: int, fraction: Fraction) -> int:
    """``k = floor(p * N + 1/2)``, in exact rational arithmetic.

    ``fraction`` is exact (``Fraction("0.15")``), so ``0.15 * 10`` gives 2,
    not 1 from a binary float just below 1.5.

    Examples: ``target_count(10, Fraction("0.25")) == 3``;
    ``target_count(7, Fraction(1, 2)) == 4``.
    """
    return math.floor(fraction * n + Fraction(1, 2))


def num_quantiles(epsilon: float) -> int:
    """How many quantiles to ask the sketch for: spacing no coarser than epsilon."""
    return int(math.ceil(1.0 / epsilon)) + 1


def quantile_combine_fn(epsilon: float, batched: bool = False) -> ApproximateQuantilesCombineFn:
    """Beam's MRL quantile CombineFn with the explicit rank error ``epsilon``.

    ``batched``: inputs are lists of keys (one call per batch, not per key).
    """
    return ApproximateQuantilesCombineFn.create(
        num_quantiles=num_quantiles(epsilon), epsilon=epsilon, input_batched=batched
    )


@dataclasses.dataclass(frozen=True)
class RegionPlan:
    """A region's count, target and the bracket of its threshold.

    Attributes:
        region: The region key.
        n: Scored footprints in the region.
        k: How many must be residential.
        target: The target fraction p, as given.
        quantiles: The sketch's quantiles of sketch keys, ascending.
        exact: True when the quantiles are every key of the region (regions
            smaller than Q: the sketch then holds all of them).
        lo: Lower bound of the bracket, inclusive; None = unbounded.
        hi: Upper bound of the bracket, inclusive; None = unbounded.
    """

    region: str
    n: int
    k: int
    target: Fraction
    quantiles: tuple[SketchKey, ...]
    exact: bool
    lo: SketchKey | None
    hi: SketchKey | None

    def side(self, key: SketchKey) -> str:
        """``above`` (residential), ``below`` (not) or ``inside`` (decided later)."""
        if self.k == 0:
            return "below"
        if self.k >= self.n:
            return "above"
        if self.hi is not None and key > self.hi:
            return "above"
        if self.lo is not None and key < self.lo:
            return "below"
        return "inside"

    def sides(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`side` of a uint64 array of sketch keys: ``(above, below)`` masks."""
        if self.k == 0 or self.k >= self.n:
            every = np.ones(len(keys), dtype=bool)
            return (~every, every) if self.k == 0 else (every, ~every)
        above = (
            keys > np.uint64(self.hi) if self.hi is not None else np.zeros(len(keys), dtype=bool)
        )
        below = (
            keys < np.uint64(self.lo) if self.lo is not None else np.zeros(len(keys), dtype=bool)
        )
        return above, below


def plan_region(
    region: str, n: int, target: Fraction, quantiles: Sequence[SketchKey], epsilon: float
) -> RegionPlan:
    """Brackets the k-th largest sketch key of a region from its quantile sketch.

    With ``r = N - k`` the ascending rank of the lowest residential footprint
    and quantile ``j`` at rank about ``j / (Q - 1) * N`` (error below
    ``epsilon * N``), the bracket runs from quantile
    ``floor((r/N - m) (Q-1))`` to ``ceil((r/N + m) (Q-1))`` with margin
    ``m = 2 epsilon + 1/(Q-1)``: twice the sketch's error plus one quantile
    step, so the threshold lies inside it.

    Example: N = 1000, k = 300, the quantiles of keys 0..999 given as 1000
    values, epsilon = 0.001: r = 700, bracket = quantiles 696..703.
    """
    quantiles = tuple(quantiles)
    k = target_count(n, target)
    # A sketch of fewer keys than quantiles repeats keys to fill Q slots; if
    # every key is there, keep each once and percentiles are exact.
    distinct = tuple(sorted(set(quantiles)))
    exact = len(distinct) == n
    if exact:
        quantiles = distinct
    lo = hi = None
    if 0 < k < n and len(quantiles) > 1:
        steps = len(quantiles) - 1
        frac = (n - k) / n
        margin = 2 * epsilon + 1.0 / steps
        j_lo = math.floor((frac - margin) * steps)
        j_hi = math.ceil((frac + margin) * steps)
        lo = quantiles[j_lo] if j_lo > 0 else None
        hi = quantiles[j_hi] if j_hi < steps else None
    return RegionPlan(region, n, k, target, quantiles, exact, lo, hi)


def percentile_bound(epsilon: float) -> float:
    """Worst-case error of :func:`percentile`, in percentage points.

    ``100 * (epsilon + 2 / (Q - 1))``: the sketch's rank error, half a
    quantile step for the midpoint estimate, and up to 1.5 steps for the
    sketch's rounding of ranks (regions at least Q footprints large; smaller
    ones are sketched exactly). 0.3 points at the default epsilon of 0.001.
    """
    return 100.0 * (epsilon + 2.0 / (num_quantiles(epsilon) - 1))


def percentile(plan: RegionPlan, key: SketchKey) -> float:
    """Approximate within-region percentile (0-100) of a sketch key.

    The exact value is the percent rank ``100 * r / (N - 1)``, r being how
    many of the region's footprints rank below this one (0 for the lowest,
    100 for the highest). The sketch's quantiles sit at ranks about
    ``j / (Q - 1)``; the estimate is the middle of the quantile slots equal
    to the key, or of the gap between quantiles it falls in. The error is at
    most :func:`percentile_bound` points; regions whose sketch holds every
    key (fewer than Q footprints) get the exact value.

    Example: quantiles ``[10, 20, 30, 40, 50]`` (Q = 5): 30 -> 50.0,
    35 -> 62.5, 50 -> 100.0.
    """
    q = plan.quantiles
    if plan.n <= 1 or len(q) < 2:
        return 0.0
    if plan.exact:
        return 100.0 * bisect.bisect_left(q, key) / (plan.n - 1)
    left, right = bisect.bisect_left(q, key), bisect.bisect_right(q, key)
    position = (left + right - 1) / 2
    return 100.0 * min(max(position / (len(q) - 1), 0.0), 1.0)


def percentiles(
    plan: RegionPlan, keys: np.ndarray, quantiles: np.ndarray | None = None
) -> np.ndarray:
    """:func:`percentile` of a uint64 array of sketch keys, vectorized.

    ``quantiles``: ``plan.quantiles`` as a uint64 array, when the caller
    keeps one per plan (converting it costs more than ranking a batch).
    """
    q = np.asarray(plan.quantiles, dtype=np.uint64) if quantiles is None else quantiles
    if plan.n <= 1 or len(q) < 2:
        return np.zeros(len(keys))
    left = np.searchsorted(q, keys, side="left")
    if plan.exact:
        return 100.0 * left / (plan.n - 1)
    position = (left + np.searchsorted(q, keys, side="right") - 1) / 2
    return 100.0 * np.clip(position / (len(q) - 1), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The outcome of the exact pass in one region.

    Attributes:
        selected: For each bracket element, in input order: residential or not.
        threshold: The lowest residential score (inf when k = 0).
        residential: Footprints labelled residential: above + selected = k.
    """

    selected: tuple[bool, ...]
    threshold: float
    residential: int


def resolve_bracket(
    plan: RegionPlan, above: int, above_min_score: float | None, inside: Sequence[RankKey]
) -> Resolution:
    """Picks exactly ``k - above`` of the bracket's elements, by rank key.

    Args:
        plan: The region's plan.
        above: How many footprints of the region lie above the bracket.
        above_min_score: The lowest score above the bracket (None if none).
        inside: Rank keys of the bracket's footprints, in any order.

    Raises:
        BracketMissedError: if the bracket cannot give exactly k.
    """
    need = plan.k - above
    if need < 0 or need > len(inside):
        raise BracketMissedError(
            f"region {plan.region!r}: the quantile bracket [{plan.lo}, {plan.hi}] holds "
            f"{len(inside)} footprints with {above} above it, which cannot give exactly "
            f"k={plan.k} of N={plan.n}. This is a bug; report it with the region's size and "
            "rerun with a smaller --quantile-epsilon meanwhile."
        )
    order = sorted(range(len(inside)), key=inside.__getitem__, reverse=True)
    chosen = set(order[:need])
    if need > 0:
        threshold = inside[order[need - 1]][0]
    elif plan.k > 0 and above_min_score is not None:
        threshold = above_min_score
    else:
        threshold = math.inf
    return Resolution(
        tuple(i in chosen for i in range(len(inside))), float(threshold), above + need
    )
