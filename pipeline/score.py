"""The scoring job: chip shards in, labelled footprints out.

Stages, each from its own module::

    ReadChipRecords        pipeline.sources.chips   shards -> located records; damage -> errors
    ScoreChips
      Validate             pipeline.sources.chips   every field checked (contract, image header and
                                                    decode limit, polygon, CRS), before batching
      ScoreRecords         pipeline.inference       RunInference, batched, records fed as they are;
                                                    one ScoredBatch out per model batch
      LabelExactFraction   pipeline.thresholds      sketch bracket + exact pass: k per region,
                                                    on whole batches (numpy)
      ToRows               pipeline.writers.scores  SCORES_SCHEMA rows, one per chip
    WriteScoreOutputs      pipeline.writers.scores  scores/, errors/, CSV, BigQuery, summary.json

:class:`ScoreChips` is the reusable part: any pipeline that has serialized
chip records (the segmentation job cuts them from its polygons) applies it
and writes the result with :class:`~pipeline.writers.scores.WriteScoreOutputs`
or its own sinks. The command follows the job shape of :mod:`pipeline.jobs`:
:meth:`ScoreConfig.create` checks every setting, :func:`build_pipeline` adds
the stages to a pipeline, :func:`run_config` runs it and returns the summary
(what the ``footprints score`` command calls).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from footprints import contracts
from footprints.contracts import ErrorRecord
from footprints.errors import ConfigError
from footprints.files import match_files
from pipeline.counting import count_all
from pipeline.inference import ScoreRecords
from pipeline.inference.handlers import (
    ChipScoreHandler,
    accelerator_count,
    check_model,
)
from pipeline.inference.onnx_runtime import check_int8, resolve_runtime
from pipeline.inference.serving import serving_graph_warnings
from pipeline.jobs import new_run_id, run_job, with_defaults
from pipeline.monitoring import ShowProgress, add_warnings
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
    ChipMeta,
    LocatedRecord,
    ReadChipRecords,
    peek_crs,
    validate_chip,
)
from pipeline.thresholds import LabelExactFraction
from pipeline.thresholds.expected import model_warnings
from pipeline.thresholds.fractions import RegionFractions, parse_fraction, read_region_fractions
from pipeline.thresholds.selection import percentile_bound
from pipeline.writers.files import SPILL_DIR, join
from pipeline.writers.scores import (
    WriteScoreOutputs,
    check_bigquery_table,
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

    ERRORS = "errors"

    def __init__(self, max_pixels: int = MAX_CHIP_PIXELS):
        self._max_pixels = max_pixels
        self._valid = beam.metrics.Metrics.counter(NAMESPACE, "records_valid")
        self._invalid = beam.metrics.Metrics.counter(NAMESPACE, "records_invalid")

    def process(self, element):
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

    scores: beam.PCollection
    errors: beam.PCollection
    regions: beam.PCollection


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

    def __post_init__(self):
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

    def expand(self, records):
        """Validates, scores and labels the records; returns scores and ``errors``."""
        checked = records | "Validate" >> beam.ParDo(
            ValidateChipsFn(self.max_chip_pixels)
        ).with_outputs(ValidateChipsFn.ERRORS, main="chips")
        scored = (
            checked.chips
            | "Progress" >> ShowProgress("chips")
            | "Score" >> ScoreRecords(self.handler())
        )
        labelled = scored.scores | "Label" >> LabelExactFraction(
            self.fractions, self.epsilon, self.spill_dir
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


# --------------------------------------------------------------------------
# The command's job
# --------------------------------------------------------------------------


class ScoreConfig(ScoreSettings):
    """Validated settings of ``footprints score``: :class:`ScoreSettings` whose inputs were checked.

    Build one with :meth:`create`; the field defaults are the command's
    defaults (:mod:`pipeline.settings.score`).
    """

    @classmethod
    def create(
        cls,
        *,
        chips: str,
        model_dir: str,
        residential_fraction: str | float,
        output: str,
        region_fractions: str | None = None,
        check_model_dir: bool = True,
        **kwargs,
    ) -> ScoreConfig:
        """Validates every setting; raises ConfigError/ContractError before any job starts.

        The chip glob must match files, the model must meet the classifier
        contract (it is loaded once here), fractions must lie in [0, 1], the
        region CSV must be well formed, batch sizes and epsilon in range. The
        output CRS defaults to that of the first chip that carries a polygon;
        the run id to a new one. A setting given as None takes the field's
        default.
        """
        kwargs = with_defaults(cls, kwargs)
        default = parse_fraction(str(residential_fraction), "--residential-fraction")
        fractions = (
            read_region_fractions(region_fractions, default)
            if region_fractions
            else RegionFractions(default)
        )
        shards = match_files(chips)
        if not shards:
            raise ConfigError(
                f"--chips {chips!r} matches no files; pass a glob of chip shards such as "
                "'chips/*.tfrecord*'"
            )
        for path in shards:
            try:
                contracts.parse_shard_name(path)
            except contracts.ContractError as exc:
                raise ConfigError(f"--chips: {exc}; only chip shards can be scored") from None
        # Every value rule, checked on construction (before the model is loaded).
        ScoreSettings(
            chips=chips, model_dir=model_dir, fractions=fractions, output=output, **kwargs
        )
        if kwargs["accelerator"]:
            accelerator_count(kwargs["accelerator"])
        if kwargs["bigquery_table"]:
            check_bigquery_table(kwargs["bigquery_table"])
        if not contracts.model_dir_exists(model_dir):
            raise ConfigError(
                f"--model {model_dir!r} does not exist; pass the classifier SavedModel "
                "directory (`footprints train classifier` writes one)"
            )
        if check_model_dir:
            check_model(model_dir, kwargs["model_format"])
        kwargs["runtime"] = resolve_runtime(
            model_dir, kwargs["runtime"], int8=kwargs["int8"], model_format=kwargs["model_format"]
        )
        if kwargs["int8"]:
            check_int8(model_dir, kwargs["allow_inexact_int8"])
        if kwargs["crs"] is None:
            kwargs["crs"] = peek_crs(shards)
        else:
            from pipeline.writers.geo import check_crs

            check_crs(kwargs["crs"])
        kwargs["run_id"] = kwargs["run_id"] or new_run_id("score")
        return cls(chips=chips, model_dir=model_dir, fractions=fractions, output=output, **kwargs)


def run_info(config: ScoreConfig) -> dict[str, Any]:
    """The run's settings as summary.json ``inputs`` records them."""
    fractions = {
        "default": float(config.fractions.default),
        "per_region": {r: float(f) for r, f in config.fractions.per_region},
    }
    return {
        "chips": config.chips,
        "model": config.model_dir,
        "model_format": config.model_format,
        "fractions": fractions,
        "quantile_epsilon": config.epsilon,
        "percentile_error_bound_points": percentile_bound(config.epsilon),
        "batch_size": config.batch_size,
        "serving_graph": config.serving_graph,
        "max_chip_pixels": config.max_chip_pixels,
        "runtime": config.runtime + ("/int8" if config.int8 else ""),
        "crs": config.crs,
    }


def build_pipeline(pipeline: beam.Pipeline, config: ScoreConfig) -> dict[str, beam.PCollection]:
    """Adds the ``footprints score`` stages to ``pipeline``; returns its main outputs.

    The outputs, by tag: ``scores`` (SCORES_SCHEMA rows), ``errors`` (every
    dead letter, reading included) and ``regions`` (RegionResult).
    """
    copies = config.model_copies
    if copies is None and config.accelerator:
        copies = accelerator_count(config.accelerator)  # one model per GPU
    scorer = ScoreChips.from_settings(
        config, model_copies=copies, spill_dir=join(config.output, SPILL_DIR)
    )
    read = pipeline | "ReadChips" >> ReadChipRecords(config.chips)
    result = read.records | "ScoreChips" >> scorer
    errors = (read[ReadChipRecords.ERRORS], result.errors) | "AllErrors" >> beam.Flatten()
    counts = count_all(
        pipeline,
        {
            "records_read": read.records,
            "read_errors": read[ReadChipRecords.ERRORS],
            "scored": result.scores,
            "errors": errors,
        },
    )
    # ScoreChips fills in both ids when it is built.
    assert scorer.model_id is not None and scorer.run_id is not None
    _ = {
        "scores": result.scores,
        "errors": errors,
        "regions": result.regions,
        "counts": counts,
    } | "Write" >> WriteScoreOutputs(
        config.output,
        scorer.model_id,
        scorer.run_id,
        crs=config.crs,
        run_info=run_info(config),
        csv=config.csv,
        bigquery_table=config.bigquery_table,
        num_shards=config.num_shards,
        warnings=model_warnings(config.model_dir, "classifier"),
        fractions=config.fractions,
    )
    return {"scores": result.scores, "errors": errors, "regions": result.regions}


def run_config(config: ScoreConfig, options: PipelineOptions | Sequence[str] = ()) -> dict:
    """Runs the job to completion; returns the summary it wrote.

    Args:
        config: The validated settings.
        options: Beam pipeline options, or the flags to make them from.
    """
    summary = run_job(build_pipeline, config, options)
    # Known only from the run's metrics, which the summary holds once the run ended.
    return add_warnings(config.summary_path, serving_graph_warnings(summary, config.serving_graph))
