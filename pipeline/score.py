"""The scoring job: chip shards in, labelled footprints out.

Stages, each from its own module::

    ReadChipRecords        pipeline.sources.chips   shards -> located records; damage -> errors
    ScoreChips             pipeline.scoring
      Validate             pipeline.sources.chips   every field checked (contract, image header and
                                                    decode limit, polygon, CRS), before batching
      ScoreRecords         pipeline.inference       RunInference, batched, records fed as they are;
                                                    one ScoredBatch out per model batch
      LabelExactFraction   pipeline.thresholds      sketch bracket + exact pass: k per region,
                                                    on whole batches (numpy)
      ToRows               pipeline.writers.scores  SCORES_SCHEMA rows, one per chip
    WriteScoreOutputs      pipeline.writers.scores  scores/, errors/, CSV, BigQuery, summary.json

:class:`~pipeline.scoring.ScoreChips` is the reusable part: any pipeline that has serialized
chip records (the segmentation job cuts them from its polygons) applies it
and writes the result with :class:`~pipeline.writers.scores.WriteScoreOutputs`
or its own sinks. The command follows the job shape of :mod:`pipeline.jobs`:
:meth:`ScoreConfig.create` checks every setting, :func:`build_pipeline` adds
the stages to a pipeline, :func:`run_config` runs it and returns the summary
(what the ``footprints score`` command calls).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import PCollection

from footprints import contracts
from footprints.errors import ConfigError, ContractError, Reason
from footprints.files import match_files
from pipeline.counting import count_all
from pipeline.inference.handlers import accelerator_count, check_model
from pipeline.inference.onnx_runtime import check_int8, resolve_runtime
from pipeline.inference.serving import serving_graph_warnings
from pipeline.jobs import new_run_id, run_job, with_defaults
from pipeline.monitoring import add_warnings
from pipeline.scoring import ScoreChips
from pipeline.settings.score import ScoreSettings
from pipeline.sources.chips import (
    ReadChipRecords,
    peek_crs,
)
from pipeline.summary import duplicate_warnings, summary_head
from pipeline.thresholds import RegionResult
from pipeline.thresholds.expected import model_warnings, rank_warnings, regions_with_stats
from pipeline.thresholds.fractions import (
    RegionFractions,
    parse_fraction,
    read_region_fractions,
    unmatched_regions,
)
from pipeline.thresholds.selection import percentile_bound
from pipeline.writers.files import SPILL_DIR, join
from pipeline.writers.scores import (
    WriteScoreOutputs,
    check_bigquery_table,
)

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
        **kwargs: Any,
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
            except ContractError as exc:
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
        kwargs["runtime"] = resolve_runtime(
            model_dir, kwargs["runtime"], int8=kwargs["int8"], model_format=kwargs["model_format"]
        )
        if check_model_dir:
            check_model(model_dir, kwargs["model_format"], kwargs["runtime"], kwargs["int8"])
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


def build_pipeline(pipeline: beam.Pipeline, config: ScoreConfig) -> dict[str, PCollection[Any]]:
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
        build_summary,
        crs=config.crs,
        run_info=run_info(config),
        csv=config.csv,
        bigquery_table=config.bigquery_table,
        num_shards=config.num_shards,
        warnings=model_warnings(config.model_dir, "classifier"),
        fractions=config.fractions,
    )
    return {"scores": result.scores, "errors": errors, "regions": result.regions}


# --------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


#: ``errors_by_reason`` key of scores the model returned outside [0, 1].
OUT_OF_RANGE_KEY = f"inference/{Reason.SCORE_OUT_OF_RANGE}"
#: Warning codes of :func:`score_range_warnings`.
SCORES_OUT_OF_RANGE = "scores_out_of_range"
MODEL_SCORES_OUT_OF_RANGE = "model_scores_out_of_range"


def score_range_warnings(errors_by_reason: Mapping[str, int], scored: int) -> list[dict[str, str]]:
    """A warning when the model returned scores outside [0, 1]; none when it did not.

    ``model_scores_out_of_range`` when no record got a valid score (a broken
    model: the command exits 3), else ``scores_out_of_range``.

    Example: ``({"inference/score_out_of_range": 3}, 17)`` -> one
    ``scores_out_of_range`` warning naming the 3 records.
    """
    bad = errors_by_reason.get(OUT_OF_RANGE_KEY, 0)
    if not bad:
        return []
    fix = (
        "the classifier contract's score is a probability in [0, 1]: end the model with a "
        "sigmoid, or export it with `footprints train classifier`"
    )
    if scored == 0:
        return [
            {
                "code": MODEL_SCORES_OUT_OF_RANGE,
                "message": f"every score the model returned ({bad}) was outside [0, 1], so "
                f"nothing was labelled: the model is broken; {fix}",
            }
        ]
    return [
        {
            "code": SCORES_OUT_OF_RANGE,
            "message": f"the model returned scores outside [0, 1] for {bad} records; they are "
            f"dead letters (errors/, {Reason.SCORE_OUT_OF_RANGE}), not labelled; {fix}",
        }
    ]


def build_summary(
    counts: Mapping[str, int],
    regions: list[RegionResult],
    residential: Mapping[str, int],
    errors_by_reason: Mapping[str, int],
    duplicates: Mapping[str, Any],
    run: Mapping[str, Any],
    warnings: Sequence[Mapping[str, str]] = (),
    fractions: RegionFractions | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` document of a scoring run.

    Args:
        counts: ``records_read``, ``read_errors``, ``scored``, ``errors``.
        regions: The exact pass's result per region.
        residential: Residential rows per region, counted on the written rows
            (an independent check of k).
        errors_by_reason: Dead letters per ``stage/error``.
        duplicates: ``{"count": ids seen more than once, "examples": [...]}``.
        run: Run facts (run_id, model, fractions, epsilon, outputs).
        warnings: Warnings known before the run (a weak model); the
            regions' ``scores_cannot_rank`` warnings are added to them, then
            ``unmatched_region`` (rows of ``fractions`` no chip matched) and
            ``duplicate_id`` (repeated footprint ids).
        fractions: The run's targets (None: no per-region rows to match).
    """
    input_records = counts["records_read"] + counts["read_errors"]
    per_region = {}
    for r in sorted(regions):
        achieved = residential.get(r.region, 0)
        per_region[r.region] = {
            "n": r.n,
            "k": r.k,
            "target_fraction": r.target_fraction,
            "residential": achieved,
            "achieved_fraction": achieved / r.n if r.n else None,
            "exact": achieved == r.k,
            "threshold": _finite(r.threshold),
            "exact_pass_size": r.bracket_size,
            # What the calibrated scores expect (see pipeline.thresholds.expected).
            "scores": r.scores,
        }
    scored, errors = counts["scored"], counts["errors"]
    inputs = {k: v for k, v in run.items() if k != "run_id"}
    head = summary_head(
        "score",
        run.get("run_id", ""),
        inputs=inputs,
        counts={
            "input_records": input_records,
            "records_read": counts["records_read"],
            "scored": scored,
            "errors": errors,
            "residential": sum(residential.values()),
        },
        checks={"input_records == scored + errors": input_records == scored + errors},
        errors_by_reason=errors_by_reason,
        warnings=[
            *map(dict, warnings),
            *score_range_warnings(errors_by_reason, scored),
            *rank_warnings(regions_with_stats(regions)),
            *(unmatched_regions(fractions, per_region) if fractions else []),
            *duplicate_warnings(dict(duplicates)),
        ],
    )
    return {
        **head,
        "regions": per_region,
        "all_regions_exact": all(v["exact"] for v in per_region.values()),
        "duplicates": dict(duplicates),
    }


def run_config(
    config: ScoreConfig, options: PipelineOptions | Sequence[str] = ()
) -> dict[str, Any]:
    """Runs the job to completion; returns the summary it wrote.

    Args:
        config: The validated settings.
        options: Beam pipeline options, or the flags to make them from.
    """
    summary = run_job(build_pipeline, config, options)
    # Known only from the run's metrics, which the summary holds once the run ended.
    return add_warnings(config.summary_path, serving_graph_warnings(summary, config.serving_graph))
