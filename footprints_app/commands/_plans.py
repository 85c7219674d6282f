"""``--dry-run`` plans and end-of-run lines for the pipeline subcommands.

A plan validates the inputs the way the run would (globs, file headers,
model contracts) and prints what would be read and how much work it is,
without building a pipeline: the analyst's check before a long or costly run.
The end-of-run lines say what came out in a few readable lines; the full
numbers stay in ``summary.json``.
"""

from __future__ import annotations

import os
from collections import Counter

from footprints.files import match_files


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def prepare_plan(config) -> str:
    """Files, tiles, features and the chips a ``prepare`` run would write."""
    from footprints import contracts
    from footprints.tiles import TileRejected, read_header
    from pipeline.sources import vectors

    lines = ["plan: footprints prepare (dry run, nothing written)"]
    info = config.info  # read by PrepareConfig.create
    if config.images:
        from pipeline.sources.images import class_of, is_image_path

        files = [os.path.join(d, f) for d, _, names in os.walk(config.images) for f in names]
        images = [f for f in files if is_image_path(f)]
        classes = Counter(class_of(f, config.images)[1] or "(no class)" for f in images)
        lines.append(
            f"  images: {_plural(len(images), 'file')} in {config.images} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(classes.items()))})"
        )
        work = len(images)
    else:
        assert info is not None  # check_inputs reads the footprints when there are no --images
        good, bad = [], []
        for path in match_files(config.rasters):
            try:
                good.append(read_header(path))
            except TileRejected as exc:
                bad.append(exc.to_error(path, "read_raster"))
        tiles = good + bad
        crss = Counter(t.crs for t in good)
        lines.append(
            f"  rasters: {_plural(len(tiles), 'file')} match {config.rasters!r}; "
            f"{len(good)} usable ({', '.join(f'{c}: {n}' for c, n in crss.items())})"
            f", {len(bad)} rejected"
        )
        for record in bad[:10]:
            lines.append(f"    rejected {record.source}: {record.error}: {record.message}")
        lines.append(
            f"  footprints: {info.features:,} features in {info.path} ({info.crs}), "
            f"read in {len(vectors.plan_ranges(info))} parallel ranges"
        )
        work = info.features
    spec = config.spec
    lines.append(
        f"  chips: up to {work:,}, {spec.size or 'native'} px, margin {spec.margin}, "
        f"min extent {spec.min_extent} m, {spec.image_format}"
    )
    lines.append(
        f"  output: {config.num_shards} x "
        f"{contracts.shard_name(config.output, 0, config.num_shards, config.compression)}"
        f" ...; {config.errors_dir}/; {config.summary_path}"
    )
    return "\n".join(lines)


def score_plan(config) -> str:
    """Shards, records (estimated from the first shard), model and targets."""
    shards = match_files(config.chips)
    sizes = [os.path.getsize(p) for p in shards if os.path.exists(p)]
    first = _count_records(shards[0]) if shards else 0
    estimate = int(first * sum(sizes) / sizes[0]) if sizes and sizes[0] else first
    lines = [
        "plan: footprints score (dry run, nothing written)",
        f"  chips: {_plural(len(shards), 'shard')} match {config.chips!r}, "
        f"{sum(sizes) / 1e6:,.1f} MB, about {estimate:,} records "
        f"({first:,} in the first shard)",
        f"  model: {config.model_dir} (meets the classifier contract)",
        f"  targets: {float(config.fractions.default):.2%} by default"
        + "".join(f", {r} {float(f):.2%}" for r, f in config.fractions.per_region),
        f"  batches: {config.min_batch_size or config.batch_size} to {config.batch_size} "
        "chips; about "
        f"{max(1, estimate // max(config.batch_size, 1)):,} model calls",
        f"  output: {config.output}/scores/, errors/, summary.json",
    ]
    return "\n".join(lines)


def _count_records(path: str) -> int:
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path, compression_type=compression))
    except tf.errors.OpError:
        return 0


def segment_plan(config) -> str:
    """Tiles (validated against the model), windows and pixels of a ``segment`` run."""
    from footprints.errors import InputError
    from pipeline.sources.rasters import validate_tile
    from pipeline.windows import count_windows

    paths = match_files(config.raster)
    windows = pixels = 0
    rejected = []
    valid = 0
    for path in paths:
        try:
            tile = validate_tile(path, config.assets)
        except InputError as exc:
            rejected.append((path, exc))
            continue
        valid += 1
        windows += count_windows(tile.height, tile.width, config.window_size, config.halo)
        pixels += tile.height * tile.width
    lines = [
        "plan: footprints segment (dry run, nothing written)",
        f"  tiles: {_plural(len(paths), 'file')} match {config.raster!r}; {valid} valid, "
        f"{len(rejected)} rejected",
    ]
    for path, problem in rejected[:10]:
        lines.append(f"    rejected {path}: {problem}")
    lines += [
        f"  model: {config.model_dir}: window {config.window_size} px, halo "
        f"{config.halo} px, bands {list(config.assets.bands)}",
        f"  work: {windows:,} windows over {pixels / 1e6:,.1f} Mpx"
        + (f", test-time augmentation {config.tta}" if config.tta != "none" else ""),
        f"  output: {config.output}/masks/ (COG + mosaic.vrt), footprints/, errors/, "
        "summary.json" + (", scores/" if config.classifier else ""),
    ]
    return "\n".join(lines)


def score_lines(summary: dict) -> str:
    """Per-region result and totals of a score run, for a person."""
    counts = summary["counts"]
    lines = [
        f"score: {counts['input_records']:,} records -> {counts['scored']:,} scored + "
        f"{counts['errors']:,} rejected (reconciles: "
        f"{'yes' if summary['reconciles'] else 'NO'}); {counts['residential']:,} "
        "residential"
    ]
    for name, r in sorted(summary["regions"].items()):
        threshold = "-" if r.get("threshold") is None else f"{r['threshold']:.4f}"
        lines.append(
            f"  {name}: {r['k']:,} of {r['n']:,} residential (target "
            f"{r['target_fraction']:.2%}, achieved {r['achieved_fraction'] or 0:.2%}, "
            f"threshold {threshold}, exact {'yes' if r['exact'] else 'NO'})"
        )
    if summary.get("errors_by_reason"):
        lines.append(
            "  rejected by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary["errors_by_reason"].items())
        )
    if summary.get("duplicates", {}).get("count"):
        lines.append(f"  duplicate footprint ids: {summary['duplicates']['count']}")
    lines += _share_lines(summary["regions"])
    return "\n".join(lines)


def _share_lines(regions: dict) -> list[str]:
    """``region A: target 45%, model expects 41% +/- 3%`` per region with score stats."""
    from pipeline.thresholds.expected import share_line

    return [
        "  " + share_line(name, r["target_fraction"], r.get("scores"))
        for name, r in sorted(regions.items())
        if r.get("scores")
    ]


def segment_lines(summary: dict) -> str:
    """Tiles, windows, footprints, IoU and scores of a segment run, for a person."""
    counts = summary["counts"]
    t, w = counts["tiles"], counts["windows"]
    ok = "yes" if summary["reconciles"] else "NO"
    lines = [
        f"segment: {t['matched']} tiles -> {t['written']} masks, {t['skipped_nodata']} "
        f"all-nodata, {t['failed']} failed, {t['rejected']} rejected; {w['planned']:,} "
        f"windows ({w['inferred']:,} inferred, {w['nodata']:,} nodata, {w['failed']} "
        f"failed); reconciles: {ok}",
        f"  footprints: {counts['footprints']:,} buildings",
    ]
    if summary.get("truth"):
        truth, objects = summary["truth"], summary["truth"].get("objects") or {}

        def num(x):
            return "-" if x is None else f"{x:.3f}"

        lines.append(
            f"  against the truth: pixel IoU {num(truth.get('iou'))}; buildings at "
            f"IoU >= {objects.get('iou_threshold', 0.5)}: precision "
            f"{num(objects.get('precision'))}, recall {num(objects.get('recall'))}, "
            f"F1 {num(objects.get('f1'))} ({objects.get('true_positives', 0)} found, "
            f"{objects.get('false_positives', 0)} false, "
            f"{objects.get('false_negatives', 0)} missed)"
        )
    if summary.get("scores"):
        s = summary["scores"]
        lines.append(
            f"  classified: {counts['scored']:,} footprints; "
            + "; ".join(
                f"{name}: {r['k']} of {r['n']} residential"
                for name, r in sorted(s["regions"].items())
            )
        )
        lines += _share_lines(s["regions"])
    if counts["errors"]:
        lines.append(
            "  rejected by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary["errors_by_reason"].items())
        )
    return "\n".join(lines)
