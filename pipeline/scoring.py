"""Scoring chip records as one reusable stage: :class:`ScoreChips`.

Validate every field, score with the classifier, label exactly the target
fraction per region, one row per chip::

    Validate             pipeline.sources.chips   every field checked before batching
    ScoreRecords         pipeline.inference       RunInference; one ScoredBatch per batch
    LabelExactFraction   pipeline.thresholds      k per region, on whole batches
    ToRows               pipeline.writers.scores  SCORES_SCHEMA rows, one per chip

Any pipeline with serialized chip records applies it: the ``score`` job
(:mod:`pipeline.score`) to the records it reads from shards, the
``segment`` job (:mod:`pipeline.segment`) to the chips it cuts from its
own footprints. It sits below both jobs, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from footprints import contracts
from footprints.contracts import ErrorRecord
from pipeline.inference import ScoreRecords
from pipeline.inference.handlers import (
    ChipRecord,
    ChipScoreHandler,
)
from pipeline.inference.onnx_runtime import resolve_runtime
from pipeline.jobs import (
    new_run_id,
)
from pipeline.monitoring import ShowProgress
from pipeline.ptransform import DataclassTransform
from pipeline.settings.score import (
    CPU_BATCH_SIZE,
    DEFAULT_EPSILON,
    MAX_CHIP_PIXELS,
    ScoreSettings,
    check_epsilon,
)
from pipeline.sources.chips import (
    NAMESPACE,
    validate_chip,
)
from pipeline.thresholds import LabelExactFraction, RegionResult
from pipeline.thresholds.fractions import RegionFractions, parse_fraction
from pipeline.values import ChipMeta, LocatedRecord
from pipeline.writers.files import join
from pipeline.writers.scores import (
    score_rows,
)


def as_located(element: Any) -> LocatedRecord:
    """Normalizes a ScoreChips input element to a :class:`LocatedRecord`.

    Accepted: ``bytes`` (a serialized chip record), ``(source, record)`` or
    ``(source, position, record)``; ``source`` and ``position`` are strings
    that name the record in dead letters.
    """
    if isinstance(element, bytes):
        return LocatedRecord("<pipeline>", "", element)
    if isinstance(element, LocatedRecord):
        return element
    if isinstance(element, tuple) and len(element) == 2:
        return LocatedRecord(str(element[0]), "", element[1])
    if isinstance(element, tuple) and len(element) == 3:
        return LocatedRecord(str(element[0]), str(element[1]), element[2])
    raise TypeError(
        f"ScoreChips takes bytes, (source, record) or (source, position, record), "
        f"got {type(element).__name__}"
    )


class ValidateChipsFn(beam.DoFn):
    """Checks every field of each record (no pixel decode), so bad records never reach a batch.

    Args:
        max_pixels: The decode limit: the most pixels a chip's image may declare.
    """

    ERRORS = contracts.ERRORS

    def __init__(self, max_pixels: int = MAX_CHIP_PIXELS) -> None:
        self._max_pixels = max_pixels
        self._valid = Metrics.counter(NAMESPACE, "records_valid")
        self._invalid = Metrics.counter(NAMESPACE, "records_invalid")

    def process(self, element: Any) -> Iterator[ChipRecord | TaggedOutput[str, ErrorRecord]]:
        """Yields the located chip if valid, else its ErrorRecord on ``errors``."""
        located = as_located(element)
        checked = validate_chip(located, self._max_pixels)
        if isinstance(checked, ErrorRecord):
            self._invalid.inc()
            yield beam.pvalue.TaggedOutput(self.ERRORS, checked)
        else:
            self._valid.inc()
            yield ChipMeta.of(checked, located), located.record


class ScoreChipsResult(NamedTuple):
    """The outputs of :class:`ScoreChips`.

    Attributes:
        scores: Rows of ``footprints.contracts.SCORES_SCHEMA`` (dicts).
        errors: :class:`~footprints.contracts.ErrorRecord` dead letters of
            validation and inference.
        regions: :class:`~pipeline.thresholds.RegionResult`, one per region.
    """

    scores: PCollection[dict[str, Any]]
    errors: PCollection[ErrorRecord]
    regions: PCollection[RegionResult]


@dataclasses.dataclass
class ScoreChips(DataclassTransform):
    """Scores serialized chip records and labels exactly k per region residential.

    Input elements: ``bytes`` (a serialized chip record), ``(source, record)``
    or ``(source, position, record)``, as :func:`as_located` accepts.

    Attributes:
        model_dir: Classifier SavedModel directory (the classifier contract).
        fractions: Target residential fraction per region, or one fraction
            (a float, a ``Fraction`` or a decimal string) for every region.
        batch_size: Largest batch handed to the model.
        min_batch_size: Smallest batch (default: ``batch_size``; only the last
            batch of a bundle is smaller).
        model_id: Written on every row (default: from the model directory).
        run_id: Written on every row (default: a new timestamped id).
        crs: CRS of the output ``geometry`` column; polygons in another CRS
            are reprojected. None keeps polygons as they come.
        model_format: ``savedmodel`` or ``tfx``.
        accelerator: Beam accelerator resource hint for the inference step.
        model_copies: Model copies per machine shared by its processes (one
            per GPU); None loads one per process.
        epsilon: Rank error of the quantile sketch (see docs/scoring.md).
        spill_dir: Folder the scored batches wait in between the exact
            fraction's passes, reachable by every worker; emptied and removed
            at the end (see :class:`~pipeline.thresholds.LabelExactFraction`).
        serving_graph: ``frozen`` (the default) or ``saved``; see
            :mod:`pipeline.inference.serving`.
        max_chip_pixels: The decode limit: a chip whose image declares more
            pixels is dead-lettered (``image_too_large``) before any decode.
        runtime: ``auto``, ``tensorflow`` or ``onnxruntime``
            (:mod:`pipeline.inference.onnx_runtime`); resolved here.
        int8: Serve the model's int8 ONNX file (ONNX Runtime).

    Returns:
        :class:`ScoreChipsResult` ``(scores, errors, regions)``.

    Example::

        result = records | ScoreChips("models/classifier", 0.35, batch_size=32)
        result.scores | WriteToParquet(...)
    """

    model_dir: str
    fractions: RegionFractions | float | Fraction | str
    batch_size: int = CPU_BATCH_SIZE
    min_batch_size: int | None = None
    model_id: str | None = None
    run_id: str | None = None
    crs: str | None = None
    model_format: str = "savedmodel"
    accelerator: str | None = None
    model_copies: int | None = None
    epsilon: float = DEFAULT_EPSILON
    spill_dir: str | None = None
    serving_graph: str = "frozen"
    max_chip_pixels: int = MAX_CHIP_PIXELS
    runtime: str = "auto"
    int8: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.runtime = resolve_runtime(
            self.model_dir, self.runtime, int8=self.int8, model_format=self.model_format
        )
        if not isinstance(self.fractions, RegionFractions):
            self.fractions = RegionFractions(parse_fraction(str(self.fractions), "fraction"))
        check_epsilon(self.epsilon)
        self.model_id = self.model_id or default_model_id(self.model_dir)
        self.run_id = self.run_id or new_run_id("score")

    @classmethod
    def from_settings(cls, settings: ScoreSettings, **given: Any) -> ScoreChips:
        """The transform of a job's settings: every field of both takes the settings' value.

        Args:
            settings: The job's settings (:class:`ScoreSettings`).
            **given: Fields the settings do not hold, or hold otherwise
                (``spill_dir``, ``model_copies`` worked out from the accelerator).
        """
        names = {f.name for f in dataclasses.fields(cls)} & {
            f.name for f in dataclasses.fields(settings)
        }
        return cls(**{name: getattr(settings, name) for name in names - set(given)}, **given)

    def handler(self) -> ChipScoreHandler:
        """The model handler this transform scores with."""
        return ChipScoreHandler(
            self.model_dir,
            min_batch_size=self.min_batch_size or self.batch_size,
            max_batch_size=self.batch_size,
            model_format=self.model_format,
            accelerator=self.accelerator,
            model_copies=self.model_copies,
            serving_graph=self.serving_graph,
            runtime=self.runtime,
            int8=self.int8,
        )

    def expand(self, records: PCollection[Any]) -> ScoreChipsResult:
        """Validates, scores and labels the records; returns scores and ``errors``.

        The records come in any of :func:`as_located`'s forms, which it
        normalizes at validation: until then they have no one element type, so
        the transform has no input hint.
        """
        fractions = self.fractions
        assert isinstance(fractions, RegionFractions), "__post_init__ parsed the fraction"
        checked = records | "Validate" >> beam.ParDo(
            ValidateChipsFn(self.max_chip_pixels)
        ).with_outputs(ValidateChipsFn.ERRORS, main="chips")
        scored = (
            checked.chips
            | "Progress" >> ShowProgress("chips")
            | "Score" >> ScoreRecords(self.handler())
        )
        labelled = scored.scores | "Label" >> LabelExactFraction(
            fractions, self.epsilon, self.spill_dir
        )
        # Batches until here; one row per chip from now on (the public output).
        rows = labelled["chips"] | "ToRows" >> beam.FlatMap(
            score_rows, self.model_id, self.run_id, self.crs
        )
        errors = (
            checked[ValidateChipsFn.ERRORS],
            scored[ScoreRecords.ERRORS],
        ) | "ScoreErrors" >> beam.Flatten()
        return ScoreChipsResult(rows, errors, labelled["regions"])


def default_model_id(model_dir: str) -> str:
    """The model card's ``model_id``, else ``<dir name>@<hash of saved_model.pb>``."""
    card = contracts.read_model_card(model_dir)
    if card.get("model_id"):
        return str(card["model_id"])
    digest = ""
    pb = join(model_dir, "saved_model.pb")
    if FileSystems.exists(pb):
        with FileSystems.open(pb) as f:
            digest = "@" + hashlib.sha256(f.read()).hexdigest()[:12]
    return os.path.basename(os.path.normpath(model_dir)) + digest
