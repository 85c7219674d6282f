"""Exact fraction selection as plain functions: k, tie-break, bracket, percentiles."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import exact_top_k, select_distributed

from footprints.errors import ConfigError
from pipeline.thresholds.fractions import RegionFractions, parse_fraction, read_region_fractions
from pipeline.thresholds.selection import (
    BracketMissedError,
    percentile,
    percentile_bound,
    percentiles,
    plan_region,
    quantile_combine_fn,
    rank_key,
    resolve_bracket,
    sketch_key,
    sketch_keys,
    target_count,
    tie_hash,
)


@pytest.mark.parametrize(
    "n, p, k",
    [
        (10, "0.25", 3),  # 2.5 rounds half up
        (10, "0.15", 2),  # 1.5 exactly: binary 0.15 * 10 would give 1.4999...
        (7, "1/2", 4),
        (0, "0.3", 0),
        (5, "0", 0),
        (5, "1", 5),
        (1000, "0.333", 333),
    ],
)
def test_target_count_rounds_half_up_exactly(n, p, k):
    assert target_count(n, Fraction(p)) == k


def test_tie_hash_is_fixed_across_processes():
    # A constant, not hash(): Python salts hash() per process.
    assert tie_hash("fp-0001") == tie_hash("fp-0001")
    assert tie_hash("fp-0001") != tie_hash("fp-0002")
    assert 0 <= tie_hash("") < 2**63


def test_tie_hash_value_is_stable():
    # Pinned so a change of hash (which would relabel ties) is caught.
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"fp-0001", digest_size=8).digest(), "big") >> 1
    assert tie_hash("fp-0001") == expected


def test_plan_region_docstring_example():
    quantiles = [(float(i), 0) for i in range(1000)]
    plan = plan_region("r", 1000, Fraction(3, 10), quantiles, 0.001)
    assert plan.k == 300 and plan.exact
    assert plan.lo == (696.0, 0) and plan.hi == (703.0, 0)
    assert plan.side((700.0, 0)) == "inside"
    assert plan.side((704.0, 0)) == "above"
    assert plan.side((695.0, 0)) == "below"


def test_resolve_bracket_picks_by_rank_key_and_reports_threshold():
    plan = plan_region("r", 5, Fraction(3, 5), [], 0.01)
    inside = [rank_key(0.5, "a"), rank_key(0.5, "b"), rank_key(0.2, "c")]
    res = resolve_bracket(plan, above=1, above_min_score=0.9, inside=inside)
    assert res.residential == 3
    assert sum(res.selected) == 2
    assert res.selected[2] is False  # 0.2 loses to both 0.5s
    assert res.threshold == 0.5


def test_resolve_bracket_refuses_to_guess_when_bracket_missed():
    plan = plan_region("r", 10, Fraction(1, 2), [], 0.01)
    with pytest.raises(BracketMissedError, match="cannot give exactly"):
        resolve_bracket(plan, above=1, above_min_score=0.9, inside=[rank_key(0.5, "a")])
    with pytest.raises(BracketMissedError):
        resolve_bracket(plan, above=6, above_min_score=0.9, inside=[])


def test_k_zero_and_k_all():
    none = plan_region("r", 3, Fraction(0), [], 0.01)
    assert {none.side((x, 0)) for x in (0.0, 1.0)} == {"below"}
    assert math.isinf(resolve_bracket(none, 0, None, []).threshold)
    everything = plan_region("r", 3, Fraction(1), [], 0.01)
    assert {everything.side((x, 0)) for x in (0.0, 1.0)} == {"above"}
    assert resolve_bracket(everything, 3, 0.25, []).threshold == 0.25


# Scores from a tiny set, with exact 0.0 and 1.0: saturated and heavily tied.
_scores = st.sampled_from([0.0, 1.0, 1.0, 0.5, 0.25, 0.999])
_region = st.lists(_scores, min_size=1, max_size=400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    regions=st.lists(_region, min_size=1, max_size=3),
    p=st.lists(
        st.fractions(min_value=0, max_value=1, max_denominator=1000), min_size=3, max_size=3
    ),
    epsilon=st.sampled_from([0.1, 0.05, 0.01]),
    partitions=st.integers(1, 4),
)
def test_distributed_selection_is_exact_with_ties_and_saturation(regions, p, epsilon, partitions):
    data = {
        f"r{i}": [(s, f"fp-{i}-{j}") for j, s in enumerate(scores)]
        for i, scores in enumerate(regions)
    }
    targets = {f"r{i}": p[i] for i in range(len(regions))}
    got = select_distributed(data, targets, epsilon, partitions)
    for region, items in data.items():
        k = target_count(len(items), targets[region])
        assert sum(got[region]) == k
        assert got[region] == exact_top_k([rank_key(s, f) for s, f in items], k)


def test_distributed_selection_approximate_sketch_large_tied_region():
    # 20k elements, 60% exactly 1.0: the sketch is approximate (buffers of a
    # few hundred at epsilon 0.05) and the bracket must still give exact k.
    items = [(1.0 if i % 5 < 3 else (i % 7) / 7, f"id{i}") for i in range(20_000)]
    got = select_distributed({"r": items}, {"r": Fraction("0.42")}, 0.05, partitions=4)["r"]
    k = target_count(20_000, Fraction("0.42"))
    assert sum(got) == k
    assert got == exact_top_k([rank_key(s, f) for s, f in items], k)


def test_bracket_is_small_even_with_saturated_scores():
    fn = quantile_combine_fn(0.01)
    items = [(1.0, f"id{i}") for i in range(5_000)] + [(0.0, f"z{i}") for i in range(5_000)]
    acc = fn.create_accumulator()
    for s, f in items:
        acc = fn.add_input(acc, sketch_key(s, f))
    plan = plan_region("r", len(items), Fraction("0.25"), fn.extract_output(acc), 0.01)
    inside = sum(plan.side(sketch_key(s, f)) == "inside" for s, f in items)
    # The hash spreads the 1.0 ties: the exact pass sees ~6% of N, not 50%.
    assert inside < 0.1 * len(items)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 3000), epsilon=st.sampled_from([0.05, 0.02]), seed=st.integers(0, 10_000))
def test_percentile_within_documented_bound(n, epsilon, seed):
    import random

    rng = random.Random(seed)
    items = [(rng.choice([0.0, 1.0, rng.random()]), f"id{seed}-{i}") for i in range(n)]
    fn = quantile_combine_fn(epsilon)
    acc = fn.create_accumulator()
    for s, f in items:
        acc = fn.add_input(acc, sketch_key(s, f))
    quantiles = fn.extract_output(acc)
    plan = plan_region("r", n, Fraction(1, 2), quantiles, epsilon)
    keys = sorted(sketch_key(s, f) for s, f in items)
    errors = [abs(percentile(plan, key) - 100 * rank / (n - 1)) for rank, key in enumerate(keys)]
    assert max(errors) <= percentile_bound(epsilon) + 1e-9


@settings(max_examples=20, deadline=None)
@given(
    scores=st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, 0.5]), st.floats(-2, 2, allow_nan=False, width=32)
        ),
        min_size=2,
        max_size=300,
    ),
    epsilon=st.sampled_from([0.1, 0.01]),
)
def test_batched_keys_sides_and_percentiles_match_the_scalar_ones(scores, epsilon):
    import numpy as np

    ids = [f"id{i}" for i in range(len(scores))]
    keys = sketch_keys(np.asarray(scores, dtype=np.float32), ids)
    assert keys.dtype == np.uint64
    assert keys.tolist() == [sketch_key(s, f) for s, f in zip(scores, ids, strict=True)]
    # The sketch key never orders two footprints against the rank key.
    by_rank = sorted(range(len(ids)), key=lambda i: rank_key(scores[i] + 0.0, ids[i]))
    assert all(keys[a] <= keys[b] for a, b in zip(by_rank, by_rank[1:], strict=False))
    fn = quantile_combine_fn(epsilon, batched=True)
    acc = fn.add_input(
        fn.add_input(fn.create_accumulator(), keys[::2].tolist()), keys[1::2].tolist()
    )
    plan = plan_region("r", len(ids), Fraction(1, 3), fn.extract_output(acc), epsilon)
    above, below = plan.sides(keys)
    assert [
        ("above" if a else "below" if b else "inside") for a, b in zip(above, below, strict=True)
    ] == [plan.side(int(k)) for k in keys]
    assert percentiles(plan, keys).tolist() == [percentile(plan, int(k)) for k in keys]


def test_percentile_docstring_example():
    plan = plan_region("r", 500, Fraction(1, 2), [10, 20, 30, 40, 50], 0.25)
    assert not plan.exact
    assert [percentile(plan, x) for x in (30, 35, 50, 5, 99)] == [50.0, 62.5, 100.0, 0.0, 100.0]


def test_parse_fraction_rejects_out_of_range_and_text():
    assert parse_fraction("0.35", "x") == Fraction(7, 20)
    with pytest.raises(ConfigError, match="outside"):
        parse_fraction("1.5", "--residential-fraction")
    with pytest.raises(ConfigError, match="not a number"):
        parse_fraction("lots", "--residential-fraction")


def test_read_region_fractions(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("region,residential_fraction\nb,0.5\na,0.25\n\n")
    fr = read_region_fractions(str(path), Fraction(1, 10))
    assert fr == RegionFractions(Fraction(1, 10), (("a", Fraction(1, 4)), ("b", Fraction(1, 2))))
    assert fr.for_region("a") == Fraction(1, 4) and fr.for_region("zzz") == Fraction(1, 10)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,fraction\na,0.5\n", "header"),
        ("region,residential_fraction\na,0.5\na,0.6\n", "line 3: region 'a' appears twice"),
        ("region,residential_fraction\na,2\n", "line 2.*outside"),
        ("region,residential_fraction\n,0.2\n", "line 2: the region is empty"),
        ("region,residential_fraction\na,0.2,x\n", "expected 2 columns"),
        ("", "header"),
    ],
)
def test_read_region_fractions_rejects_bad_rows(tmp_path, text, message):
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_region_fractions(str(path), Fraction(0))
