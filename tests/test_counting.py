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


def test_count_by_counts_keys_as_strings_sorted():
    with TestPipeline() as p:
        errors = p | beam.Create(["nodata", "no_raster", "nodata", None])
        got = count_by(errors, lambda e: e, "Reasons")
        assert_that(got, equal_to([{"None": 1, "no_raster": 1, "nodata": 2}]))


def test_partial_counts_merge_as_workers_would():
    fn = _CountByName(("chips", "errors"))
    parts = []
    for stream in (["chips", "chips"], ["errors"], [], ["chips"]):
        acc = fn.create_accumulator()
        for name in stream:
            acc = fn.add_input(acc, name)
        parts.append(acc)
    assert fn.extract_output(fn.merge_accumulators(parts)) == {"chips": 3, "errors": 1}
    # An empty input still names every stream.
    assert fn.extract_output(fn.create_accumulator()) == {"chips": 0, "errors": 0}
