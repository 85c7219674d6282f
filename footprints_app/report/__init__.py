"""``report.html``: what happened in a run, for a person, in one offline file.

The report is built after a run from what the run wrote (the output
contracts: ``summary.json``, ``scores/``, ``errors/``, ``masks/``,
``footprints/``, ``truth/``), never from pipeline internals, so it can be
rebuilt at any time with ``footprints report DIR`` and it works for runs made
on any runner. When a summary lists the files its run wrote (``files``),
only those are read. Figures are PNGs embedded as data URIs and the styles
are inline: the file opens offline, from a laptop, a bucket download or an
e-mail.

What an analyst sees, top to bottom:

* a red banner for every warning: the runs' ``warnings`` and any model whose
  card says ``quality.weak``, so a weak model or scores that cannot rank are
  the first thing read, not a footnote;
* per run, the counts that reconcile; for a segment run the measures
  against the truth (pixel IoU per tile, object precision/recall/F1), a
  mosaic of the whole area and a panel per tile with masks and footprints
  coloured found / false / missed (or residential / non-residential), each
  with a legend; for scores, target vs achieved vs what the model expects
  per region; the models' cards, reliability diagram and training curves;
* links to the outputs, relative to the report, so the folder can move.

No absolute path of the machine that ran it is written: paths under the
output folder are shown relative to it, others by their last parts.

A folder may hold one run (a ``score`` or ``segment`` output) or a demo, whose
``demo_summary.json`` names a run per stage; each found run adds its sections.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterable

import numpy as np

from footprints import contracts
from footprints_app.report import maps, plots
from pipeline.jobs import SUMMARY_FILE

REPORT_FILE = "report.html"
DEMO_SUMMARY = "demo_summary.json"


_ROOTS: list[str] = []  # the output folder being reported on (set by build_report)
_SHOWN_MODELS: set[str] = set()  # each model's card once per page
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"<>|,;()\[\]]+/)*([^\s/'\"<>|,;()\[\]]+/)")


def _scrub(text: str) -> str:
    """Paths under the output folder made relative; other absolute paths cut to their tail.

    Example: with root ``/runs/r1``, ``"read /runs/r1/masks/a.tif and
    /data/area/tiles/a.tif"`` -> ``"read masks/a.tif and .../tiles/a.tif"``
    (the last folder kept: it usually says what the file is).
    """
    for root in _ROOTS:
        text = text.replace(root + "/", "").replace(root, ".")
    return _ABSOLUTE.sub(r".../\1", text)


def _esc(value) -> str:
    return html.escape(_scrub(str(value)))


def _link(run_dir: str, path: str, text: str | None = None) -> str:
    """A link to an output, relative to the report (the folder can move)."""
    rel = os.path.relpath(path, _ROOTS[0] if _ROOTS else run_dir).replace(os.sep, "/")
    return f'<a href="{html.escape(urllib.parse.quote(rel))}">{_esc(text or rel)}</a>'


def _png_file(path: str, alt: str) -> str:
    with open(path, "rb") as f:
        return _img(f.read(), alt)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Iterable[str], rows: Iterable[Iterable]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_files(directory: str, suffix: str) -> list[str]:
    """The ``*suffix`` files of ``directory`` that its run wrote.

    A run's summary.json lists its files (``files``, relative to the run
    folder); when it does, only those are read, so nothing an earlier run
    left behind is mixed in. Older runs without the list: a glob.
    """
    run_dir, name = os.path.split(directory.rstrip("/"))
    listed = _read_json(os.path.join(run_dir, SUMMARY_FILE)).get("files")
    if listed is None:
        return sorted(glob.glob(os.path.join(directory, f"*{suffix}")))
    return sorted(
        os.path.join(run_dir, f)
        for f in listed
        if f.startswith(f"{name}/") and f.count("/") == 1 and f.endswith(suffix)
    )


def _read_table(directory: str, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    files = run_files(directory, ".parquet")
    if not files:
        return None
    return pq.read_table(files, columns=columns)


def _ok(flag) -> str:
    return "yes" if flag else "NO"


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def errors_section(run_dir: str, examples: int = 3) -> str:
    """Dead letters by stage and reason, with a few examples each."""
    table = _read_table(os.path.join(run_dir, "errors"))
    if table is None or table.num_rows == 0:
        return "<p>No record was rejected.</p>"
    rows = table.to_pylist()
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["error"]), []).append(row)
    out = [
        f"<p>{len(rows)} records were rejected and kept in <code>errors/</code>; "
        "nothing else was lost.</p>"
    ]
    out.append(
        _table(
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
    return "".join(out)


def _num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _card(model_dir: str | None) -> dict:
    return contracts.read_model_card(model_dir) if model_dir and os.path.isdir(model_dir) else {}


def model_section(model_dir: str | None, label: str = "Model") -> str:
    """A model's card at a glance: facts, quality, reliability diagram, training curves.

    The training curves are the ``training_curves.png`` that training writes
    beside the exported model (``<output>/model`` and
    ``<output>/training_curves.png``).
    """
    if not model_dir or model_dir in _SHOWN_MODELS:
        return ""
    _SHOWN_MODELS.add(model_dir)
    card = _card(model_dir)
    facts = [("model", model_dir)]
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
            facts.append((key, card[key]))
    metrics = card.get("validation_metrics") or card.get("metrics") or {}
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)):
            facts.append((f"validation {key}", f"{value:.3f}"))
    quality = card.get("quality") or {}
    for key in ("auc", "ece", "ece_uncalibrated", "temperature", "iou"):
        if isinstance(quality.get(key), (int, float)):
            facts.append((f"quality {key}", f"{quality[key]:.3f}"))
    if quality:
        facts.append(
            (
                "quality gate",
                "WEAK: " + "; ".join(quality.get("reasons") or [])
                if quality.get("weak")
                else "passed",
            )
        )
    for split, counts in (card.get("splits") or {}).items():
        if isinstance(counts, dict):
            facts.append((f"{split} split", ", ".join(f"{k} {v}" for k, v in counts.items())))
    out = [f"<h3>{_esc(label)}</h3>", _table(["fact", "value"], facts)]
    if quality.get("reliability"):
        out.append(
            _img(
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
            "validation):</p>" + _png_file(curves, "training curves")
        )
    return "".join(out)


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


def score_section(run_dir: str) -> str:
    """Per-region fractions, what the model expects, score distributions, accuracy, the model.

    Works for a ``score`` run and for the scores a ``segment --classifier``
    run nests under ``summary["scores"]``.
    """
    summary = _read_json(os.path.join(run_dir, SUMMARY_FILE))
    counts = summary.get("counts") or {}
    if "regions" not in summary and isinstance(summary.get("scores"), dict):
        # segment --classifier: its chips are the records scored.
        model = summary["scores"].get("classifier")
        regions = summary["scores"].get("regions", {})
        totals = {
            "input_records": counts.get("chips"),
            "scored": counts.get("scored"),
            "errors": counts.get("score_errors", 0),
            "residential": sum(r.get("residential", r.get("k", 0)) for r in regions.values()),
        }
    else:
        model = (summary.get("inputs") or {}).get("model")
        regions = summary.get("regions", {})
        totals = counts
    for r in regions.values():
        if r.get("achieved_fraction") is None and r.get("n"):
            r["achieved_fraction"] = r.get("residential", r.get("k", 0)) / r["n"]
        r.setdefault("exact", r.get("residential", r.get("k")) == r.get("k"))
    table = _read_table(
        os.path.join(run_dir, "scores"), ["region", "score", "label", "is_residential"]
    )
    out = []
    expects = any(_expected(r)[0] is not None for r in regions.values())
    out.append(
        _table(
            ["region", "footprints N", "residential k", "target", "achieved"]
            + (["model expects", "target vs model"] if expects else [])
            + ["threshold", "exact"],
            [
                (
                    name,
                    r.get("n"),
                    r.get("k"),
                    _pct(r.get("target_fraction")),
                    _pct(r.get("achieved_fraction")),
                    *(_expects(r) if expects else ()),
                    "-" if r.get("threshold") is None else f"{r['threshold']:.4f}",
                    _ok(r.get("exact")),
                )
                for name, r in sorted(regions.items())
            ],
        )
    )
    if expects:
        out.append(
            "<p class='meta'>\"Model expects\": the mean calibrated score of the "
            "region's footprints (the share the model expects to be residential) +/- "
            "its standard deviation; a target far outside it means the target and the "
            "imagery disagree.</p>"
        )
    out.append(
        f"<p>Records in: <b>{totals.get('input_records', '?')}</b> = scored "
        f"<b>{totals.get('scored', '?')}</b> + rejected <b>{totals.get('errors', '?')}</b> "
        f"(reconciles: {_ok(summary.get('reconciles'))}). Residential: "
        f"{totals.get('residential', '?')}. Duplicate ids: "
        f"{summary.get('duplicates', {}).get('count', 0)}.</p>"
    )
    if table is not None and table.num_rows:
        region = np.asarray(table.column("region").to_pylist(), dtype=object)
        score = table.column("score").to_numpy(zero_copy_only=False)
        by_region = {r: score[region == r] for r in sorted(set(region))}
        out.append(
            _img(
                plots.score_histograms(by_region, regions),
                "score distribution per region with threshold",
            )
        )
        labels = table.column("label").to_pylist()
        known = [
            (lab, pred)
            for lab, pred in zip(labels, table.column("is_residential").to_pylist(), strict=True)
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
                _img(
                    plots.confusion_matrix(matrix, ["non-res.", "residential"]), "confusion matrix"
                )
            )
    out.append(model_section(model, "Classifier model"))
    return "".join(out)


def _match_masks(raster_glob: str | None, masks: list[str]) -> list[tuple[str, str, str]]:
    """``(scene, raster, mask)`` of every mask; the mask itself stands in for a lost raster."""
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


def _geometries(table, key: str | None = None) -> dict:
    """Shapely geometries of a table's ``geometry`` column, grouped by ``key``'s values."""
    import shapely

    wkbs = table.column("geometry").to_pylist()
    keys = table.column(key).to_pylist() if key else [None] * len(wkbs)
    groups: dict = {}
    for wkb, value in zip(wkbs, keys, strict=True):
        if wkb is not None:
            groups.setdefault(value, []).append(shapely.from_wkb(wkb))
    return groups


def footprint_layers(run_dir: str) -> list[tuple[str, dict]]:
    """The maps to draw: ``(title, {category: geometries})``, truth first.

    Against the truth (``truth/objects.parquet``): found / false / missed.
    Scored (``scores/`` with geometry): residential / non-residential.
    Otherwise the footprints in one colour.
    """
    maps_ = []
    objects = _read_table(os.path.join(run_dir, "truth"))
    if objects is not None and "status" in objects.column_names:
        groups = _geometries(objects, "status")
        maps_.append(
            (
                "footprints against the truth",
                {
                    c: groups.get(c, [])
                    for c in ("true_positive", "false_positive", "false_negative")
                },
            )
        )
    scores = _read_table(os.path.join(run_dir, "scores"), ["is_residential", "geometry"])
    if scores is not None and scores.num_rows:
        groups = _geometries(scores, "is_residential")
        if groups:
            maps_.append(
                (
                    "footprints classified",
                    {"residential": groups.get(True, []), "non_residential": groups.get(False, [])},
                )
            )
    if not maps_:
        table = _read_table(os.path.join(run_dir, "footprints"), ["geometry"])
        if table is not None:
            maps_.append(("footprints", {"footprint": _geometries(table).get(None, [])}))
    return maps_


def truth_section(run_dir: str, truth: dict, masks: list[str]) -> str:
    """The measures against the truth, overall and per tile, with links to each tile's mask."""
    objects = truth.get("objects") or {}
    source = truth.get("source") or {}
    kind = {"masks": "true masks", "footprints": "true footprints"}.get(
        source.get("kind", ""), "the truth"
    )
    out = [
        f"<h3>Against the truth ({_esc(kind)})</h3>",
        _table(
            ["measure", "value"],
            [
                ("pixel IoU, all tiles (building pixels)", _num(truth.get("iou"))),
                (
                    f"object precision at IoU >= {objects.get('iou_threshold', 0.5)}",
                    _num(objects.get("precision")),
                ),
                ("object recall", _num(objects.get("recall"))),
                ("object F1", _num(objects.get("f1"))),
                ("found (true positives)", objects.get("true_positives", "-")),
                ("false positives", objects.get("false_positives", "-")),
                ("missed (false negatives)", objects.get("false_negatives", "-")),
                ("mean IoU of the found", _num(objects.get("mean_matched_iou"))),
                (
                    "true buildings / footprints measured",
                    f"{objects.get('truth', '-')} / {objects.get('predicted', '-')}",
                ),
            ],
        ),
        "<p class='meta'>Objects are matched one to one (SpaceNet's building metric): a "
        "footprint is found when it overlaps a true building with IoU of at least 0.5; "
        f"{_esc(objects.get('matching', ''))}. Only tiles that have a truth are "
        "counted.</p>",
    ]
    by_tile = truth.get("tile_objects") or {}
    ious = truth.get("tiles") or {}
    mask_of = {os.path.splitext(os.path.basename(m))[0]: m for m in masks}
    rows = []
    for scene in sorted(set(ious) | set(by_tile)):
        counts = by_tile.get(scene, {})
        link = _link(run_dir, mask_of[scene], "mask") if scene in mask_of else "-"
        rows.append(
            (
                scene,
                _num(ious.get(scene)),
                counts.get("true_positive", 0),
                counts.get("false_positive", 0),
                counts.get("false_negative", 0),
                link,
            )
        )
    if rows:
        head = "".join(
            f"<th>{h}</th>" for h in ("tile", "pixel IoU", "found", "false", "missed", "file")
        )
        body = "".join(
            "<tr>"
            + "".join(f"<td>{c if i == 5 else _esc(c)}</td>" for i, c in enumerate(row))
            + "</tr>"
            for row in rows
        )
        out.append(
            f"<h3>Per tile</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        if len(ious) > 1:
            out.append(_img(plots.tile_iou_bars(ious), "pixel IoU per tile"))
    return "".join(out)


def segment_section(run_dir: str, panels_per_image: int = 12, max_panels: int = 48) -> str:
    """Tiles and windows that reconcile, truth measures, a mosaic and every tile's panel."""
    summary = _read_json(os.path.join(run_dir, SUMMARY_FILE))
    counts, inputs = summary.get("counts", {}), summary.get("inputs", {})
    tiles = counts.get("tiles", {})
    windows = counts.get("windows", {})
    out = [
        _table(
            ["what", "count"],
            [(f"tiles {k}", v) for k, v in tiles.items()]
            + [(f"windows {k}", v) for k, v in windows.items()],
        ),
        f"<p>Counts reconcile: {_ok(summary.get('reconciles'))} "
        f"({_esc('; '.join(summary.get('checks', [])))}). Footprints found: "
        f"<b>{counts.get('footprints', '?')}</b>.</p>",
    ]
    masks = run_files(os.path.join(run_dir, "masks"), ".tif")
    truth = summary.get("truth")
    if truth:
        out.append(truth_section(run_dir, truth, masks))
    pairs = _match_masks(inputs.get("raster"), masks)
    crs = (summary.get("footprints") or {}).get("crs")
    threshold = inputs.get("mask_threshold", 0.5)
    layers = footprint_layers(run_dir)
    if pairs:
        out.append("<h3>The whole area</h3>")
        for title, layer in layers or [("masks", {})]:
            out.append(
                _img(
                    maps.mosaic(pairs, crs, layer, threshold, f"mosaic: {title}"),
                    f"mosaic of every tile: {title}",
                )
            )
        captions = {}
        tile_iou = (truth or {}).get("tiles") or {}
        for scene in tile_iou:
            counts = ((truth or {}).get("tile_objects") or {}).get(scene, {})
            captions[scene] = (
                f"IoU {_num(tile_iou[scene], 2)}, found "
                f"{counts.get('true_positive', 0)}, false "
                f"{counts.get('false_positive', 0)}, missed "
                f"{counts.get('false_negative', 0)}"
            )
        shown = pairs[:max_panels]
        title, layer = (layers or [("", {})])[0]
        out.append(
            f"<h3>Every tile</h3><p>{len(pairs)} tiles"
            + (
                f"; the first {max_panels} are shown here, all are in the mosaic above"
                if len(pairs) > max_panels
                else ""
            )
            + (f"; outlines: {_esc(title)}" if title else "")
            + ".</p>"
        )
        for i in range(0, len(shown), panels_per_image):
            chunk = [(n, r, m, captions.get(n, "")) for n, r, m in shown[i : i + panels_per_image]]
            out.append(
                _img(
                    maps.tile_panels(chunk, crs, layer, threshold),
                    "tiles " + ", ".join(c[0] for c in chunk),
                )
            )
    if masks:
        coverage = {os.path.splitext(os.path.basename(m))[0]: mask_coverage(m) for m in masks[:60]}
        out.append(_img(plots.coverage_bars(coverage), "mask coverage per tile"))
    out.append(model_section(inputs.get("model"), "Segmenter model"))
    return "".join(out)


def outputs_section(run_dir: str) -> str:
    """Links to what the run wrote (relative to the report)."""
    links = []
    summary = os.path.join(run_dir, SUMMARY_FILE)
    if os.path.exists(summary):
        links.append(_link(run_dir, summary, "summary.json (every count of the run)"))
    for folder, what in (
        ("footprints", "footprints"),
        ("scores", "scores"),
        ("truth", "each footprint's match"),
        ("errors", "rejected records"),
    ):
        for path in run_files(os.path.join(run_dir, folder), ".parquet"):
            links.append(
                _link(run_dir, path) + f" ({what}, GeoParquet)"
                if folder != "errors"
                else _link(run_dir, path) + f" ({what})"
            )
    for path in run_files(os.path.join(run_dir, "masks"), ".vrt"):
        links.append(_link(run_dir, path) + " (all masks as one raster, for GIS)")
    masks = run_files(os.path.join(run_dir, "masks"), ".tif")
    if masks:
        links.append(
            f"{len(masks)} masks: "
            + ", ".join(
                _link(run_dir, m, os.path.splitext(os.path.basename(m))[0]) for m in masks[:200]
            )
        )
    if not links:
        return ""
    return "<ul class='links'>" + "".join(f"<li>{link}</li>" for link in links) + "</ul>"


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
        summary = _read_json(os.path.join(folder, SUMMARY_FILE))
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


def banner(warnings: list[dict]) -> str:
    """The red banner at the top of the page, one line per warning (empty: nothing)."""
    if not warnings:
        return ""
    items = "".join(
        f"<li><b>{_esc(w.get('code', 'warning'))}</b> ({_esc(w.get('where', ''))})"
        f": {_esc(w.get('message', ''))}</li>"
        for w in warnings
    )
    return (
        f"<div class='banner' role='alert'><b>{len(warnings)} warning"
        f"{'s' if len(warnings) != 1 else ''}: read before using these results</b>"
        f"<ul>{items}</ul></div>"
    )


def demo_section(summary: dict) -> str:
    """The demo's stages at a glance."""
    rows = []
    for name, stage in summary.get("stages", {}).items():
        facts = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in stage.items()
            if isinstance(v, (int, float, str, bool)) and k != "seconds"
        )
        rows.append((name, facts, stage.get("seconds", "")))
    return _table(["stage", "result", "seconds"], rows)


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}h1{font-size:1.6rem}h2{border-bottom:2px solid #4c78a8;
padding-bottom:.2rem;margin-top:2rem}table{border-collapse:collapse;margin:.6rem 0;
font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#eef2f7}img{max-width:100%;margin:.5rem 0;display:block}
code{background:#f3f3f3;padding:0 .2rem}.meta{color:#666;font-size:.85rem}
.banner{background:#b00020;color:#fff;padding:.8rem 1rem;border-radius:4px;margin:1rem 0;
font-size:1rem}.banner ul{margin:.4rem 0 0 1.2rem;padding:0}.banner li{margin:.2rem 0}
.links li{margin:.15rem 0}a{color:#1f5fa8}
"""

# Lets a headless browser (and the tests) confirm every figure decoded.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-loaded',
    imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
"""


def _kind(run_dir: str) -> str | None:
    summary = _read_json(os.path.join(run_dir, SUMMARY_FILE))
    return summary.get("job") if summary.get("job") in ("segment", "score") else None


def find_runs(output_dir: str) -> list[tuple[str, str]]:
    """``(kind, folder)`` of every run in ``output_dir`` (itself or one level down)."""
    runs = []
    for folder in [output_dir] + sorted(glob.glob(os.path.join(output_dir, "*", ""))):
        folder = folder.rstrip("/")
        kind = _kind(folder)
        if kind:
            runs.append((kind, folder))
    return runs


def build_report(output_dir: str, title: str | None = None) -> str:
    """Writes ``output_dir/report.html`` and returns its path."""
    output_dir = os.path.abspath(output_dir)
    _ROOTS[:] = [output_dir]
    _SHOWN_MODELS.clear()
    try:
        page = _page(output_dir, title)
    finally:
        _ROOTS.clear()
    path = os.path.join(output_dir, REPORT_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def _page(output_dir: str, title: str | None) -> str:
    demo = _read_json(os.path.join(output_dir, DEMO_SUMMARY))
    runs = find_runs(output_dir)
    parts = [
        f"<h1>{_esc(title or 'footprints run report')}</h1>",
        f"<p class='meta'>{_esc(os.path.basename(output_dir))}/ &middot; built "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>",
        banner(warnings_of(output_dir, runs, demo)),
    ]
    if demo:
        parts.append("<h2>Demo stages</h2>" + demo_section(demo))
    if not runs and not demo:
        parts.append("<p>No run output (summary.json) was found in this folder.</p>")
    for kind, folder in runs:
        rel = os.path.relpath(folder, output_dir)
        label = "" if rel == "." else f" ({_esc(rel)}/)"
        if kind == "score":
            parts.append(f"<h2>Residential classification{label}</h2>" + score_section(folder))
        else:
            parts.append(f"<h2>Building segmentation{label}</h2>" + segment_section(folder))
            if _read_json(os.path.join(folder, SUMMARY_FILE)).get("scores"):
                parts.append(f"<h3>Classified footprints{label}</h3>" + score_section(folder))
        parts.append(f"<h3>Rejected records{label}</h3>" + errors_section(folder))
        links = outputs_section(folder)
        if links:
            parts.append(f"<h3>Outputs{label}</h3>" + links)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title or 'footprints report')}</title><style>{_STYLE}</style>"
        f"<script>{_SCRIPT}</script></head><body>{''.join(parts)}</body></html>"
    )
