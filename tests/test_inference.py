"""Scored batches after the model (``pipeline.inference``): columns, sub-batches, dead letters."""

import numpy as np

from pipeline.inference import INFERENCE_STAGE, split_outcomes
from pipeline.inference.handlers import InferenceFailure
from pipeline.values import ChipMeta, ScoredBatch


def _meta(fid: str, region: str = "a") -> ChipMeta:
    return ChipMeta(fid, region, None, None, None, f"shard-{fid}", "0")


def test_by_region_gives_each_regions_positions_in_batch_order():
    batch = ScoredBatch(
        tuple(_meta(f, r) for f, r in zip("pqrs", "abab", strict=True)),
        np.array([0.1, 0.2, 0.3, 0.4], np.float32),
    )
    groups = batch.by_region()
    assert {r: list(i) for r, i in groups.items()} == {"a": [0, 2], "b": [1, 3]}
    sub = batch.take(groups["b"])
    assert sub.footprint_ids == ["q", "s"] and sub.scores.tolist() == [
        np.float32(0.2),
        np.float32(0.4),
    ]
    assert sub.size == 2


def test_failures_become_dead_letters_and_the_rest_stays_one_batch():
    metas = [_meta("p"), _meta("q"), _meta("r")]
    failure = InferenceFailure("model_rejected_record", "re-encode the chip")
    scored, errors = split_outcomes(metas, [0.9, failure, 0.1])
    assert scored.footprint_ids == ["p", "r"]
    assert scored.scores.dtype == np.float32 and scored.scores.tolist() == [
        np.float32(0.9),
        np.float32(0.1),
    ]
    ((source, record, stage, error, message),) = [
        (e.source, e.record, e.stage, e.error, e.message) for e in errors
    ]
    assert (source, record, stage, error) == (
        "shard-q",
        "q",
        INFERENCE_STAGE,
        "model_rejected_record",
    )
    assert message == "re-encode the chip"


def test_a_batch_that_failed_entirely_gives_no_batch():
    failure = InferenceFailure("inference_failed", "m")
    scored, errors = split_outcomes([_meta("p"), _meta("q")], [failure, failure])
    assert scored is None and [e.record for e in errors] == ["p", "q"]
    whole, none = split_outcomes([_meta("p")], [0.5])
    assert none == [] and whole.footprint_ids == ["p"]
