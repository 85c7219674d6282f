"""The counts that reconcile: one combine over tagged streams, every name present."""

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counting import _CountByName, count_all, count_by


def test_count_all_counts_each_stream_and_gives_zero_for_an_empty_one():
    with TestPipeline() as p:
        chips = p | "Chips" >> beam.Create(["a", "b", "c"])
        errors = p | "Errors" >> beam.Create(["x"])
        empty = p | "Empty" >> beam.Create([])
        counts = count_all(p, {"chips": chips, "errors": errors, "tiles": empty})
        assert_that(counts, equal_to([{"chips": 3, "errors": 1, "tiles": 0}]))


def test_count_all_sums_the_counts_of_many_bundles():
    # Reshuffle splits the stream over bundles; each emits its own partial count.
    with TestPipeline() as p:
        chips = p | "Chips" >> beam.Create(range(2500)) | beam.Reshuffle()
        counts = count_all(p, {"chips": chips}, keyed={"odd": (chips, lambda i: f"odd:{i % 2}")})
        assert_that(counts, equal_to([{"chips": 2500, "odd:0": 1250, "odd:1": 1250}]))


def test_count_by_counts_keys_as_strings_sorted():
    with TestPipeline() as p:
        errors = p | beam.Create(["nodata", "no_raster", "nodata", None])
        got = count_by(errors, lambda e: e, "Reasons")
        assert_that(got, equal_to([{"None": 1, "no_raster": 1, "nodata": 2}]))


def test_partial_counts_merge_as_workers_would():
    fn = _CountByName(("chips", "errors"))
    parts = []
    # Each worker's accumulator sums the per-bundle counts it received.
    for bundles in ([{"chips": 2}], [{"errors": 1}, {"chips": 0}], [], [{"chips": 1}]):
        acc = fn.create_accumulator()
        for counts in bundles:
            acc = fn.add_input(acc, counts)
        parts.append(acc)
    assert fn.extract_output(fn.merge_accumulators(parts)) == {"chips": 3, "errors": 1}
    # An empty input still names every stream.
    assert fn.extract_output(fn.create_accumulator()) == {"chips": 0, "errors": 0}


def test_repeated_ids_are_exact_across_bundles_and_buckets():
    import random

    from apache_beam.testing.test_pipeline import TestPipeline as _Pipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.counting import _PACK_EVERY, repeated_ids

    rng = random.Random(3)
    # More ids than one packing buffer, a few repeated 2 to 4 times, in shuffled order.
    ids = [f"county-7/{i:06d}" for i in range(3 * _PACK_EVERY)]
    repeats = {ids[5]: 2, ids[_PACK_EVERY + 1]: 3, ids[-1]: 4, "é-ünïcode": 2}
    stream = ids + [i for i, n in repeats.items() for _ in range(n - 1)] + ["é-ünïcode"]
    rng.shuffle(stream)
    with _Pipeline() as p:
        found = repeated_ids(p | beam.Create(stream, reshuffle=True))
        assert_that(found, equal_to(sorted(repeats.items())))


def test_id_counts_are_exact_through_packs_merges_and_compaction():
    import collections
    import random

    from pipeline.counting import _PACK_EVERY, _IdCountsFn

    rng = random.Random(11)
    ids = [f"parcel/{rng.randrange(10**9):09d}" for _ in range(9 * _PACK_EVERY)]
    # Repeats inside one accumulator, across accumulators, and odd ids: empty, multi-byte.
    stream = ids + ids[:40] + ids[-3:] * 3 + ["", "", "ä/東京/🏠", "ä/東京/🏠", "x"]
    rng.shuffle(stream)
    fn = _IdCountsFn()
    parts = []
    for chunk in (stream[:100], stream[100 : 5 * _PACK_EVERY], stream[5 * _PACK_EVERY :]):
        acc = fn.create_accumulator()
        for element in chunk:
            acc = fn.add_input(acc, element)
        parts.append(fn.compact(acc))
    got = fn.extract_output(fn.merge_accumulators(parts))
    expected = sorted((i, n) for i, n in collections.Counter(stream).items() if n > 1)
    assert got == expected
    assert ("", 2) in got and ("ä/東京/🏠", 2) in got


def test_a_pack_of_sequential_ids_costs_a_few_bytes_an_id():
    from pipeline.counting import _IdCountsFn

    # One bucket's share of a million-chip run's ids (fp-00000000 ... in steps of about 256).
    ids = [f"fp-{i:08d}" for i in range(0, 1_000_000, 256)]
    pack = _IdCountsFn._pack(ids, [])
    assert pack.n == len(ids) and pack.extra == {}
    # Arrow held 11 bytes, a 4-byte offset and an 8-byte count per id (23 B).
    assert len(pack.blob) / len(ids) < 6


def test_repeated_ids_of_unique_ids_is_empty():
    from apache_beam.testing.test_pipeline import TestPipeline as _Pipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.counting import repeated_ids

    with _Pipeline() as p:
        assert_that(repeated_ids(p | beam.Create([f"id-{i}" for i in range(500)])), equal_to([]))
