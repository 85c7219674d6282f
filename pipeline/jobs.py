"""The one shape of every pipeline job (``prepare``, ``score``, ``segment``).

Each job module (:mod:`pipeline.prepare`, :mod:`pipeline.score`,
:mod:`pipeline.segment`) has the same three parts::

    config = XConfig.create(**settings)   # checks everything; ConfigError/InputError
                                          # (exit 2, with the fix) before anything runs
    build_pipeline(pipeline, config)      # adds the job's stages to a Beam pipeline
    summary = run_config(config, options) # runs it; returns the summary.json it wrote

and every job writes one ``summary.json`` layout. Its first keys are the same
for all three jobs (:func:`pipeline.summary.summary_head`)::

    job          "prepare" | "score" | "segment"
    run_id       the run's id (tags of rows, masks and the summary)
    inputs       what the run read and the settings it ran with
    counts       every count the reconciliation compares
    reconciles   one bool: every equation in ``checks`` holds
    checks       those equations, as text over the names in ``counts``
    errors_by_reason, warnings
    files, metrics  added after the run by :func:`pipeline.monitoring.run_to_summary`

followed by the job's own sections (score ``regions``; segment ``masks``,
``footprints``, ``truth`` ...). The shared checks and helpers of the configs
live here too: :func:`new_run_id`; the checks the settings classes run
(:func:`~pipeline.settings.check_batch_sizes`, :class:`~pipeline.settings.FolderOutput`)
live in :mod:`pipeline.settings`.

Transform outputs follow one convention across the pipeline, the one most
of its transforms already use: outputs are read by tag. A transform with one
output returns a PCollection; a step with dead letters returns Beam's tagged
outputs (``beam.ParDo(...).with_outputs(ERRORS, main="tiles")``, read as
``result["tiles"]`` / ``result.tiles`` and ``result[ERRORS]``); a composite
with several outputs returns a dict of the same tags, so ``result[ERRORS]``
reads both alike. Every ``build_pipeline`` returns such a dict. (The
documented public ``ScoreChips`` keeps its ``ScoreChipsResult`` NamedTuple,
whose field names are the same tags.)
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from footprints.errors import ConfigError, TranslatedNotRun


def new_run_id(job: str) -> str:
    """A fresh run id: the job, the UTC time and a random suffix.

    Example: ``new_run_id("score")`` -> ``"score-20261201T132700Z-3f9a1c"``.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{job}-{now}-{uuid.uuid4().hex[:6]}"


def with_defaults(config_class: type, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` over the field defaults of ``config_class``; a None setting is not given.

    The configs' dataclass fields hold each job's defaults, once: the CLI
    passes None for a flag left out, and a config's ``create`` reads every
    setting from the dict this returns.

    Example: for fields ``batch_size: int = 64`` and ``csv: bool = False``,
    ``with_defaults(C, {"batch_size": None, "csv": True})`` ->
    ``{"batch_size": 64, "csv": True}``.
    """
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(config_class)
        if f.default is not dataclasses.MISSING
    }
    return {**defaults, **{k: v for k, v in settings.items() if v is not None}}


class JobConfig(Protocol):
    """What :func:`run_job` needs of a config: where its summary goes."""

    @property
    def summary_path(self) -> str:
        """Path of the run's summary.json."""
        ...


C = TypeVar("C", bound=JobConfig)


def translate_only(options: Sequence[str] | Any) -> bool:
    """Whether Beam only translates the job (``--dry_run=True`` on DataflowRunner).

    That is how a platform engineer checks a submission: Dataflow's runner
    builds and validates the job and submits nothing, so no summary is
    written. The other runners ignore ``--dry_run`` and would run the whole
    job, so it is refused there.

    Args:
        options: Beam ``PipelineOptions``, or the flags to make them from.

    Raises:
        ConfigError: ``--dry_run=True`` with a runner that would run the job.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    if not options.view_as(TestOptions).dry_run:
        return False
    runner = options.view_as(StandardOptions).runner
    name = (
        runner if isinstance(runner, str) else type(runner).__name__ if runner else "DirectRunner"
    )
    if "dataflow" in name.lower():
        return True
    raise ConfigError(
        f"--dry_run=True only translates on DataflowRunner; {name} would run the whole job: "
        "drop it, or use footprints' own --dry-run to see the plan without running"
    )


def run_job(
    build_pipeline: Callable[[Any, C], Any], config: C, options: Sequence[str] | Any = ()
) -> dict[str, Any]:
    """Builds the job on a new pipeline, runs it to completion, returns its summary.

    The run holds its output's lock (:class:`pipeline.writers.files.OutputLock`)
    from before it claims the output until its summary is written, so a
    second run into the same output fails fast instead of mixing files.

    Args:
        build_pipeline: The job's ``build_pipeline(pipeline, config)``.
        config: The job's validated config.
        options: Beam ``PipelineOptions``, or the flags to make them from.

    Raises:
        TranslatedNotRun: Beam's ``--dry_run=True`` on Dataflow: the job was
            translated and validated, nothing ran or was written.
    """
    # Lazy, like every Beam import here: the command line imports this module while it
    # parses flags, and must not load Beam for that (tests/test_layers.py).
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.beam_costs import memoize_dofn_specs
    from pipeline.monitoring import run_to_summary
    from pipeline.writers.files import OutputLocation, OutputLock

    memoize_dofn_specs()
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    if translate_only(options):
        result = pipeline.run()  # Dataflow's runner translates, validates, submits nothing
        job = getattr(result, "job", None)
        steps = len(job.proto_pipeline.components.transforms) if job is not None else 0
        raise TranslatedNotRun(
            "translated, not run (--dry_run=True): "
            + (f"{steps} transforms built and validated for Dataflow; " if steps else "")
            + "nothing was staged, submitted or written; drop --dry_run=True to run it"
        )
    with OutputLock(OutputLocation.of_summary(config.summary_path)):
        return run_to_summary(pipeline, config.summary_path)
