"""``footprints demo``: the whole product on the generated sample area.

The Quick start's first command runs this. It builds two seeded sample
areas: a larger **training area** (another seed, thousands of footprints)
that the classifier learns from, and the **demo area** that everything is
then run on. The classifier never sees a chip of the demo area, so the
accuracy and the calibration error the demo reports are out of sample.
Each stage runs exactly as a user would run the subcommands, into one
output folder, and the demo ends with a short account of what each stage
produced. Stages run in order; each writes under ``--output``, and a rerun
replaces what the previous run wrote (nothing is cached between runs). The
last stage exports the classified buildings as a styled GeoPackage
(``segment/export/footprints.gpkg``), the route into desktop GIS, which the
report links from its first screen.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from footprints import contracts
from footprints.errors import EXIT_CHECK, EXIT_OK, ConfigError

EPILOG = """\
example:
  footprints demo --output demo-output
  footprints demo --output demo-output --tiles 2x2 --seed 7 --runner DirectRunner

outputs (under --output):
  train_area/   the classifier's training areas (other seeds, about 1,700 footprints)
  area/         the demo area: tiles/*.tif, masks/*.tif (truth), footprints.gpkg
  chips/        chip shards: train-* (training areas), area-* (demo area), with errors
                and summaries
  models/       classifier/ and segmenter/: SavedModels, model cards, curves
  score/        scores/ (GeoParquet), errors/, summary.json for the true footprints
  segment/      masks/ (COG + mosaic.vrt), footprints/, scores/, classified/, stac/, errors/,
                summary.json; export/footprints.gpkg (styled GeoPackage for QGIS/ArcGIS)
  demo_summary.json   what every stage produced, in one file
  report.html   the run report: open it in a browser
"""


def register(subparsers) -> None:
    """Adds the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole product on a generated sample area",
        description="Generate the seeded sample area and run every stage of footprints "
        "on it with DirectRunner (or the runner you pass).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", required=True, help="folder for everything the demo writes")
    p.add_argument("--seed", type=int, default=0, help="sample area seed (default: 0)")
    p.add_argument(
        "--tiles",
        default="4x4",
        help="sample area size in 512-px tiles, COLSxROWS (default: %(default)s)",
    )
    p.add_argument(
        "--density",
        type=float,
        default=4.0,
        help="building density of the sample area (default: %(default)s)",
    )
    p.add_argument(
        "--residential-fraction",
        type=float,
        default=None,
        metavar="P",
        help="the residential share to enforce (default: the area's true share)",
    )
    p.add_argument(
        "--segmenter-steps",
        type=int,
        default=300,
        help="gradient steps of the segmenter's training (default: %(default)s)",
    )
    p.add_argument(
        "--classifier-epochs",
        type=int,
        default=6,
        help="training epochs of the classifier on the training area (default: %(default)s)",
    )
    p.add_argument(
        "--train-areas",
        type=int,
        default=TRAIN_AREAS,
        help="training areas of 4x4 tiles (about 290 footprints each), seeds "
        "--seed + 10000, + 10001, ... (default: %(default)s)",
    )
    p.set_defaults(handler=run, beam_passthrough=True)


def _tiles(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--tiles {text!r} must look like 3x3 (columns x rows)") from None
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise ConfigError(f"--tiles {text!r}: use 1 to 16 tiles each way")
    return cols, rows


#: The training areas' seeds start at the demo seed plus this, so they never coincide.
TRAIN_SEED_OFFSET = 10_000
#: The training areas' building density (the generator's largest).
TRAIN_DENSITY = 5.0
#: Training areas, and tiles across and down in each: several small areas, because the
#: generator's time grows faster than its area (4x4 tiles: 15 s, 7x7: 120 s, measured).
TRAIN_AREAS = 6
TRAIN_TILES = 4
#: Below this held-out accuracy at the target fraction the demo warns.
MIN_HELD_OUT_ACCURACY = 0.90


def training_chips(
    area_root: str, chips_root: str, seed: int, areas: int, beam_args: list[str]
) -> dict:
    """Generates the classifier's training areas and cuts their chips.

    Area ``i`` has seed ``seed + TRAIN_SEED_OFFSET + i``, :data:`TRAIN_TILES`
    tiles each way and density :data:`TRAIN_DENSITY`; its chips go to
    ``chips_root/train-<i>-*-of-*.tfrecord``.

    Returns:
        ``glob`` (all the training shards), ``seeds``, ``tiles``,
        ``footprints``, ``chips``, ``errors`` and ``reconciles`` (every
        area's prepare counts reconcile).
    """
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area
    from pipeline import prepare

    facts: dict[str, Any] = {
        "glob": os.path.join(chips_root, "train-*-*-of-*.tfrecord"),
        "seeds": [],
        "tiles": 0,
        "footprints": 0,
        "chips": 0,
        "errors": 0,
        "reconciles": True,
    }
    for i in range(areas):
        area_seed = seed + TRAIN_SEED_OFFSET + i
        area = generate_sample_area(
            os.path.join(area_root, f"area-{i}"),
            SampleAreaConfig(
                seed=area_seed, tiles_x=TRAIN_TILES, tiles_y=TRAIN_TILES, density=TRAIN_DENSITY
            ),
        )
        summary = prepare.run_config(
            prepare.PrepareConfig.create(
                output=os.path.join(chips_root, f"train-{i}"),
                rasters=os.path.join(area.root, "tiles", "*.tif"),
                footprints=area.footprints,
                id_field="id",
                class_field="building",
                region_field="region",
                num_shards=1,
            ),
            beam_args,
        )
        facts["seeds"].append(area_seed)
        facts["tiles"] += len(area.tiles)
        facts["footprints"] += area.counts["total"]
        got = job_facts(summary, "chips", "errors")
        facts["chips"] += got["chips"]
        facts["errors"] += got["errors"]
        facts["reconciles"] = facts["reconciles"] and got["reconciles"]
    return facts


def job_facts(summary: dict, *counts: str) -> dict:
    """``counts`` of a job's summary.json and whether it ``reconciles``.

    Every pipeline job writes one summary layout (``pipeline.jobs``), so one
    reader serves prepare, score and segment.
    """
    got = summary.get("counts") or {}
    return {
        **{name: got.get(name) for name in counts},
        "reconciles": bool(summary.get("reconciles")),
    }


def _stage(report: dict, name: str, started: float, **facts) -> None:
    report["stages"][name] = {**facts, "seconds": round(time.time() - started, 1)}


def _cli(argv: list[str]) -> None:
    """Runs one subcommand exactly as a user would type it; stops the demo if it fails."""
    from footprints_app import cli

    print("\n$ footprints " + " ".join(argv), flush=True)
    code = cli.main(argv)
    if code != 0:
        raise StageFailed(f"`footprints {argv[0]}` exited with {code}; see the lines above")


class StageFailed(RuntimeError):
    """A demo stage did not finish cleanly."""


def run(args, beam_args) -> int:
    """Runs every stage; returns 0 when all went well, else 3.

    All went well: each stage's counts reconcile and nothing warned (a weak or
    inaccurate classifier, scores that cannot rank). The stages, in order:
    :func:`_training_area`, :func:`_sample_area`, :func:`_prepare`,
    :func:`_train_classifier`, :func:`_train_segmenter`, :func:`_score`,
    :func:`_segment`, :func:`_export`; :func:`_finish` writes
    ``demo_summary.json`` and the report.
    """
    cols, rows = _check_args(args)
    beam_args = list(beam_args) or ["--runner", "DirectRunner"]
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    report: dict = {"output": out, "seed": args.seed, "stages": {}, "warnings": []}

    # 1. The sample areas: imagery, true footprints, true masks; the
    # training areas' chips are cut here too, once per run.
    train_glob = _training_area(report, args, out, beam_args)
    area, fraction = _sample_area(report, args, out, cols, rows)
    # 2. Chips around the demo area's true footprints.
    chip_glob = _prepare(report, area, out, beam_args)
    # 3. The two models: the classifier on the training area only; the
    # segmenter on the demo area's tiles.
    classifier = _train_classifier(report, args, out, train_glob)
    segmenter = _train_segmenter(report, args, out, area)
    # 4. Score the true footprints' chips at the analyst's residential share.
    held_out = _score(report, out, chip_glob, classifier, fraction, beam_args)
    # 5. From raw tiles: masks, footprints, and their classification in one job.
    segment_dir = _segment(report, out, area, segmenter, classifier, fraction, beam_args)
    # 6. The route into desktop GIS: the classified buildings as a styled GeoPackage,
    # which the report links.
    _export(report, segment_dir, out)
    return _finish(report, out, held_out)


def _check_args(args) -> tuple[int, int]:
    """Raises ConfigError for flags the demo cannot run with; returns ``--tiles`` (cols, rows)."""
    from pipeline.thresholds.fractions import parse_fraction

    cols, rows = _tiles(args.tiles)
    if args.residential_fraction is not None:  # the rule `score` and `segment` check
        parse_fraction(str(args.residential_fraction), "--residential-fraction")
    if args.train_areas < 1:
        raise ConfigError(f"--train-areas {args.train_areas!r} must be at least 1")
    if args.segmenter_steps < 1 or args.classifier_epochs < 1:
        raise ConfigError(
            f"--segmenter-steps {args.segmenter_steps!r} and --classifier-epochs "
            f"{args.classifier_epochs!r} must be at least 1"
        )
    return cols, rows


def _globs(area) -> tuple[str, str]:
    """The sample area's tiles and true masks, as globs."""
    return os.path.join(area.root, "tiles", "*.tif"), os.path.join(area.root, "masks", "*.tif")


def _training_area(report: dict, args, out: str, beam_args: list[str]) -> str:
    """Stage ``training_area``: the classifier's areas and their chips; returns the chips' glob."""
    started = time.time()
    train = training_chips(
        os.path.join(out, "train_area"),
        os.path.join(out, "chips"),
        args.seed,
        args.train_areas,
        beam_args,
    )
    _stage(
        report,
        "training_area",
        started,
        seeds=train["seeds"],
        tiles=train["tiles"],
        footprints=train["footprints"],
        chips=train["chips"],
        errors=train["errors"],
        reconciles=train["reconciles"],
    )
    print(
        f"demo: {args.train_areas} training areas (seeds {train['seeds'][0]}.."
        f"{train['seeds'][-1]}), {train['tiles']} tiles, {train['footprints']} footprints "
        f"-> {train['chips']} chips in {out}/train_area"
    )
    return train["glob"]


def _sample_area(report: dict, args, out: str, cols: int, rows: int) -> tuple[Any, float]:
    """Stage ``sample_area``: the demo area; returns it and the residential fraction to use."""
    from footprints_app.sample_area import SampleAreaConfig, generate_sample_area, is_residential

    started = time.time()
    area = generate_sample_area(
        os.path.join(out, "area"),
        SampleAreaConfig(seed=args.seed, tiles_x=cols, tiles_y=rows, density=args.density),
    )
    residential = sum(n for k, n in area.counts.items() if k != "total" and is_residential(k))
    fraction = args.residential_fraction
    if fraction is None:  # the analyst's expectation: here, the area's true share
        fraction = round(residential / max(area.counts["total"], 1), 2)
    _stage(
        report,
        "sample_area",
        started,
        tiles=len(area.tiles),
        footprints=area.counts["total"],
        true_residential=residential,
    )
    print(
        f"demo: sample area with {len(area.tiles)} tiles and {area.counts['total']} "
        f"footprints ({residential} residential) in {out}/area"
    )
    return area, fraction


def _prepare(report: dict, area, out: str, beam_args: list[str]) -> str:
    """Stage ``prepare``: chips around the area's true footprints; returns their glob."""
    from footprints_app.commands.prepare import format_summary
    from pipeline import prepare

    started = time.time()
    chips_prefix = os.path.join(out, "chips", "area")
    chips = prepare.run_config(
        prepare.PrepareConfig.create(
            output=chips_prefix,
            rasters=_globs(area)[0],
            footprints=area.footprints,
            id_field="id",
            class_field="building",
            region_field="region",
            num_shards=4,
        ),
        beam_args,
    )
    print(format_summary(chips))
    _stage(
        report,
        "prepare",
        started,
        **job_facts(chips, "inputs", "chips", "errors"),
    )
    return f"{chips_prefix}-*-of-*.tfrecord"


def _train_classifier(report: dict, args, out: str, train_glob: str) -> str:
    """Stage ``train_classifier``, on the training areas only; returns the model directory."""
    started = time.time()
    classifier = os.path.join(out, "models", "classifier")
    _cli(
        [
            "train",
            "classifier",
            "--train",
            train_glob,
            "--output",
            classifier,
            "--epochs",
            str(args.classifier_epochs),
            "--overwrite",
            "--quiet",
            "--seed",
            str(args.seed),
            "--allow-weak-model",
        ]
    )
    model = os.path.join(classifier, "model")
    card = contracts.read_model_card(model)
    quality = card.get("quality") or {}
    _stage(
        report,
        "train_classifier",
        started,
        model=model,
        trained_on="train_area",
        val_ece=quality.get("ece"),
        val_ece_uncalibrated=quality.get("ece_uncalibrated"),
        weak=quality.get("weak"),
        **{
            f"val_{k}": v
            for k, v in (card.get("validation_metrics") or {}).items()
            if isinstance(v, (int, float)) and k != "ece"
        },
    )
    return model


def _train_segmenter(report: dict, args, out: str, area) -> str:
    """Stage ``train_segmenter``, on the demo area's tiles; returns the model directory."""
    started = time.time()
    segmenter = os.path.join(out, "models", "segmenter")
    # The segmenter is sized in steps, not epochs: the default 300 steps of
    # sampled patches cost what the old 12 epochs over fixed patches did. No
    # augmentation: on this large, easy area and so few steps it slowed fitting
    # (measured on the demo-style area at ~300 steps: validation IoU 0.49 with,
    # 0.77 without); the real-like benchmark trains with it.
    _cli(
        [
            "train",
            "segmenter",
            "--rasters",
            _globs(area)[0],
            "--footprints",
            area.footprints,
            "--output",
            segmenter,
            "--steps",
            str(args.segmenter_steps),
            "--eval-every",
            "50",
            # The small-data recipe's lighter U-Net and smaller validation
            # blocks suit a few dozen real buildings (benchmarks/real_tile.py);
            # the demo's large, easy area keeps the model and split it was
            # measured with.
            "--filters",
            "16",
            "--val-block",
            "256",
            "--val-fraction",
            "0.2",
            "--no-augment",
            "--allow-weak-model",
            "--overwrite",
            "--quiet",
        ]
    )
    model = os.path.join(segmenter, "model")
    card = contracts.read_model_card(model)
    _stage(
        report,
        "train_segmenter",
        started,
        model=model,
        **{
            f"val_{k}": v
            for k, v in (card.get("validation_metrics") or {}).items()
            if isinstance(v, (int, float))
        },
    )
    return model


def _score(
    report: dict, out: str, chip_glob: str, classifier: str, fraction: float, beam_args: list[str]
) -> dict:
    """Stage ``score``: the area's chips at ``fraction``; returns the held-out quality."""
    started = time.time()
    score_dir = os.path.join(out, "score")
    _cli(
        [
            "score",
            "--chips",
            chip_glob,
            "--model",
            classifier,
            "--residential-fraction",
            str(fraction),
            "--output",
            score_dir,
            *beam_args,
        ]
    )
    score_summary = _read(os.path.join(score_dir, "summary.json"))
    held_out = held_out_quality(os.path.join(score_dir, "scores"))
    report["held_out"] = held_out
    report["warnings"] += score_summary.get("warnings", [])
    _stage(
        report,
        "score",
        started,
        target_fraction=fraction,
        **job_facts(score_summary, "scored", "errors", "residential"),
        exact=score_summary.get("all_regions_exact"),
        held_out_accuracy=held_out["accuracy_at_target"],
        held_out_ece=held_out["ece"],
    )
    return held_out


def _segment(
    report: dict,
    out: str,
    area,
    segmenter: str,
    classifier: str,
    fraction: float,
    beam_args: list[str],
) -> str:
    """Stage ``segment``: masks, footprints and their classes from the tiles; returns its dir."""
    started = time.time()
    segment_dir = os.path.join(out, "segment")
    tiles_glob, masks_glob = _globs(area)
    _cli(
        [
            "segment",
            "--raster",
            tiles_glob,
            "--model",
            segmenter,
            "--output",
            segment_dir,
            "--truth-masks",
            masks_glob,
            "--classifier",
            classifier,
            "--residential-fraction",
            str(fraction),
            *beam_args,
        ]
    )
    seg = _read(os.path.join(segment_dir, "summary.json"))
    report["warnings"] += [w for w in seg.get("warnings", []) if w not in report["warnings"]]
    _stage(
        report,
        "segment",
        started,
        building_iou=(seg.get("truth") or {}).get("iou"),
        **job_facts(seg, "footprints"),
    )
    return segment_dir


def _export(report: dict, segment_dir: str, out: str) -> None:
    """Stage ``export``: the classified buildings as a styled GeoPackage."""
    started = time.time()
    _stage(report, "export", started, **export_geopackage(segment_dir, out))


def _finish(report: dict, out: str, held_out: dict) -> int:
    """Warns on a weak classifier, writes ``demo_summary.json`` and the report; the exit code."""
    from footprints_app.report import build_report

    ok = all(stage.get("reconciles", True) for stage in report["stages"].values())
    accuracy = held_out["accuracy_at_target"]
    if accuracy is not None and accuracy < MIN_HELD_OUT_ACCURACY:
        report["warnings"].append(
            {
                "code": "weak_model",
                "message": (
                    f"the classifier labels only {accuracy:.1%} of the demo area's footprints "
                    f"right at the target fraction (held out; the demo expects at least "
                    f"{MIN_HELD_OUT_ACCURACY:.0%})"
                ),
            }
        )
    path = os.path.join(out, "demo_summary.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)  # the stages in the order they ran
    os.replace(path + ".tmp", path)
    report_path = build_report(out, "footprints demo: sample area")
    print(
        f"\ndemo: classifier on the held-out demo area ({held_out['footprints']} "
        f"footprints it never saw): accuracy at the target fraction "
        f"{_pct(accuracy)}, ECE {_num(held_out['ece'])} ({held_out['ece_bins']} bins), "
        f"AUC {_num(held_out['auc'])}"
    )
    for warning in report["warnings"]:
        print(f"WARNING [{warning['code']}]: {warning['message']}")
    print(f"demo: done. Summary: {path}\ndemo: open the report: {report_path}")
    # Done either way; 3 says a count or a quality check did not hold.
    return EXIT_OK if ok and not report["warnings"] else EXIT_CHECK


def export_geopackage(segment_dir: str, out: str) -> dict:
    """Runs ``footprints export --format gpkg SEGMENT_DIR`` as a user would.

    Returns:
        The stage's facts: ``path`` (relative to ``out``), ``features`` (as
        GDAL reads them back from the file) and ``style`` (the QML beside it).
    """
    import pyogrio

    from pipeline.writers.export import LAYER

    _cli(["export", "--format", "gpkg", segment_dir])
    path = os.path.join(segment_dir, "export", f"{LAYER}.gpkg")
    return {
        "path": os.path.relpath(path, out),
        "features": int(pyogrio.read_info(path, layer=LAYER)["features"]),
        "style": os.path.relpath(os.path.splitext(path)[0] + ".qml", out),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def held_out_quality(scores_dir: str) -> dict:
    """Accuracy at the target fraction, ECE and AUC of a score run's labelled rows.

    Args:
        scores_dir: The ``scores/`` Parquet folder of a ``footprints score`` run
            whose chips carry true labels.

    Returns:
        ``footprints`` (labelled rows), ``accuracy_at_target`` (share of rows
        whose ``is_residential`` equals the true label), ``ece`` (15 bins, of
        the calibrated ``score``), ``ece_bins`` and ``auc``; None values when
        no row has a label.
    """
    import numpy as np
    import pyarrow.parquet as pq

    from model_training import evaluation

    table = pq.read_table(scores_dir, columns=["score", "label", "is_residential"])
    label = np.asarray(table["label"].to_numpy(zero_copy_only=False), dtype=np.float64)
    keep = ~np.isnan(label)
    label = label[keep].astype(np.int64)
    score = np.asarray(table["score"].to_numpy(zero_copy_only=False), dtype=np.float64)[keep]
    chosen = np.asarray(table["is_residential"].to_numpy(zero_copy_only=False), bool)[keep]
    if not label.size:
        return {
            "footprints": 0,
            "accuracy_at_target": None,
            "ece": None,
            "ece_bins": evaluation.ECE_BINS,
            "auc": None,
        }
    return {
        "footprints": int(label.size),
        "accuracy_at_target": float(np.mean(chosen == (label == 1))),
        "ece": evaluation.expected_calibration_error(label, score),
        "ece_bins": evaluation.ECE_BINS,
        "auc": evaluation.binary_auc(label, score),
    }


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
