"""Reference implementations the tests compare the real code with.

Each function here is the slow, obvious way to compute what a stage of the
product computes the fast or distributed way; it lives with the tests (not
in the product) because only the tests call it:

* :func:`exact_top_k` -- sort everything, label the k largest: what
  :class:`pipeline.thresholds.LabelExactFraction` must match exactly;
* :func:`select_distributed` -- the distributed selection of
  :mod:`pipeline.thresholds.selection` run in memory, sketch built in
  pieces and merged as workers would;
* :func:`sphere_problems` -- what BigQuery checks when it turns WKB into a
  GEOGRAPHY, for the lon/lat geometry columns of ``pipeline.writers.geo``;
* :func:`apply_platt` -- the Platt calibration in numpy, which the exported
  classifier's graph (``model_training.export``) must reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from model_training.evaluation import logit
from pipeline.thresholds.selection import (
    RankKey,
    plan_region,
    quantile_combine_fn,
    rank_key,
    resolve_bracket,
    sketch_key,
)

#: The longest polygon edge, metres, that counts as "short" on the sphere:
#: over 1 km the planar and the geodesic edge of a building part ways by
#: more than a few centimetres at mid latitudes.
MAX_EDGE_M = 1000.0


def exact_top_k(keys: Sequence[RankKey], k: int) -> list[bool]:
    """The reference: sort everything, label the k largest."""
    order = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)
    chosen = set(order[:k])
    return [i in chosen for i in range(len(keys))]


def select_distributed(
    regions: dict[str, list[tuple[float, str]]],
    targets: dict[str, Fraction],
    epsilon: float,
    partitions: int = 3,
) -> dict[str, list[bool]]:
    """The distributed algorithm run in memory.

    The sketch is built in ``partitions`` pieces and merged, as workers would.

    Args:
        regions: ``{region: [(score, footprint_id), ...]}``.
        targets: ``{region: p}``.
        epsilon: Sketch rank error.
        partitions: Accumulators merged to form each region's sketch.

    Returns:
        ``{region: [is_residential, ...]}`` in input order.
    """
    fn = quantile_combine_fn(epsilon)
    out: dict[str, list[bool]] = {}
    for region, items in regions.items():
        accs = []
        for p in range(partitions):
            acc = fn.create_accumulator()
            for score, fid in items[p::partitions]:
                acc = fn.add_input(acc, sketch_key(score, fid))
            accs.append(acc)
        quantiles = fn.extract_output(fn.merge_accumulators(accs))
        plan = plan_region(region, len(items), targets[region], quantiles, epsilon)
        labels: list[Any] = [None] * len(items)
        inside_idx, inside_keys = [], []
        above, above_min = 0, None
        for i, (score, fid) in enumerate(items):
            side = plan.side(sketch_key(score, fid))
            if side == "inside":
                inside_idx.append(i)
                inside_keys.append(rank_key(score, fid))
            else:
                labels[i] = side == "above"
                if labels[i]:
                    above += 1
                    above_min = score if above_min is None else min(above_min, score)
        res = resolve_bracket(plan, above, above_min, inside_keys)
        for i, chosen in zip(inside_idx, res.selected, strict=True):
            labels[i] = chosen
        out[region] = labels
    return out


def sphere_problems(geoms, max_edge_m: float = MAX_EDGE_M) -> list[str]:
    """Why lon/lat polygons would not load as they are meant on the sphere ([] if they do).

    Checks what BigQuery checks when it turns WKB into a GEOGRAPHY: lon in
    [-180, 180], lat in [-90, 90], valid rings, counterclockwise exteriors;
    and what makes planar and geodesic readings agree: no polygon spanning
    more than 180 degrees of longitude (the antimeridian), no edge longer
    than ``max_edge_m``.
    """
    import pyproj
    import shapely

    geod = pyproj.Geod(ellps="WGS84")
    problems = []
    for i, geom in enumerate(np.asarray(geoms, dtype=object)):
        if geom is None:
            continue
        xmin, ymin, xmax, ymax = geom.bounds
        if xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
            problems.append(f"row {i}: coordinates outside lon/lat ranges {geom.bounds}")
        if xmax - xmin >= 180:
            problems.append(f"row {i}: spans the antimeridian ({xmin} to {xmax})")
        if not geom.is_valid:
            problems.append(f"row {i}: invalid ({shapely.is_valid_reason(geom)})")
        for polygon in getattr(geom, "geoms", [geom]):
            if not polygon.exterior.is_ccw:
                problems.append(f"row {i}: clockwise exterior ring")
            xy = np.asarray(polygon.exterior.coords)
            edges = geod.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])[2]
            if len(edges) and np.max(edges) > max_edge_m:
                problems.append(f"row {i}: an edge of {np.max(edges):.0f} m")
    return problems


def apply_platt(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """The calibrated probabilities ``sigmoid(a * logit(score) + b)`` (NaN stays NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    out = 1.0 / (1.0 + np.exp(-(a * logit(scores) + b)))
    return np.where(np.isnan(scores), np.nan, out)
