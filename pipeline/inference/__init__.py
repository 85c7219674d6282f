"""Inference: batched RunInference over serialized chip records.

:class:`ScoreRecords` is the stage: ``(ChipMeta, record)`` pairs in,
:class:`ScoredChip` and dead letters out. The model handlers live in
:mod:`pipeline.inference.handlers`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from footprints.contracts import ErrorRecord
from pipeline.inference.handlers import (
    INFERENCE_STAGE,
    NAMESPACE,
    ChipScoreHandler,
    InferenceFailure,
)
from pipeline.sources.chips import ChipMeta

__all__ = ["ChipScoreHandler", "InferenceFailure", "ScoreRecords", "ScoredChip", "split_outcome"]


class ScoredChip(NamedTuple):
    """A chip's metadata and its model score (a float in [0, 1] by contract)."""

    meta: ChipMeta
    score: float


def split_outcome(pair: tuple[ChipMeta, float | InferenceFailure]) -> ScoredChip | ErrorRecord:
    """One RunInference outcome as a :class:`ScoredChip` or a dead letter."""
    meta, outcome = pair
    if isinstance(outcome, InferenceFailure):
        return ErrorRecord(source=meta.source, record=meta.footprint_id, stage=INFERENCE_STAGE,
                           error=outcome.error, message=outcome.message)
    return ScoredChip(meta, outcome)


class SplitOutcomesFn(beam.DoFn):
    """Routes outcomes to scores (main output) or ``errors``, counting both."""

    def __init__(self):
        self._scored = beam.metrics.Metrics.counter(NAMESPACE, "records_scored")
        self._failed = beam.metrics.Metrics.counter(NAMESPACE, "records_rejected_by_model")

    def process(self, pair):
        out = split_outcome(pair)
        if isinstance(out, ErrorRecord):
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(ScoreRecords.ERRORS, out)
        else:
            self._scored.inc()
            yield out


@dataclasses.dataclass
class ScoreRecords(beam.PTransform):
    """Scores ``(ChipMeta, record)`` pairs with Beam's RunInference.

    Attributes:
        handler: The :class:`ChipScoreHandler` (model, batch sizes, hints).

    Returns:
        A ``DoOutputsTuple``: main ``scores`` of :class:`ScoredChip`, and
        ``errors`` of :class:`~footprints.contracts.ErrorRecord` for records
        the model rejected.
    """

    handler: ChipScoreHandler

    ERRORS = "errors"

    def __post_init__(self):
        super().__init__()

    def expand(self, pairs):
        return (pairs
                | "RunInference" >> RunInference(self.handler, metrics_namespace=NAMESPACE)
                | "Split" >> beam.ParDo(SplitOutcomesFn()).with_outputs(
                    self.ERRORS, main="scores"))
