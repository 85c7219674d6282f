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
