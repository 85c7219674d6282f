"""The report's sections, each a function from what a run wrote to HTML.

In page order: :func:`headline` (where, how big, when, how many buildings,
how many residential per region, the warnings), :func:`headline_map`,
then the tables (:func:`region_table`, :func:`segment_tables` with the
per-tile measures), the figures that explain them (:func:`score_figures`,
:func:`area_figures`), :func:`errors_section`, :func:`outputs_section`,
and last the details for the ML engineer (:func:`demo_stages`,
:func:`model_section`). Every value from the data is escaped by
:mod:`footprints_app.report.html`.
"""

from __future__ import annotations

import os

import numpy as np

from footprints import contracts
from footprints_app.report import discovery, facts, maps, plots
from footprints_app.report.html import (
    SHOWN_MODELS,
    Raw,
    esc,
    img,
    link,
    num,
    ok,
    pct,
    png_file,
    relative,
    table,
)

# --------------------------------------------------------------------------
# The first screen
# --------------------------------------------------------------------------


def headline(found: facts.Headline, warnings: list[dict], run_dir: str | None) -> str:
    """The plain headline: what was found, where, how big, when; warnings; where to open it."""
    rows = [("Area", esc(found.area))]
    if found.extent:
        rows.append(("Extent (lon/lat, WGS 84)", esc(facts.extent_text(found.extent))))
    rows.append(
        (
            "Size",
            esc(f"{found.area_km2:,.2f} km²") if found.area_km2 is not None else "-",
        )
    )
    rows.append(("Imagery date", esc(found.imagery_date_text())))
    rows.append(
        (
            esc(found.buildings_what),
            f"<dd class='big'>{found.buildings:,}</dd>" if found.buildings is not None else "-",
        )
    )
    if found.residential is not None:
        k, n = found.residential
        rows.append(
            (
                "Residential",
                f"<dd class='big'>{k:,} <span>of {n:,} ({pct(k / n if n else None, 1)})</span>"
                "</dd>",
            )
        )
    if found.regions:
        items = "".join(
            f"<li>{esc(r.name)}: {r.residential:,} of {r.footprints:,} "
            f"({esc(pct(r.share, 1))}"
            + (f", target {esc(pct(r.target, 0))}" if r.target is not None else "")
            + ")</li>"
            for r in found.regions[:12]
        )
        more = (
            f"<li>... {len(found.regions) - 12} more below</li>" if len(found.regions) > 12 else ""
        )
        rows.append(("Residential share per region", f"<ul>{items}{more}</ul>"))
    rows.append(("Warnings", str(len(warnings)) if warnings else "none"))
    body = "".join(
        f"<dt>{label}</dt>" + (value if value.startswith("<dd") else f"<dd>{value}</dd>")
        for label, value in rows
    )
    return f"<dl class='facts'>{body}</dl>" + banner(warnings) + open_links(run_dir)


def open_links(run_dir: str | None) -> str:
    """Where an analyst goes next: the table to use, the GIS file, the catalogue."""
    if not run_dir:
        return ""
    items = []
    for name, what in (("classified", "the table to use"), ("scores", "the table to use")):
        files = discovery.run_files(os.path.join(run_dir, name), ".parquet")
        if files:
            folder = os.path.dirname(files[0])
            items.append(
                link(run_dir, folder, relative(folder, run_dir) + "/") + f" (GeoParquet: {what})"
            )
            break
    gpkg = [p for p in discovery.export_files(run_dir) if p.endswith(".gpkg")]
    if gpkg:
        items.append(link(run_dir, gpkg[0]) + " (styled GeoPackage for QGIS/ArcGIS)")
    stac = discovery.stac_root(run_dir)
    if stac:
        stac_dir = relative(os.path.dirname(stac[0]), run_dir) + "/"
        items.append(link(run_dir, stac[0], stac_dir) + " (STAC catalogue of the masks)")
    if not items:
        return ""
    return "<div class='open'><b>Open:</b> " + " &middot; ".join(items) + "</div>"


def banner(warnings: list[dict]) -> str:
    """The red banner, one line per warning (empty: nothing)."""
    if not warnings:
        return ""
    items = "".join(
        f"<li><b>{esc(w.get('code', 'warning'))}</b> ({esc(w.get('where', ''))})"
        f": {esc(w.get('message', ''))}</li>"
        for w in warnings
    )
    return (
        f"<div class='banner' role='alert'><b>{len(warnings)} warning"
        f"{'s' if len(warnings) != 1 else ''}: read before using these results</b>"
        f"<ul>{items}</ul></div>"
    )


def _classes(table) -> dict:
    """``is_residential`` (True, False, None) -> the class categories of the style."""
    groups = _geometries(table, "is_residential")
    return {
        "residential": groups.get(True, []),
        "non_residential": groups.get(False, []),
        **({"not_classified": groups[None]} if groups.get(None) else {}),
    }


def table_crs(run_dir: str, name: str) -> str | None:
    """The CRS of a run's GeoParquet table, from its ``geo`` metadata (None: none)."""
    import json

    import pyarrow.parquet as pq
    import pyproj

    files = discovery.run_files(os.path.join(run_dir, name), ".parquet")
    if not files:
        return None
    meta = pq.read_schema(files[0]).metadata or {}
    if b"geo" not in meta:
        return None
    crs = json.loads(meta[b"geo"])["columns"]["geometry"].get("crs")
    if crs is None:
        return maps.WGS84
    return pyproj.CRS.from_json_dict(crs).to_string()


def class_layers(run_dir: str) -> tuple[str | None, dict]:
    """``(crs, {class: geometries})`` of a run's classified buildings (or its footprints)."""
    for name in ("classified", "scores"):
        found = discovery.read_table(os.path.join(run_dir, name), ["is_residential", "geometry"])
        if found is not None and found.num_rows and "is_residential" in found.column_names:
            layers = _classes(found)
            if any(layers.values()):
                return table_crs(run_dir, name), layers
    found = discovery.read_table(os.path.join(run_dir, "footprints"), ["geometry"])
    if found is not None and found.num_rows:
        return table_crs(run_dir, "footprints"), {"footprint": _geometries(found).get(None, [])}
    return None, {}


def headline_map(run_dir: str, kind: str) -> str:
    """The area on one lon/lat map: imagery, masks, buildings coloured by class."""
    summary = discovery.summary(run_dir)
    inputs = summary.get("inputs") or {}
    crs, layers = class_layers(run_dir)
    tiles = []
    if kind == "segment":
        masks = discovery.run_files(os.path.join(run_dir, "masks"), ".tif")
        # The imagery alone under the classes: a mask tint would change their colours.
        tiles = [(n, raster, None) for n, raster, _ in _match_masks(inputs.get("raster"), masks)]
    if not tiles and not any(layers.values()):
        return ""
    what = "residential and non-residential buildings" if "residential" in layers else "buildings"
    png = maps.mosaic(
        tiles,
        crs,
        layers,
        inputs.get("mask_threshold", 0.5),
        f"The area: {what}",
        max_pixels=900,
        legend_below=True,
    )
    return img(png, f"map of the area: {what}", element_id="map")


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _expected(region: dict) -> tuple[float | None, float | None]:
    """(expected share, its sd) of a region's summary entry, flat or under ``scores``."""
    scores = region.get("scores")
    stats = scores if isinstance(scores, dict) else region
    return stats.get("expected_fraction"), stats.get("expected_sd")


def _expects(region: dict) -> tuple[str, str]:
    """The "model expects" and "target vs model" cells of a region."""
    expected, sd = _expected(region)
    if expected is None:
        return "-", "-"
    text = f"{expected:.0%}" + (f" +/- {sd:.0%}" if sd is not None else "")
    target = region.get("target_fraction")
    if target is None:
        return text, "-"
    gap = target - expected
    # Two sd and two points of slack: a gap beyond it is the imagery disagreeing.
    slack = 2 * (sd or 0.0) + 0.02
    verdict = (
        "agree"
        if abs(gap) <= slack
        else (f"DISAGREE: target {gap:+.0%} vs the model; check the target or the imagery")
    )
    return text, verdict


def region_table(run_dir: str) -> str:
    """Per region: N, k, target, achieved, what the model expects, threshold; the totals."""
    summary = discovery.summary(run_dir)
    regions, totals, _ = facts.score_parts(run_dir)
    expects = any(_expected(r)[0] is not None for r in regions.values())
    out = [
        table(
            ["region", "footprints N", "residential k", "target", "achieved"]
            + (["model expects", "target vs model"] if expects else [])
            + ["threshold", "exact"],
            [
                (
                    name,
                    r.get("n"),
                    r.get("k"),
                    pct(r.get("target_fraction")),
                    pct(r.get("achieved_fraction")),
                    *(_expects(r) if expects else ()),
                    "-" if r.get("threshold") is None else f"{r['threshold']:.4f}",
                    ok(r.get("exact")),
                )
                for name, r in sorted(regions.items())
            ],
        )
    ]
    if expects:
        out.append(
            "<p class='meta'>\"Model expects\": the mean calibrated score of the "
            "region's footprints (the share the model expects to be residential) +/- "
            "its standard deviation; a target far outside it means the target and the "
            "imagery disagree.</p>"
        )
    out.append(
        f"<p>Records in: <b>{esc(totals.get('input_records', '?'))}</b> = scored "
        f"<b>{esc(totals.get('scored', '?'))}</b> + rejected "
        f"<b>{esc(totals.get('errors', '?'))}</b> "
        f"(reconciles: {ok(summary.get('reconciles'))}). Residential: "
        f"{esc(totals.get('residential', '?'))}. Duplicate ids: "
        f"{esc((summary.get('duplicates') or {}).get('count', 0))}.</p>"
    )
    return "".join(out)


def score_figures(run_dir: str) -> str:
    """Score distributions per region with the thresholds; accuracy against known labels."""
    regions, _, _ = facts.score_parts(run_dir)
    found = discovery.read_table(
        os.path.join(run_dir, "scores"), ["region", "score", "label", "is_residential"]
    )
    if found is None or not found.num_rows:
        return ""
    out = []
    region = np.asarray(found.column("region").to_pylist(), dtype=object)
    score = found.column("score").to_numpy(zero_copy_only=False)
    by_region = {r: score[region == r] for r in sorted(set(region))}
    out.append(
        img(
            plots.score_histograms(by_region, regions),
            "score distribution per region with threshold",
        )
    )
    if "label" in found.column_names:
        labels = found.column("label").to_pylist()
        known = [
            (lab, pred)
            for lab, pred in zip(labels, found.column("is_residential").to_pylist(), strict=True)
            if lab is not None
        ]
        if known:
            truth = np.array([k[0] for k in known])
            pred = np.array([int(k[1]) for k in known])
            matrix = [[int(((truth == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)]
            accuracy = float((truth == pred).mean())
            out.append(
                f"<h3>Against known labels</h3><p>{len(known)} footprints carry a "
                f"label: accuracy <b>{accuracy:.1%}</b> at the enforced fractions.</p>"
            )
            out.append(
                img(plots.confusion_matrix(matrix, ["non-res.", "residential"]), "confusion matrix")
            )
    return "".join(out)


def segment_tables(run_dir: str) -> str:
    """Tiles and windows that reconcile, footprints kept and dropped, the truth measures."""
    summary = discovery.summary(run_dir)
    counts = summary.get("counts", {})
    tiles = counts.get("tiles", {})
    windows = counts.get("windows", {})
    dropped = counts.get("footprints_too_small")
    min_area = (summary.get("inputs") or {}).get("min_area")
    out = [
        table(
            ["what", "count"],
            [(f"tiles {k}", v) for k, v in tiles.items()]
            + [(f"windows {k}", v) for k, v in windows.items()]
            + [("footprints", counts.get("footprints", "?"))]
            + (
                [
                    (
                        "footprints dropped as too small"
                        + (f" (< {min_area:g} m²)" if isinstance(min_area, (int, float)) else ""),
                        dropped,
                    )
                ]
                if dropped is not None
                else []
            ),
        ),
        f"<p>Counts reconcile: {ok(summary.get('reconciles'))} "
        f"({esc('; '.join(summary.get('checks', [])))}). Footprints found: "
        f"<b>{esc(counts.get('footprints', '?'))}</b>.</p>",
    ]
    truth = summary.get("truth")
    masks = discovery.run_files(os.path.join(run_dir, "masks"), ".tif")
    if truth:
        out.append(truth_section(run_dir, truth, masks))
    return "".join(out)


def truth_section(run_dir: str, truth: dict, masks: list[str]) -> str:
    """The measures against the truth, overall and per tile, with links to each tile's mask."""
    objects = truth.get("objects") or {}
    source = truth.get("source") or {}
    kind = {"masks": "true masks", "footprints": "true footprints"}.get(
        source.get("kind", ""), "the truth"
    )
    out = [
        f"<h3>Against the truth ({esc(kind)})</h3>",
        table(
            ["measure", "value"],
            [
                ("pixel IoU, all tiles (building pixels)", num(truth.get("iou"))),
                (
                    f"object precision at IoU >= {objects.get('iou_threshold', 0.5)}",
                    num(objects.get("precision")),
                ),
                ("object recall", num(objects.get("recall"))),
                ("object F1", num(objects.get("f1"))),
                ("found (true positives)", objects.get("true_positives", "-")),
                ("false positives", objects.get("false_positives", "-")),
                ("missed (false negatives)", objects.get("false_negatives", "-")),
                ("mean IoU of the found", num(objects.get("mean_matched_iou"))),
                (
                    "true buildings / footprints measured",
                    f"{objects.get('truth', '-')} / {objects.get('predicted', '-')}",
                ),
            ],
        ),
        "<p class='meta'>Objects are matched one to one (SpaceNet's building metric): a "
        "footprint is found when it overlaps a true building with IoU of at least 0.5; "
        f"{esc(objects.get('matching', ''))}. Only tiles that have a truth are "
        "counted.</p>",
    ]
    by_tile = truth.get("tile_objects") or {}
    ious = truth.get("tiles") or {}
    mask_of = {os.path.splitext(os.path.basename(m))[0]: m for m in masks}
    rows = []
    for scene in sorted(set(ious) | set(by_tile)):
        counts = by_tile.get(scene, {})
        rows.append(
            (
                scene,
                num(ious.get(scene)),
                counts.get("true_positive", 0),
                counts.get("false_positive", 0),
                counts.get("false_negative", 0),
                Raw(link(run_dir, mask_of[scene], "mask")) if scene in mask_of else "-",
            )
        )
    if rows:
        out.append(
            "<h3>Per tile</h3>"
            + table(["tile", "pixel IoU", "found", "false", "missed", "file"], rows)
        )
        if len(ious) > 1:
            out.append(img(plots.tile_iou_bars(ious), "pixel IoU per tile"))
    return "".join(out)


def errors_section(run_dir: str, examples: int = 3) -> str:
    """Dead letters by stage and reason, with a few examples each."""
    found = discovery.read_table(os.path.join(run_dir, "errors"))
    if found is None or found.num_rows == 0:
        return "<p>No record was rejected.</p>"
    rows = found.to_pylist()
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["error"]), []).append(row)
    return (
        f"<p>{len(rows)} records were rejected and kept in <code>errors/</code>; "
        "nothing else was lost.</p>"
        + table(
            ["stage", "reason", "count", "examples (record: message)"],
            [
                (
                    stage,
                    error,
                    len(items),
                    " | ".join(
                        f"{r['record'] or os.path.basename(r['source'])}: {r['message']}"
                        for r in items[:examples]
                    ),
                )
                for (stage, error), items in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            ],
        )
    )


# --------------------------------------------------------------------------
# Maps and figures of a segment run
# --------------------------------------------------------------------------


def _match_masks(raster_glob: str | None, masks: list[str]) -> list[tuple[str, str, str]]:
    """``(scene, raster, mask)`` of every mask; the mask itself stands in for a lost raster."""
    import glob

    rasters = {
        os.path.splitext(os.path.basename(r))[0]: r for r in sorted(glob.glob(raster_glob or ""))
    }
    return [
        (scene, rasters.get(scene, mask), mask)
        for scene, mask in sorted((os.path.splitext(os.path.basename(m))[0], m) for m in masks)
    ]


def mask_coverage(mask_path: str, size: int = 512) -> float:
    """Share of a mask's pixels at or above 0.5 probability, from a decimated read."""
    import rasterio

    with rasterio.open(mask_path) as src:
        data = src.read(1, out_shape=(min(size, src.height), min(size, src.width)), masked=True)
    valid = data.compressed()
    return float((valid >= 128).mean()) if valid.size else 0.0


def _geometries(found, key: str | None = None) -> dict:
    """Shapely geometries of a table's ``geometry`` column, grouped by ``key``'s values."""
    import shapely

    wkbs = found.column("geometry").to_pylist()
    keys = found.column(key).to_pylist() if key else [None] * len(wkbs)
    groups: dict = {}
    for wkb, value in zip(wkbs, keys, strict=True):
        if wkb is not None:
            groups.setdefault(value, []).append(shapely.from_wkb(wkb))
    return groups


def truth_layer(run_dir: str) -> dict | None:
    """Found / false / missed geometries from ``truth/objects.parquet`` (None: no truth)."""
    objects = discovery.read_table(os.path.join(run_dir, "truth"))
    if objects is None or "status" not in objects.column_names:
        return None
    groups = _geometries(objects, "status")
    return {c: groups.get(c, []) for c in ("true_positive", "false_positive", "false_negative")}


def area_figures(run_dir: str, panels_per_image: int = 12, max_panels: int = 48) -> str:
    """Against the truth on the whole area, then a panel per tile, then mask coverage."""
    summary = discovery.summary(run_dir)
    inputs = summary.get("inputs", {})
    masks = discovery.run_files(os.path.join(run_dir, "masks"), ".tif")
    pairs = _match_masks(inputs.get("raster"), masks)
    if not pairs:
        return ""
    crs = (summary.get("footprints") or {}).get("crs") or table_crs(run_dir, "footprints")
    threshold = inputs.get("mask_threshold", 0.5)
    truth = summary.get("truth") or {}
    out = []
    against = truth_layer(run_dir)
    if against is not None:
        out.append(
            img(
                maps.mosaic(pairs, crs, against, threshold, "mosaic: footprints against the truth"),
                "mosaic of every tile: footprints against the truth",
            )
        )
    layer_crs, layer = class_layers(run_dir)
    panels_layer = against if against is not None else layer
    panels_crs = crs if against is not None else layer_crs
    captions = {}
    tile_iou = truth.get("tiles") or {}
    for scene in tile_iou:
        counts = (truth.get("tile_objects") or {}).get(scene, {})
        captions[scene] = (
            f"IoU {num(tile_iou[scene], 2)}, found "
            f"{counts.get('true_positive', 0)}, false "
            f"{counts.get('false_positive', 0)}, missed "
            f"{counts.get('false_negative', 0)}"
        )
    shown = pairs[:max_panels]
    out.append(
        f"<h3>Every tile</h3><p>{len(pairs)} tiles"
        + (
            f"; the first {max_panels} are shown here, all are on the map above"
            if len(pairs) > max_panels
            else ""
        )
        + ".</p>"
    )
    for i in range(0, len(shown), panels_per_image):
        chunk = [(n, r, m, captions.get(n, "")) for n, r, m in shown[i : i + panels_per_image]]
        out.append(
            img(
                maps.tile_panels(chunk, panels_crs, panels_layer, threshold),
                "tiles " + ", ".join(c[0] for c in chunk),
            )
        )
    coverage = {os.path.splitext(os.path.basename(m))[0]: mask_coverage(m) for m in masks[:60]}
    out.append(img(plots.coverage_bars(coverage), "mask coverage per tile"))
    return "".join(out)


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------

#: folder -> what it is, in the order an analyst needs them.
_TABLES = (
    ("classified", "one row per building with its class: the table to use, GeoParquet"),
    ("scores", "one row per scored chip, GeoParquet"),
    ("footprints", "every traced building, GeoParquet"),
    ("truth", "each footprint's match against the truth"),
    ("errors", "rejected records"),
)


def outputs_section(run_dir: str) -> str:
    """Links to everything the run wrote and what was exported from it (relative links)."""
    links = []
    for folder, what in _TABLES:
        files = discovery.run_files(os.path.join(run_dir, folder), ".parquet")
        if files:
            links.append(
                link(run_dir, os.path.join(run_dir, folder), f"{folder}/")
                + f" ({esc(what)}): "
                + ", ".join(link(run_dir, p, os.path.basename(p)) for p in files[:20])
                + (f" and {len(files) - 20} more" if len(files) > 20 else "")
            )
    for path in discovery.export_files(run_dir):
        kind = {
            ".gpkg": "GeoPackage with its QGIS style inside: open it in QGIS or ArcGIS",
            ".qml": "the QGIS style, for any format",
            ".fgb": "FlatGeobuf",
            ".geojson": "GeoJSON, lon/lat",
        }.get(os.path.splitext(path)[1], "export")
        links.append(link(run_dir, path) + f" ({esc(kind)})")
    stac = discovery.stac_root(run_dir)
    if stac:
        links.append(
            link(run_dir, stac[0], relative(os.path.dirname(stac[0]), run_dir) + "/")
            + f" (STAC catalogue, {os.path.basename(stac[0])}: {stac[1]} files, an item per mask)"
        )
    for path in discovery.run_files(os.path.join(run_dir, "masks"), ".vrt"):
        links.append(link(run_dir, path) + " (all masks as one raster, for GIS)")
    masks = discovery.run_files(os.path.join(run_dir, "masks"), ".tif")
    if masks:
        links.append(
            f"{len(masks)} masks (COG): "
            + ", ".join(
                link(run_dir, m, os.path.splitext(os.path.basename(m))[0]) for m in masks[:200]
            )
        )
    summary = os.path.join(run_dir, discovery.SUMMARY_FILE)
    if os.path.exists(summary):
        links.append(link(run_dir, summary, "summary.json") + " (every count of the run)")
    if not links:
        return ""
    return "<ul class='links'>" + "".join(f"<li>{item}</li>" for item in links) + "</ul>"


# --------------------------------------------------------------------------
# For the ML engineer
# --------------------------------------------------------------------------


def warnings_of(output_dir: str, runs: list[tuple[str, str]], demo: dict) -> list[dict]:
    """Every warning to show in the banner: the runs' ``warnings`` and weak models' cards.

    Returns:
        ``{"code", "message", "where"}`` dicts, each (code, message) once.
    """
    found = []
    models = []
    for w in demo.get("warnings") or []:
        found.append({**w, "where": "demo"})
    for stage in (demo.get("stages") or {}).values():
        if isinstance(stage, dict) and stage.get("model"):
            models.append(stage["model"])
    for _, folder in runs:
        summary = discovery.summary(folder)
        where = os.path.relpath(folder, output_dir)
        for w in summary.get("warnings") or []:
            found.append({**w, "where": where})
        models += [
            (summary.get("inputs") or {}).get("model"),
            (summary.get("scores") or {}).get("classifier")
            if isinstance(summary.get("scores"), dict)
            else None,
        ]
    for model in dict.fromkeys(m for m in models if m):
        quality = _card(model).get("quality") or {}
        if quality.get("weak"):
            found.append(
                {
                    "code": "weak_model",
                    "where": model,
                    "message": (
                        f"the model {model} failed its quality gate: "
                        + ("; ".join(quality.get("reasons") or []) or "no reason recorded")
                        + ". Its results are not trustworthy; retrain it with more or better data."
                    ),
                }
            )
    seen, out = set(), []
    for w in found:
        key = (w.get("code"), w.get("message"))
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def demo_stages(summary: dict) -> str:
    """The demo's stages in pipeline order, each with its raw facts."""
    rows = []
    for name, stage in discovery.stages_in_order(summary.get("stages", {})):
        facts_ = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in stage.items()
            if isinstance(v, (int, float, str, bool)) and k != "seconds"
        )
        rows.append((name, facts_, stage.get("seconds", "")))
    return table(["stage", "result (raw)", "seconds"], rows)


def _card(model_dir: str | None) -> dict:
    return contracts.read_model_card(model_dir) if model_dir and os.path.isdir(model_dir) else {}


def model_section(model_dir: str | None, label: str = "Model") -> str:
    """A model's card at a glance: facts, quality, reliability diagram, training curves.

    The training curves are the ``training_curves.png`` that training writes
    beside the exported model (``<output>/model`` and
    ``<output>/training_curves.png``).
    """
    if not model_dir or model_dir in SHOWN_MODELS:
        return ""
    SHOWN_MODELS.add(model_dir)
    card = _card(model_dir)
    rows: list[tuple] = [("model", model_dir)]
    for key in (
        "model_type",
        "model_id",
        "backbone",
        "input_size",
        "created_utc",
        "created",
        "trained_at",
    ):
        if key in card:
            rows.append((key, card[key]))
    metrics = card.get("validation_metrics") or card.get("metrics") or {}
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)):
            rows.append((f"validation {key}", f"{value:.3f}"))
    quality = card.get("quality") or {}
    for key in ("auc", "ece", "ece_uncalibrated", "temperature", "iou"):
        if isinstance(quality.get(key), (int, float)):
            rows.append((f"quality {key}", f"{quality[key]:.3f}"))
    if quality:
        rows.append(
            (
                "quality gate",
                "WEAK: " + "; ".join(quality.get("reasons") or [])
                if quality.get("weak")
                else "passed",
            )
        )
    for split, counts in (card.get("splits") or {}).items():
        if isinstance(counts, dict):
            rows.append((f"{split} split", ", ".join(f"{k} {v}" for k, v in counts.items())))
    out = [f"<h3>{esc(label)}</h3>", table(["fact", "value"], rows)]
    if quality.get("reliability"):
        out.append(
            img(
                plots.reliability_diagram(
                    quality["reliability"], quality.get("ece"), quality.get("ece_uncalibrated")
                ),
                "reliability diagram",
            )
        )
    curves = os.path.join(os.path.dirname(os.path.normpath(model_dir)), "training_curves.png")
    if os.path.exists(curves):
        out.append(
            "<p>Training curves (loss and metrics per epoch, training and "
            "validation):</p>" + png_file(curves, "training curves")
        )
    return "".join(out)
