"""What the scores themselves say about a region: expected share and spread.

The exact-fraction step labels ``k = round(target * N)`` footprints per
region, whatever the scores are. This module tells the analyst whether the
scores agree, and whether they can rank at all:

* **expected share**: with calibrated scores ``p_i`` (the classifier
  contract's ``score`` is one, see docs/scoring.md), the number of
  residential footprints in a region of ``N`` is a sum of independent
  Bernoulli(``p_i``) draws, a Poisson-binomial variable. Its mean share is
  ``sum(p_i) / N`` and its standard deviation ``sqrt(sum(p_i (1 - p_i))) /
  N``. A target far outside ``mean +/- 2 sd`` means the target and the
  imagery disagree (or the model is off for this region).
* **rankability**: a histogram of the scores (1,000 bins over [0, 1]) gives
  their 5th-95th percentile spread and the share of scores in the fullest
  bin. Narrow spread or heavy ties mean the exact fraction is decided by
  the footprint-id tie-break, not by the imagery (``scores_cannot_rank``).

:class:`ScoreStatsFn` is the Beam combiner (per region, fed one array of
scores per batch, merged without gathering); the rest are plain functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import apache_beam as beam
import numpy as np

if TYPE_CHECKING:
    from pipeline.thresholds import RegionResult

#: A :class:`ScoreStatsFn` accumulator: ``[n, sum p, sum p(1-p), histogram]``,
#: three Python ints and an int64 array.
Stats: TypeAlias = list[Any]

#: Histogram bins over [0, 1] for the spread and tie measures.
HISTOGRAM_BINS = 1000
#: Below this 5th-95th percentile spread a region's scores cannot rank.
MIN_SPREAD = 0.02
#: Above this share of a region's scores in one histogram bin, ties decide.
MAX_TIED_SHARE = 0.5


#: Sums of scores are kept in fixed point, in units of 2**-40 (a rounding of at
#: most 5e-13 per score): integer sums do not depend on the order in which
#: workers and bundles add them, so every runner reports the same figures to
#: the last digit (float sums differed in the 17th digit between runners).
FIXED_POINT = 2**40


class ScoreStatsFn(beam.CombineFn):
    """Per region: count, sum of p, sum of p(1 - p), and a score histogram.

    The accumulator is ``[n, sum p, sum p(1-p), histogram]``: Python ints
    (sums in units of :data:`FIXED_POINT`) and an int64 array, so merging is
    exact addition however many workers score the region, in any order.
    """

    def __init__(self) -> None:
        # Beam's CombineFn.__init__ carries no annotations (untyped_calls_exclude does not
        # reach a call through super()).
        super().__init__()  # type: ignore[no-untyped-call]

    def create_accumulator(self) -> Stats:
        """Empty stats: count, two fixed-point sums and a histogram."""
        return [0, 0, 0, np.zeros(HISTOGRAM_BINS, np.int64)]

    def add_input(self, acc: Stats, scores: Sequence[float] | np.ndarray) -> Stats:
        """Adds a batch of scores to the stats."""
        p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        bins = np.minimum((p * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
        return [
            acc[0] + int(p.size),
            acc[1] + _fixed_sum(p),
            acc[2] + _fixed_sum(p * (1.0 - p)),
            acc[3] + np.bincount(bins, minlength=HISTOGRAM_BINS),
        ]

    def merge_accumulators(self, accs: Iterable[Stats]) -> Stats:
        """Sums the stats of several accumulators."""
        total = self.create_accumulator()
        for acc in accs:
            total = [total[0] + acc[0], total[1] + acc[1], total[2] + acc[2], total[3] + acc[3]]
        return total

    def extract_output(self, acc: Stats) -> dict[str, Any]:
        """The final :func:`score_stats` of the accumulated stats."""
        return score_stats(acc)


def _fixed_sum(values: np.ndarray) -> int:
    """``sum(values)`` in units of :data:`FIXED_POINT`, exactly (values in [0, 1])."""
    # 2**40 per value and at most 2**22 values per int64 chunk: no overflow.
    fixed = np.rint(values * FIXED_POINT).astype(np.int64)
    return sum(int(chunk.sum()) for chunk in np.array_split(fixed, max(1, fixed.size >> 22)))


def score_stats(acc: Stats) -> dict[str, Any]:
    """The summary's ``scores`` entry of a region from a :class:`ScoreStatsFn` accumulator.

    Returns:
        ``expected_fraction`` (mean score), ``expected_sd`` (Poisson-binomial
        sd of the share), ``spread`` (5th-95th percentile, to the histogram's
        0.001), ``tied_share`` (share of scores in the fullest 0.001 bin),
        ``can_rank``. Example: scores [0.2, 0.4, 0.6, 0.8] -> expected 0.5,
        sd sqrt(0.16 + 0.24 + 0.24 + 0.16) / 4 = 0.2236.
    """
    n = int(acc[0])
    if n == 0:
        return {
            "n": 0,
            "expected_fraction": None,
            "expected_sd": None,
            "spread": None,
            "tied_share": None,
            "can_rank": False,
        }
    hist = np.asarray(acc[3])
    cumulative = np.cumsum(hist) / n
    low = int(np.searchsorted(cumulative, 0.05, side="left"))
    high = int(np.searchsorted(cumulative, 0.95, side="left"))
    spread = (high - low) / HISTOGRAM_BINS
    tied = float(hist.max() / n)
    return {
        "n": n,
        "expected_fraction": float(acc[1] / FIXED_POINT / n),
        "expected_sd": float(math.sqrt(max(acc[2], 0) / FIXED_POINT) / n),
        "spread": spread,
        "tied_share": tied,
        "can_rank": bool(spread >= MIN_SPREAD and tied <= MAX_TIED_SHARE),
    }


def warning(code: str, message: str) -> dict[str, str]:
    """One entry of a summary's ``warnings`` list (see docs/scoring.md)."""
    return {"code": code, "message": message}


def rank_warnings(regions: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """``scores_cannot_rank`` warnings for regions whose score stats say so.

    Args:
        regions: Region name -> :func:`score_stats` output.
    """
    out = []
    for name, stats in sorted(regions.items()):
        if not stats or stats.get("can_rank", True) or not stats.get("n"):
            continue
        out.append(
            warning(
                "scores_cannot_rank",
                f"region {name}: the scores cannot rank its {stats['n']:,} footprints (90% of "
                f"them within {stats['spread']:.3f}, {stats['tied_share']:.0%} within 0.001 of "
                "each other), so which footprints are labelled residential is decided by the "
                "id tie-break, not the imagery; check the model (its card's quality) and the "
                "chips",
            )
        )
    return out


def model_warnings(model_dir: str, what: str) -> list[dict[str, str]]:
    """``weak_model`` when the model card's ``quality.weak`` is true; [] otherwise.

    Args:
        model_dir: A SavedModel directory with ``assets/model_card.json``.
        what: ``classifier`` or ``segmenter``, for the message.
    """
    from footprints import contracts

    try:
        card = contracts.read_model_card(model_dir)
    except (OSError, ValueError):
        return []
    quality = card.get("quality") or {}
    if not quality.get("weak"):
        return []
    reasons = "; ".join(quality.get("reasons") or ["no reason recorded"])
    return [
        warning(
            "weak_model",
            f"the {what} {model_dir} failed its quality gate at training: "
            f"{reasons}. Its results here cannot be trusted; retrain it on more or "
            "better-labelled data",
        )
    ]


def share_line(name: str, target: float, stats: Mapping[str, Any] | None) -> str:
    """``region A: target 45%, model expects 41% +/- 3%`` (the sd, one sigma)."""
    if not stats or stats.get("expected_fraction") is None:
        return f"region {name}: target {target:.0%}, model expects - (no scores)"
    return (
        f"region {name}: target {target:.0%}, model expects "
        f"{stats['expected_fraction']:.0%} +/- {stats['expected_sd']:.0%}"
    )


def regions_with_stats(results: Iterable[RegionResult]) -> dict[str, dict[str, Any]]:
    """Region name -> score stats of :class:`~pipeline.thresholds.RegionResult` objects."""
    return {r.region: r.scores for r in results if r.scores}
