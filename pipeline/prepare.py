"""``footprints prepare``: inputs to sharded chip records, as one Beam job.

Two kinds of input, one output (chip shards per the chip-record contract):

* **image folders** -- ``--images DIR`` with class subfolders (``house/``,
  ``barn/``): MatchFiles -> read and fully decode each image -> chip;
* **orthophotos + footprints** -- ``--rasters GLOB --footprints FILE``:
  every tile's header is read into a side-input tile index (bad tiles are
  dead letters), the vector file is read in parallel feature ranges, each
  footprint is reprojected to the tiles it touches and cut from them
  (:mod:`pipeline.chipping`).

Bad inputs become :class:`~footprints.contracts.ErrorRecord` rows under
``PREFIX-errors/``; ``PREFIX-summary.json`` holds the counts, which reconcile:
``inputs == chips + errors``.

The job has the shape of every job (:mod:`pipeline.jobs`):
:meth:`PrepareConfig.create` checks the flags and the inputs (the glob
matches, the vector file opens) and fixes the run's 8-bit stretch before
anything runs, :func:`build_pipeline` adds the stages to a pipeline, and
:func:`run_config` runs it and returns the summary. The module wires stages;
the logic lives in ``pipeline.sources`` and ``pipeline.chipping``, where it
is tested without Beam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import DoOutputsTuple, PBegin, PCollection, TaggedOutput

from footprints import contracts
from footprints.errors import ConfigError, InputError
from footprints.files import match_files
from footprints.tiles import TileInfo
from pipeline import chipping
from pipeline.chipping.transforms import ERRORS, CutChipDoFn
from pipeline.counting import count_all, count_by, repeated_ids
from pipeline.jobs import new_run_id, run_job
from pipeline.labels import ClassMap
from pipeline.monitoring import ShowProgress
from pipeline.ptransform import DataclassTransform
from pipeline.settings.prepare import PrepareSettings
from pipeline.sources import images as image_source
from pipeline.sources import vectors
from pipeline.sources.rasters import ReadTiles
from pipeline.summary import duplicate_report, duplicate_warnings, summary_head
from pipeline.writers.chips import WriteChips
from pipeline.writers.files import WriteJson
from pipeline.writers.tables import WriteErrors

T = TypeVar("T")
#: What the chip sources yield: a chip and its class value (None: no class).
ChipWithClass = tuple[contracts.Chip, str | None]


class PrepareConfig(PrepareSettings):
    """Validated settings of one ``prepare`` run; build one with :meth:`create`.

    :class:`PrepareSettings` whose inputs were read (the glob, the footprint file).
    """

    @classmethod
    def create(cls, **settings: Any) -> PrepareConfig:
        """Validates the flags and the inputs; raises ConfigError/InputError before any job.

        The raster glob must match files and the footprint file must open
        with a CRS and the named attributes; for rasters that are not uint8
        the run's 8-bit stretch is fixed here (unless ``spec`` has one). The
        run id defaults to a new one.

        Args:
            **settings: The fields of :class:`PrepareConfig` (None: the default).
        """
        config = cls(**{k: v for k, v in settings.items() if v is not None})
        info = None
        if config.rasters:
            paths = match_files(config.rasters)
            if not paths:
                raise InputError(
                    f"--rasters {config.rasters!r} matches no file; quote the glob "
                    "so the shell does not expand it, e.g. 'tiles/*.tif'"
                )
            if not config.footprints:
                raise ConfigError("--rasters needs --footprints: the polygons to cut chips around")
            info = vectors.inspect_vector(
                config.footprints, config.id_field, config.class_field, config.region_field
            )
            config = dataclasses.replace(
                config, spec=chipping.with_area_stretch(config.spec, paths)
            )
        return dataclasses.replace(config, info=info, run_id=config.run_id or new_run_id("prepare"))


def _split_errors(
    element: T | contracts.ErrorRecord,
) -> Iterator[T | TaggedOutput[str, contracts.ErrorRecord]]:
    if isinstance(element, contracts.ErrorRecord):
        yield beam.pvalue.TaggedOutput(ERRORS, element)
    else:
        yield element


@dataclasses.dataclass
class ChipsFromImages(DataclassTransform):
    """Image folder -> (Chip, class) pairs, with errors on the ``errors`` output."""

    root: str
    class_map: ClassMap
    size: int = 0

    def expand(self, pbegin: PBegin) -> DoOutputsTuple:
        """Lists the folder's images and reads each as a chip."""
        root = self.root.rstrip("/")
        outputs: DoOutputsTuple = (
            pbegin
            | "Match" >> fileio.MatchFiles(f"{root}/**")
            | "OnlyImages" >> beam.Filter(lambda m: image_source.is_image_path(m.path))
            | "Spread" >> beam.Reshuffle()
            | "Read" >> fileio.ReadMatches()
            | "Decode"
            >> beam.Map(
                lambda f, root, cmap, size: _with_class(
                    image_source.image_chip(f.metadata.path, f.read(), root, cmap.label_of, size),
                    f.metadata.path,
                    root,
                ),
                root,
                self.class_map,
                self.size,
            )
            | "SplitErrors" >> beam.FlatMap(_split_errors).with_outputs(ERRORS, main="chips")
        )
        return outputs


def _with_class(
    result: contracts.Chip | contracts.ErrorRecord, path: str, root: str
) -> ChipWithClass | contracts.ErrorRecord:
    if isinstance(result, contracts.ErrorRecord):
        return result
    return result, image_source.class_of(path, root)[1]


def _read_range(
    planned: tuple[str, int, int], crs: str, config: PrepareConfig
) -> Iterator[vectors.Footprint | contracts.ErrorRecord]:
    """One ``(path, start, count)`` range of the footprint file: its footprints and dead letters."""
    path, start, count = planned
    return vectors.read_footprints(
        path, start, count, crs, config.id_field, config.class_field, config.region_field
    )


@dataclasses.dataclass
class ChipsFromFootprints(DataclassTransform):
    """Tiles + footprint file -> (Chip, class) pairs, with errors on ``errors``."""

    tiles: PCollection[TileInfo]
    info: vectors.VectorInfo
    config: PrepareConfig

    def expand(self, pbegin: PBegin) -> dict[str, PCollection[Any]]:
        """Reads the footprint file in ranges and cuts a chip per footprint."""
        c = self.config
        footprints = (
            pbegin
            | "Ranges" >> beam.Create(vectors.plan_ranges(self.info))
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadRange" >> beam.FlatMap(_read_range, self.info.crs, c)
            | "SplitBadGeometry"
            >> beam.FlatMap(_split_errors).with_outputs(ERRORS, main="footprints")
        )
        cut = (
            footprints.footprints
            | "SpreadFootprints" >> beam.Reshuffle()
            | "Cut"
            >> beam.ParDo(
                CutChipDoFn(c.spec, c.class_map), beam.pvalue.AsList(self.tiles)
            ).with_outputs(ERRORS, main="chips")
        )
        errors = (footprints[ERRORS], cut[ERRORS]) | "FootprintErrors" >> beam.Flatten()
        return {"chips": cut.chips, ERRORS: errors, "footprints": footprints.footprints}


def build_summary(
    counts: dict[str, int],
    labels: dict[str, int],
    unlabelled: dict[str, int],
    error_reasons: dict[str, int],
    repeated: list[tuple[str, int]],
    config: PrepareConfig,
    kind: str,
) -> dict[str, Any]:
    """The ``PREFIX-summary.json`` document of a prepare run (its shards are added after).

    Args:
        counts: ``inputs``, ``chips``, ``errors`` (and ``tiles``,
            ``tile_errors`` for footprints).
        labels: Chips per label (``residential``, ``non_residential``, ``unlabelled``).
        unlabelled: Unlabelled chips per class value.
        error_reasons: Dead letters per reason.
        repeated: ``(footprint id, records)`` of ids seen more than once.
        config: The run's settings.
        kind: ``images`` or ``footprints``.
    """
    inputs = counts["inputs"]
    duplicates = duplicate_report(repeated)
    head = summary_head(
        "prepare",
        config.run_id,
        inputs={
            "kind": kind,
            "images": config.images,
            "rasters": config.rasters,
            "footprints": config.footprints,
            "output": config.output,
            "num_shards": config.num_shards,
            "compression": config.compression,
            "chip_spec": dataclasses.asdict(config.spec),
        },
        counts={
            "inputs": inputs,
            "chips": counts["chips"],
            "errors": counts["errors"],
            "tiles": {"usable": counts.get("tiles", 0), "errors": counts.get("tile_errors", 0)},
        },
        checks={"inputs == chips + errors": inputs == counts["chips"] + counts["errors"]},
        errors_by_reason=error_reasons,
        warnings=duplicate_warnings(duplicates),
    )
    return {
        **head,
        "labels": labels,
        "unlabelled_classes": unlabelled,
        "duplicates": duplicates,
    }


def _read_inputs(pipeline: beam.Pipeline, config: PrepareConfig) -> tuple[Any, ...]:
    """Images, or Tiles + Footprints: ``(chips, item errors, tile errors, counted, kind)``.

    ``counted`` holds what the summary counts (``inputs``, and for footprints
    ``tiles`` and ``tile_errors``); tile errors are None for images.
    """
    info = config.info
    counted: dict[str, PCollection[Any]] = {}
    if config.images:
        out = pipeline | "Images" >> ChipsFromImages(
            config.images, config.class_map, config.spec.size
        )
        chips, item_errors = out.chips, out[ERRORS]
        tile_errors = None
        counted["inputs"] = (chips, item_errors) | "AllImages" >> beam.Flatten()
        kind = "images"
    else:
        if info is None or config.rasters is None:
            raise ValueError("build() needs --rasters and check_inputs()'s VectorInfo")
        tiles = pipeline | "Tiles" >> ReadTiles(config.rasters)
        fp = pipeline | "Footprints" >> ChipsFromFootprints(tiles.tiles, info, config)
        chips, item_errors, tile_errors = fp["chips"], fp[ERRORS], tiles[ERRORS]
        read_errors = item_errors | "ReadErrorsOnly" >> beam.Filter(
            lambda e: e.stage == "read_vector"
        )
        counted["inputs"] = (fp["footprints"], read_errors) | "AllFootprints" >> beam.Flatten()
        counted["tiles"] = tiles.tiles
        counted["tile_errors"] = tile_errors
        kind = "footprints"
    return chips, item_errors, tile_errors, counted, kind


def build_pipeline(pipeline: beam.Pipeline, config: PrepareConfig) -> dict[str, PCollection[Any]]:
    """Adds the prepare stages to ``pipeline``; returns its main PCollections.

    ``config`` comes from :meth:`PrepareConfig.create` (which read the
    footprint file's header into ``config.info``).
    """
    if config.footprints and config.info is None:
        raise ConfigError("build the config with PrepareConfig.create(...), which reads the inputs")
    chips, item_errors, tile_errors, counted, kind = _read_inputs(pipeline, config)
    counted["chips"], counted["errors"] = chips, item_errors

    all_errors = (
        (item_errors, tile_errors) if tile_errors is not None else (item_errors,)
    ) | "AllErrors" >> beam.Flatten()
    _ = all_errors | "WriteErrors" >> WriteErrors(config.errors_dir)
    shards = (
        chips
        | "Progress" >> ShowProgress("chips")
        | "Encode" >> beam.Map(lambda pair: contracts.encode_chip(pair[0]))
        | "WriteChips" >> WriteChips(config.output, config.num_shards, config.compression)
    )

    counts = count_all(pipeline, counted)
    labels = count_by(
        chips,
        lambda pair: {1: "residential", 0: "non_residential"}.get(pair[0].label, "unlabelled"),
        "Labels",
    )
    unlabelled = count_by(
        chips | "Unlabelled" >> beam.Filter(lambda pair: pair[0].label is None),
        lambda pair: pair[1] if pair[1] is not None else "(no class)",
        "UnlabelledClasses",
    )
    reasons = count_by(all_errors, lambda e: e.error, "ErrorReasons")
    # Repeated ids are kept (each chip is a record) but counted and warned about.
    repeated = repeated_ids(chips | "Id" >> beam.Map(lambda pair: pair[0].footprint_id))
    summary = (
        counts
        | "Summary"
        >> beam.Map(
            build_summary,
            beam.pvalue.AsSingleton(labels),
            beam.pvalue.AsSingleton(unlabelled),
            beam.pvalue.AsSingleton(reasons),
            beam.pvalue.AsList(repeated),
            config,
            kind,
        )
        | "AfterShards"
        >> beam.Map(lambda s, files: {**s, "shards": files}, beam.pvalue.AsSingleton(shards))
    )
    _ = summary | "WriteSummary" >> WriteJson(config.summary_path)
    return {"chips": chips, ERRORS: all_errors, "summary": summary, "shards": shards}


def run_config(
    config: PrepareConfig, options: PipelineOptions | Sequence[str] = ()
) -> dict[str, Any]:
    """Runs ``prepare`` and returns its summary (also at ``config.summary_path``).

    Args:
        config: Settings from :meth:`PrepareConfig.create`.
        options: Beam pipeline options, or the flags to make them from.
    """
    return run_job(build_pipeline, config, options)
