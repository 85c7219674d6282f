"""The segmentation job: orthophoto tiles in, masks and footprints out.

Stages, each from its own module::

    MatchTiles      pipeline.sources.rasters       glob -> paths, one per scene name
    ValidateTiles   pipeline.sources.rasters       CRS, transform, bands, dtype, readable
    PlanWindows     pipeline.stitching.transforms  rows of windows, Reshuffle, lazy plan per row
                                                   (windows on absent blocks skipped), Reshuffle
    ReadWindows     pipeline.sources.rasters       block-aligned reads, numpy padding, scaling
    RunSegmenter    pipeline.inference.segmenter   batched RunInference (+TTA), crop halos
    StitchTiles     pipeline.stitching.transforms  group by tile, write cores: masks/<tile>.tif
    WriteMasks      pipeline.writers.masks         masks/mosaic.vrt
    Polygonize      pipeline.polygonize            trace, merge across tiles, simplify
    Provenance      pipeline.writers.footprints    stable ids, lon/lat, model, run, tile, date
    WriteGeoTable   pipeline.writers.tables        footprints/ (GeoParquet 1.1), errors/
  with --classifier:
    ChipFootprints  pipeline.polygonize            chips of the footprints, cut as `prepare` does
    ScoreChips      pipeline.scoring               RunInference + exact residential fraction
    WriteGeoTable   pipeline.writers.tables        scores/ (GeoParquet 1.1)
    Classify        pipeline.writers.footprints    classified/: footprint + label, one row each
  with --csv / --bigquery-table:
    WriteCsv, WriteScoresBigQuery  pipeline.writers.scores  the run's main table
    Catalog         pipeline.writers.stac          stac/: a Collection, an Item per mask
    summary.json    this module                    reconciles tiles, windows (and chips); last

:func:`build_pipeline` wires them for a :class:`SegmentConfig` (made by
:meth:`SegmentConfig.create`, which checks every setting);
:func:`run_config` runs the job and returns its summary (what the demo
calls), the job shape of :mod:`pipeline.jobs`. :func:`mask_iou` measures
masks against true masks.
"""

from __future__ import annotations

import collections
import datetime
import os
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSideInput, PCollection

from footprints import contracts
from footprints.contracts import ErrorRecord, SegmenterAssets
from footprints.errors import ConfigError, ContractError
from footprints.files import match_files
from footprints.tiles import TileInfo, first_crs
from pipeline import chipping
from pipeline.counting import count_all
from pipeline.evaluation import mask_iou, truth_summary
from pipeline.inference.handlers import accelerator_count
from pipeline.inference.onnx_runtime import check_int8, resolve_runtime
from pipeline.inference.segmenter import RunSegmenter, SegmenterModelHandler
from pipeline.inference.serving import serving_graph_warnings
from pipeline.jobs import new_run_id, run_job, with_defaults
from pipeline.monitoring import ShowProgress, add_warnings
from pipeline.polygonize import TOO_SMALL, ChipFootprints, Polygonize
from pipeline.scoring import ScoreChips, default_model_id
from pipeline.settings import check_batch_sizes
from pipeline.settings.chips import ChipSpec
from pipeline.settings.segment import SegmentSettings
from pipeline.sources.rasters import NODATA, MatchTiles, ReadWindows, ValidateTiles
from pipeline.stitching.transforms import PlanWindows, StitchTiles
from pipeline.summary import summary_head
from pipeline.thresholds import RegionResult
from pipeline.thresholds.expected import model_warnings, rank_warnings, regions_with_stats
from pipeline.thresholds.fractions import RegionFractions
from pipeline.values import CorePrediction, EmptyCores
from pipeline.writers.files import SPILL_DIR, WriteJson, join
from pipeline.writers.footprints import classified_row, footprint_rows, tiff_date
from pipeline.writers.masks import WriteMasks
from pipeline.writers.tables import WriteErrors, WriteGeoTable, geoparquet_schema

__all__ = ["SegmentConfig", "build_pipeline", "mask_iou", "run_config"]

MASKS_DIR = "masks"
FOOTPRINTS_DIR = "footprints"
ERRORS_DIR = "errors"
SCORES_DIR = "scores"
CLASSIFIED_DIR = "classified"
REASON = "reason:"
#: Footprint rows given their provenance at a time (a bundle's last batch is smaller).
PROVENANCE_BATCH = 1000


class SegmentConfig(SegmentSettings):
    """Validated settings of ``footprints segment``; build one with :meth:`create`.

    :class:`SegmentSettings` whose inputs (tiles, models, truth) were checked.
    """

    @classmethod
    def create(
        cls,
        *,
        raster: str,
        model_dir: str,
        output: str,
        halo: int | None = None,
        check_model: bool = True,
        **kwargs: Any,
    ) -> SegmentConfig:
        """Validates every setting; raises ConfigError before any job starts.

        The raster glob must match files; the model must meet the segmenter
        contract (it is loaded once here, unless ``check_model`` is False);
        the halo must leave a core (``window - 2 * halo >= 1``); batch sizes,
        threshold, tolerance and area in range. The halo defaults to the
        model's ``receptive_halo`` asset, else an eighth of its window. The
        footprints CRS defaults to that of the first tile that has one. A
        setting given as None takes the field's default.
        """
        # No --mask-threshold: the model's own (chosen on its validation blocks).
        threshold_from_model = kwargs.get("mask_threshold") is None
        kwargs = with_defaults(cls, kwargs)
        if not match_files(raster):
            raise ConfigError(
                f"--raster {raster!r} matches no files; pass a glob of orthophoto tiles such "
                "as 'area/tiles/*.tif' (quote it so the shell does not expand it)"
            )
        if not contracts.model_dir_exists(model_dir):
            raise ConfigError(
                f"--model {model_dir!r} does not exist; pass the segmenter SavedModel directory "
                "(`footprints train segmenter` writes one)"
            )
        try:
            assets = (
                contracts.check_segmenter_model(model_dir)
                if check_model
                else contracts.read_segmenter_assets(model_dir)
            )
        except ContractError as exc:
            raise ConfigError(f"--model: {exc}") from None
        if halo is None:
            halo = assets.receptive_halo or assets.window_size // 8
        if threshold_from_model and assets.mask_threshold is not None:
            kwargs["mask_threshold"] = assets.mask_threshold
        # Every value rule, checked on construction (before the inputs are read further).
        base: dict[str, Any] = dict(
            raster=raster, model_dir=model_dir, output=output, assets=assets, halo=halo
        )
        SegmentSettings(**base, **kwargs)
        kwargs.update(_check_options(kwargs, raster, model_dir))
        if kwargs.get("classifier"):
            kwargs.update(_check_classifier(kwargs, raster, assets, check_model))
        elif kwargs.get("residential_fraction") is not None:
            raise ConfigError(
                "--residential-fraction needs --classifier DIR (the model that "
                "scores the footprints)"
            )
        kwargs["model_id"] = default_model_id(model_dir)
        if kwargs.get("classifier"):
            kwargs["classifier_model_id"] = default_model_id(kwargs["classifier"])
        return cls(**base, **kwargs)


def _check_options(kwargs: dict[str, Any], raster: str, model_dir: str) -> dict[str, Any]:
    """Checks the runtime, truth and output options; returns the settings they resolve to.

    The runtime (``auto`` resolved), the footprints CRS (default: the first
    tile's), the run id (default: a new one) and the imagery date (parsed).
    """
    kwargs = dict(kwargs)
    if kwargs.get("accelerator"):
        accelerator_count(kwargs["accelerator"])
    kwargs["runtime"] = resolve_runtime(model_dir, kwargs["runtime"], int8=kwargs["int8"])
    if kwargs["int8"]:
        check_int8(model_dir, kwargs["allow_inexact_int8"])
    _check_truth(kwargs)
    if kwargs.get("regularize"):
        try:
            import buildingregulariser  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--regularize needs the buildingregulariser package: "
                "pip install 'footprints[regularize]'"
            ) from None
    if kwargs.get("footprints_crs"):
        from pipeline.writers.geo import check_crs

        check_crs(kwargs["footprints_crs"])
    else:
        kwargs["footprints_crs"] = first_crs(match_files(raster))
    kwargs["run_id"] = kwargs["run_id"] or new_run_id("segment")
    if kwargs.get("imagery_date") is not None:
        from pipeline.writers.footprints import parse_imagery_date

        kwargs["imagery_date"] = parse_imagery_date(str(kwargs["imagery_date"]))
    if kwargs.get("bigquery_table"):
        from pipeline.writers.scores import check_bigquery_table

        check_bigquery_table(kwargs["bigquery_table"])
    keys = ("runtime", "footprints_crs", "run_id", "imagery_date")
    return {k: kwargs[k] for k in keys}


def _check_truth(kwargs: dict[str, Any]) -> None:
    """Validates ``--truth-masks`` / ``--truth-footprints`` (one of them, readable)."""
    from footprints.errors import InputError
    from pipeline.sources.vectors import inspect_vector

    masks, footprints = kwargs.get("truth_masks"), kwargs.get("truth_footprints")
    if masks and footprints:
        raise ConfigError("pass one truth: --truth-masks GLOB or --truth-footprints FILE, not both")
    if masks and not match_files(masks):
        raise ConfigError(f"--truth-masks {masks!r} matches no files")
    if footprints:
        try:
            inspect_vector(footprints, None, None, None)
        except InputError as exc:
            raise ConfigError(f"--truth-footprints: {exc}") from None


def _check_classifier(
    kwargs: dict[str, Any], raster: str, assets: SegmenterAssets, check_model: bool
) -> dict[str, Any]:
    """Validates the scoring flags; returns the settings to add to the config."""
    from pipeline.thresholds.fractions import parse_fraction

    classifier = kwargs["classifier"]
    if kwargs.get("residential_fraction") is None:
        raise ConfigError(
            "--classifier needs --residential-fraction P, the share of "
            "footprints to label residential (e.g. 0.35)"
        )
    fraction = parse_fraction(str(kwargs["residential_fraction"]), "--residential-fraction")
    check_batch_sizes(kwargs["classifier_batch_size"], flags=("--classifier-batch-size", None))
    if not contracts.model_dir_exists(classifier):
        raise ConfigError(
            f"--classifier {classifier!r} does not exist; pass the classifier "
            "SavedModel directory (`footprints train classifier` writes one)"
        )
    if check_model:
        try:
            contracts.check_classifier_model(classifier)
        except ContractError as exc:
            raise ConfigError(f"--classifier: {exc}") from None
    spec = kwargs.get("chip_spec") or ChipSpec()
    if assets.raw_dtype != "uint8":
        # One stretch for the whole run, as `footprints prepare` fixes it, so
        # that chip brightness is comparable across tiles.
        spec = chipping.with_area_stretch(spec, match_files(raster))
    return {"residential_fraction": fraction, "chip_spec": spec}


def _reconcile(
    c: Mapping[str, int], skipped: list[dict[str, Any]], classifier: bool
) -> tuple[dict[str, Any], dict[str, bool]]:
    """The summary's ``counts`` and its ``checks`` (each equation and whether it holds)."""
    skipped_nodata = sum(1 for s in skipped if s["reason"] == "nodata")
    tiles = {
        "matched": c["paths"] + c["match_errors"],
        "rejected": c["match_errors"] + c["validate_errors"],
        "valid": c["tiles"],
        "written": c["masks"],
        "skipped_nodata": skipped_nodata,
        "failed": len(skipped) - skipped_nodata,
    }
    windows = {
        "planned": c["windows_planned"],
        "inferred": c["cores_inferred"],
        "nodata": c["cores_nodata"],
        "failed": c["cores_failed"],
        "skipped_empty": c["cores_empty"],
    }
    counted: dict[str, Any] = {
        "tiles": tiles,
        "windows": windows,
        "footprints": c["footprints"],
        # Traced but under --min-area: noise, not buildings (not errors either).
        "footprints_too_small": c["footprints_too_small"],
        "errors": c["errors"],
    }
    checks = {
        "tiles.matched == tiles.written + tiles.skipped_nodata + tiles.failed + tiles.rejected": (
            tiles["matched"]
            == tiles["written"] + tiles["skipped_nodata"] + tiles["failed"] + tiles["rejected"]
        ),
        "windows.planned == windows.inferred + windows.nodata + windows.failed"
        " + windows.skipped_empty": (
            windows["planned"]
            == windows["inferred"]
            + windows["nodata"]
            + windows["failed"]
            + windows["skipped_empty"]
        ),
    }
    if classifier:
        counted.update(
            {k: c[k] for k in ("chips", "chip_errors", "scored", "score_errors", "classified")}
        )
        checks["footprints == chips + chip_errors"] = (
            c["footprints"] == c["chips"] + c["chip_errors"]
        )
        checks["chips == scored + score_errors"] = c["chips"] == c["scored"] + c["score_errors"]
        # One row per footprint, scored or not.
        checks["classified == footprints"] = c["classified"] == c["footprints"]
    return counted, checks


def _scores_section(
    config: SegmentConfig, regions: list[RegionResult], tables: Mapping[str, list[str]]
) -> dict[str, Any]:
    """summary.json ``scores``: the classifier, its target and each region's result."""
    return {
        "classifier": config.classifier,
        "residential_fraction": float(config.residential_fraction or 0),
        "regions": {
            r.region: {
                "n": r.n,
                "k": r.k,
                "target_fraction": r.target_fraction,
                "threshold": r.threshold,
                "residential": r.residential,
                "scores": r.scores,
            }
            for r in sorted(regions)
        },
        "files": tables.get("scores", []),
    }


def build_summary(
    counts: Mapping[str, int],
    *,
    config: SegmentConfig,
    masks: Mapping[str, list[str]],
    skipped: list[dict[str, Any]],
    tables: Mapping[str, list[str]],
    regions: list[RegionResult] | None = None,
    model_warnings: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a run: counts that reconcile, and where things are.

    ``counts`` maps PCollection names to sizes (``paths``, ``tiles``,
    ``cores_inferred``, ...; a name that is missing counts 0) and
    ``reason:<error>`` to the dead letters of each reason.

    ``tiles.matched == written + skipped_nodata + failed + rejected`` and
    ``windows.planned == inferred + nodata + failed + skipped_empty`` hold for a
    complete run (``skipped_empty``: windows over blocks a sparse GeoTIFF does
    not store, never read nor inferred, masked in the mask);
    with a classifier, also ``footprints == chips + chip_errors``,
    ``chips == scored + score_errors`` and ``classified == footprints``.
    """
    c = collections.defaultdict(int, counts)  # names with no element are absent
    counted, checks = _reconcile(c, skipped, bool(config.classifier))
    summary = summary_head(
        "segment",
        config.run_id,
        inputs={
            "raster": config.raster,
            "model": config.model_dir,
            "window_size": config.window_size,
            "halo": config.halo,
            "tta": config.tta,
            "serving_graph": config.serving_graph,
            "runtime": config.runtime + ("/int8" if config.int8 else ""),
            "mask_threshold": config.mask_threshold,
            "min_area": config.min_area,
        },
        counts=counted,
        checks=checks,
        errors_by_reason={k[len(REASON) :]: v for k, v in c.items() if k.startswith(REASON)},
        warnings=[*(model_warnings or []), *rank_warnings(regions_with_stats(regions or []))],
    )
    summary.update(
        {
            "skipped_tiles": sorted(skipped, key=lambda s: s["scene"]),
            "footprints": {"crs": config.footprints_crs, "files": tables["footprints"]},
            "masks": dict(masks),
            "stac": tables.get("stac", []),
        }
    )
    if config.classifier:
        summary["scores"] = _scores_section(config, regions or [], tables)
        summary["classified"] = {"files": tables["classified"], "crs": config.footprints_crs}
    if config.truth_masks or config.truth_footprints:
        summary["truth"] = truth_summary(
            output=config.output,
            mask_paths=masks["masks"],
            footprint_files=tables["footprints"],
            crs=config.footprints_crs,
            threshold=config.mask_threshold,
            truth_masks=match_files(config.truth_masks) if config.truth_masks else (),
            truth_footprints=config.truth_footprints,
        )
    return summary


def model_card_warnings(config: SegmentConfig) -> list[dict[str, str]]:
    """``weak_model`` for each model whose card failed its quality gate (read once, here)."""
    out = model_warnings(config.model_dir, "segmenter")
    if config.classifier:
        out += model_warnings(config.classifier, "classifier")
    return out


def build_pipeline(pipeline: beam.Pipeline, config: SegmentConfig) -> dict[str, PCollection[Any]]:
    """Adds the ``footprints segment`` stages to ``pipeline``; returns its main outputs.

    The stages, as the module docstring lists them: masks (MatchTiles ...
    WriteMasks), footprints (Polygonize, Provenance, WriteGeoTable), with a
    classifier the scores and the classified table, the main table's extra
    copies, the counts, the STAC catalog and the summary, last.

    The outputs: ``footprints`` (rows of the footprints table), ``errors``
    (every dead letter) and ``summary`` (the summary.json document).
    """
    masks = _mask_stages(pipeline, config)
    found = _footprint_stages(config, masks)
    rows = found["rows"]
    tables = {"footprints": found["files"]}
    error_parts = [masks[k] for k in _MASK_ERRORS]
    counted = {k: masks[k] for k in _MASK_COUNTS}
    counted["footprints"] = rows
    side: dict[str, AsSideInput] = {}
    main_table = (FOOTPRINTS_DIR, rows, contracts.FOOTPRINTS_SCHEMA)
    if config.classifier:
        scored = _score_footprints(config, rows, masks["tiles"])
        classified = _classify(config, rows, scored["scored"])
        error_parts += [scored["chip_errors"], scored["score_errors"]]
        counted.update({k: scored[k] for k in ("chips", "chip_errors", "scored", "score_errors")})
        counted["classified"] = classified["rows"]
        tables.update(scores=scored["files"], classified=classified["files"])
        side["regions"] = beam.pvalue.AsList(scored["regions"])
        main_table = (CLASSIFIED_DIR, classified["rows"], contracts.CLASSIFIED_SCHEMA)
    _write_main_table(config, *main_table)
    errors = error_parts | "AllErrors" >> beam.Flatten()
    tables["errors"] = errors | "WriteErrors" >> WriteErrors(join(config.output, ERRORS_DIR))
    counted["errors"] = errors
    counts = _count(pipeline, counted, masks["cores"], errors, masks["empty"], found["too_small"])
    tables["stac"] = _catalog(config, masks, found["dates"], tables)
    summary = counts | "Summary" >> beam.Map(
        lambda c, **side: build_summary(c, config=config, **side),
        model_warnings=model_card_warnings(config),
        masks=beam.pvalue.AsSingleton(masks["written"]),
        skipped=beam.pvalue.AsList(masks["skipped"]),
        tables=beam.pvalue.AsDict(_named(tables, "Summary")),
        **side,
    )
    _ = summary | "WriteSummary" >> WriteJson(config.summary_path)
    return {"footprints": rows, "errors": errors, "summary": summary}


#: The mask stages' dead letters, and the outputs the summary counts by name.
_MASK_ERRORS = ("match_errors", "validate_errors", "read_errors", "predict_errors", "stitch_errors")
_MASK_COUNTS = ("paths", "match_errors", "validate_errors", "tiles", "windows_planned", "masks")


def _mask_stages(p: beam.Pipeline, config: SegmentConfig) -> dict[str, Any]:
    """MatchTiles ... WriteMasks: tiles to COG masks; their outputs by name."""
    size, halo, assets = config.window_size, config.halo, config.assets
    handler = SegmenterModelHandler(
        config.model_dir,
        tta=config.tta,
        serving_graph=config.serving_graph,
        min_batch_size=config.min_batch_size or config.batch_size,
        max_batch_size=config.batch_size,
        accelerator=config.accelerator,
        runtime=config.runtime,
        int8=config.int8,
    )
    matched = p | "MatchTiles" >> MatchTiles(config.raster)
    checked = matched.paths | "ValidateTiles" >> ValidateTiles(assets)
    planned = checked.tiles | "PlanWindows" >> PlanWindows(size, halo, tuple(assets.bands))
    read = planned["windows"] | "ReadWindows" >> ReadWindows(assets)
    predicted = read.windows | "Segment" >> RunSegmenter(handler)
    cores = (
        (predicted["cores"], read[NODATA])
        | "AllCores" >> beam.Flatten()
        | "Progress" >> ShowProgress("windows")
    )
    masks_dir = join(config.output, MASKS_DIR)
    binary = config.mask_threshold if config.binary_mask else None
    # Rows' runs of windows on absent blocks join the cores only here: they
    # are counted by their size, not as elements.
    all_cores = (cores, planned["empty"]) | "WithEmpty" >> beam.Flatten()
    stitched = {"tiles": checked.tiles, "cores": all_cores} | "StitchTiles" >> StitchTiles(
        size,
        halo,
        masks_dir,
        binary,
        {"MODEL": os.path.basename(os.path.normpath(config.model_dir)), "RUN_ID": config.run_id},
    )
    masks = stitched.masks | "WriteMasks" >> WriteMasks(masks_dir, binary)
    return {
        "paths": matched.paths,
        "match_errors": matched.errors,
        "tiles": checked.tiles,
        "validate_errors": checked.errors,
        "windows_planned": planned["windows"],
        "empty": planned["empty"],
        "read_errors": read.errors,
        "predict_errors": predicted["errors"],
        "cores": cores,
        "tile_masks": stitched.masks,
        "stitch_errors": stitched.errors,
        "skipped": stitched.skipped,
        "masks": masks["entries"],
        "written": masks["written"],
    }


def _footprint_stages(config: SegmentConfig, masks: Mapping[str, Any]) -> dict[str, Any]:
    """Polygonize, Provenance, WriteGeoTable: masks to the footprints table."""
    dates = masks["tiles"] | "ImageryDates" >> beam.Map(
        lambda t, fixed: (t.scene, fixed or tiff_date(t.path)), config.imagery_date
    )
    polygons = masks["tile_masks"] | "Polygonize" >> Polygonize(
        config.mask_threshold,
        config.simplify,
        config.min_area,
        config.footprints_crs,
        config.regularize,
    )
    # In batches: the ids, centroids and WKB are one vectorized call per batch.
    rows = (
        polygons["footprints"]
        | "ProvenanceBatches"
        >> beam.BatchElements(min_batch_size=PROVENANCE_BATCH, max_batch_size=PROVENANCE_BATCH)
        | "Provenance"
        >> beam.FlatMap(
            footprint_rows,
            config.footprints_crs,
            config.model_id,
            config.run_id,
            beam.pvalue.AsDict(dates),
        )
    )
    files = rows | "WriteFootprints" >> WriteGeoTable(
        join(config.output, FOOTPRINTS_DIR),
        # MultiPolygon: a building that simplification or reprojection split
        # keeps all its parts (see pipeline.polygonize.polygonal); each file
        # declares the types it holds.
        geoparquet_schema(
            contracts.FOOTPRINTS_SCHEMA, config.footprints_crs, ["Polygon", "MultiPolygon"]
        ),
    )
    return {"rows": rows, "files": files, "too_small": polygons[TOO_SMALL], "dates": dates}


def _classify(
    config: SegmentConfig, rows: PCollection[dict[str, Any]], scored: PCollection[dict[str, Any]]
) -> dict[str, PCollection[Any]]:
    """Classify: one row per footprint with its score and label, into ``classified/``."""
    classified = (
        {
            "footprint": rows | "FootprintById" >> beam.Map(lambda r: (r["footprint_id"], r)),
            "score": scored | "ScoreById" >> beam.Map(lambda r: (r["footprint_id"], r)),
        }
        | "JoinScores" >> beam.CoGroupByKey()
        | "Classify" >> beam.Map(classified_row, config.classifier_model_id)
    )
    files = classified | "WriteClassified" >> WriteGeoTable(
        join(config.output, CLASSIFIED_DIR),
        geoparquet_schema(
            contracts.CLASSIFIED_SCHEMA, config.footprints_crs, ["Polygon", "MultiPolygon"]
        ),
    )
    return {"rows": classified, "files": files}


def _count(
    p: beam.Pipeline,
    counted: Mapping[str, PCollection[Any]],
    cores: PCollection[CorePrediction],
    errors: PCollection[ErrorRecord],
    empty: PCollection[EmptyCores],
    too_small: PCollection[int],
) -> PCollection[dict[str, int]]:
    """Every count the summary reconciles, in one combine.

    Sizes by name, cores by status, errors by reason, the windows of the
    rows' runs on absent blocks (counted by their size, not as elements) and
    the footprints dropped under the minimum area (numbers to sum).
    """
    counts: PCollection[dict[str, int]] = count_all(
        p,
        counted,
        keyed={
            "cores": (cores, lambda core: f"cores_{core.status}"),
            "reasons": (errors, lambda e: f"{REASON}{e.error}"),
        },
        weighted={
            "empty": (
                empty,
                lambda run: {"windows_planned": run.count, "cores_empty": run.count},
            ),
            "too_small": (too_small, lambda n: {"footprints_too_small": n}),
        },
    )
    return counts


def _catalog(
    config: SegmentConfig,
    masks: Mapping[str, Any],
    dates: PCollection[tuple[str, datetime.date | None]],
    tables: Mapping[str, PCollection[list[str]]],
) -> PCollection[list[str]]:
    """Catalog: the STAC Collection with an Item per mask, once every table is written."""
    from pipeline.writers.stac import write_catalog

    catalog: PCollection[list[str]] = masks["written"] | "Catalog" >> beam.Map(
        write_catalog,
        beam.pvalue.AsList(masks["masks"]),
        config.output,
        config.run_id,
        config.model_id,
        beam.pvalue.AsDict(dates),
        beam.pvalue.AsDict(_named(tables, "Catalog")),
    )
    return catalog


def _named(
    tables: Mapping[str, PCollection[list[str]]], label: str
) -> PCollection[tuple[str, list[str]]]:
    """``(name, files)`` pairs of the tables' file lists, as one PCollection."""
    named: PCollection[tuple[str, list[str]]] = [
        files | f"{label}.{name}Files" >> beam.Map(lambda f, n: (n, f), name)
        for name, files in tables.items()
    ] | f"{label}.Tables" >> beam.Flatten()
    return named


def _write_main_table(
    config: SegmentConfig, name: str, rows: PCollection[dict[str, Any]], schema: pa.Schema
) -> None:
    """``--csv`` and ``--bigquery-table``: the run's main table, as ``footprints score`` writes."""
    from pipeline.writers.scores import WriteCsv, WriteScoresBigQuery, bigquery_load_schema

    if config.csv:
        _ = rows | "Csv" >> WriteCsv(join(config.output, f"{name}.csv"), list(schema.names))
    if config.bigquery_table:
        _ = rows | "BigQuery" >> WriteScoresBigQuery(
            config.bigquery_table, config.footprints_crs, bigquery_load_schema(schema)
        )


def _score_footprints(
    config: SegmentConfig, rows: PCollection[dict[str, Any]], tiles: PCollection[TileInfo]
) -> dict[str, PCollection[Any]]:
    """Chips the footprints from their tiles and runs the scoring path on them."""
    from pipeline.writers.scores import scores_schema, write_table

    # SegmentConfig.create sets the CRS always, and this path runs only with a classifier.
    assert config.footprints_crs is not None and config.classifier is not None
    assert config.residential_fraction is not None and config.chip_spec is not None
    chips = {"rows": rows, "tiles": tiles} | "ChipFootprints" >> ChipFootprints(
        config.footprints_crs, config.chip_spec
    )
    result = chips["records"] | "ScoreChips" >> ScoreChips(
        config.classifier,
        RegionFractions(config.residential_fraction),
        batch_size=config.classifier_batch_size,
        model_id=config.classifier_model_id,
        run_id=config.run_id,
        crs=config.footprints_crs,
        accelerator=config.accelerator,
        model_copies=accelerator_count(config.accelerator) if config.accelerator else None,
        spill_dir=join(config.output, SPILL_DIR),
        serving_graph=config.serving_graph,
        runtime="tensorflow" if config.runtime == "tensorflow" else "auto",
    )
    files = write_table(
        result.scores,
        "WriteScores",
        join(config.output, SCORES_DIR),
        scores_schema(config.footprints_crs),
    )
    return {
        "chips": chips["records"],
        "chip_errors": chips["errors"],
        "scored": result.scores,
        "score_errors": result.errors,
        "regions": result.regions,
        "files": files,
    }


def run_config(
    config: SegmentConfig, options: PipelineOptions | Sequence[str] = ()
) -> dict[str, Any]:
    """Runs the job to completion; returns the summary it wrote.

    Args:
        config: The validated settings.
        options: Beam pipeline options, or the flags to make them from.
    """
    summary = run_job(build_pipeline, config, options)
    # Known only from the run's metrics, which the summary holds once the run ended.
    return add_warnings(config.summary_path, serving_graph_warnings(summary, config.serving_graph))
