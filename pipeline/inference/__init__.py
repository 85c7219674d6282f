"""Inference: batched RunInference over serialized chip records.

:class:`ScoreRecords` is the stage: ``(ChipMeta, record)`` pairs in,
:class:`ScoredBatch` (one per model batch) and dead letters out. The model
handlers live in :mod:`pipeline.inference.handlers`.

Scores stay in batches after the model: every later step (tie hashes, the
sketch, bracket sides, percentiles) runs on a batch's numpy arrays, and
rows are made one per chip only at the end (``pipeline.writers.scores``).
Beam costs some microseconds per element per stage; per batch that cost is
paid once per ``batch_size`` chips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import RunInference
from apache_beam.pvalue import DoOutputsTuple, PCollection, TaggedOutput

from footprints.contracts import ERRORS, ErrorRecord
from pipeline.inference.handlers import (
    INFERENCE_STAGE,
    NAMESPACE,
    BatchOutcomes,
    ChipRecord,
    ChipScoreHandler,
    InferenceFailure,
)
from pipeline.ptransform import DataclassTransform
from pipeline.values import ChipMeta, ScoredBatch

__all__ = ["ChipScoreHandler", "InferenceFailure", "ScoreRecords", "split_outcomes"]


def split_outcomes(
    metas: Sequence[ChipMeta], outcomes: Sequence[float | InferenceFailure]
) -> tuple[ScoredBatch | None, list[ErrorRecord]]:
    """A batch's outcomes as the scored sub-batch (None if empty) and dead letters."""
    good: list[int] = []
    errors: list[ErrorRecord] = []
    for i, (meta, outcome) in enumerate(zip(metas, outcomes, strict=True)):
        if isinstance(outcome, InferenceFailure):
            errors.append(
                ErrorRecord(
                    source=meta.source,
                    record=meta.footprint_id,
                    stage=INFERENCE_STAGE,
                    error=outcome.error,
                    message=outcome.message,
                )
            )
        else:
            good.append(i)
    if not good:
        return None, errors
    if len(good) == len(metas):
        return ScoredBatch(tuple(metas), np.asarray(outcomes, dtype=np.float32)), errors
    return (
        ScoredBatch(
            tuple(metas[i] for i in good), np.asarray([outcomes[i] for i in good], dtype=np.float32)
        ),
        errors,
    )


class SplitOutcomesFn(beam.DoFn):
    """Routes a batch's outcomes to its scored sub-batch (main) or ``errors``, counting both."""

    def __init__(self) -> None:
        self._scored = Metrics.counter(NAMESPACE, "records_scored")
        self._failed = Metrics.counter(NAMESPACE, "records_rejected_by_model")

    def process(
        self, result: BatchOutcomes
    ) -> Iterator[ScoredBatch | TaggedOutput[str, ErrorRecord]]:
        scored, errors = split_outcomes(*result)
        for error in errors:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(ScoreRecords.ERRORS, error)
        if scored is not None:
            self._scored.inc(scored.size)
            yield scored


@beam.typehints.with_input_types(ChipRecord)
@dataclasses.dataclass
class ScoreRecords(DataclassTransform):
    """Scores ``(ChipMeta, record)`` pairs with Beam's RunInference.

    Attributes:
        handler: The :class:`ChipScoreHandler` (model, batch sizes, hints).

    Returns:
        A ``DoOutputsTuple``: main ``scores`` of :class:`ScoredBatch` (one
        per model batch, without the rejected records), and ``errors`` of
        :class:`~footprints.contracts.ErrorRecord` for records the model
        rejected.
    """

    handler: ChipScoreHandler

    ERRORS = ERRORS

    def expand(self, pairs: PCollection[ChipRecord]) -> DoOutputsTuple:
        """Runs the model; returns scores on the main output and failures on ``errors``."""
        outputs: DoOutputsTuple = (
            pairs
            | "RunInference" >> RunInference(self.handler, metrics_namespace=NAMESPACE)
            | "Split" >> beam.ParDo(SplitOutcomesFn()).with_outputs(self.ERRORS, main="scores")
        )
        return outputs
