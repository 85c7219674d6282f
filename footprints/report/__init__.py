"""``report.html``: what happened in a run, for a person, in one offline file.

The report is built after a run from what the run wrote (the output
contracts: ``summary.json``, ``scores/``, ``errors/``, ``masks/``), never from
pipeline internals, so it can be rebuilt at any time with
``footprints report DIR`` and it works for runs made on any runner. Figures
are PNGs embedded as data URIs and the styles are inline: the file opens
offline, from a laptop, a bucket download or an e-mail.

A folder may hold one run (a ``score`` or ``segment`` output) or a demo, whose
``demo_summary.json`` names a run per stage; each found run adds its sections.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
import time
from collections.abc import Iterable

import numpy as np

from footprints import contracts
from footprints.report import plots

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
DEMO_SUMMARY = "demo_summary.json"


def _esc(value) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Iterable[str], rows: Iterable[Iterable]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
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
    return sorted(os.path.join(run_dir, f) for f in listed
                  if f.startswith(f"{name}/") and f.count("/") == 1 and f.endswith(suffix))


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
    out = [f"<p>{len(rows)} records were rejected and kept in <code>errors/</code>; "
           "nothing else was lost.</p>"]
    out.append(_table(["stage", "reason", "count", "examples (record: message)"], [
        (stage, error, len(items), " | ".join(
            f"{r['record'] or os.path.basename(r['source'])}: {r['message']}"
            for r in items[:examples]))
        for (stage, error), items in sorted(groups.items(), key=lambda kv: -len(kv[1]))]))
    return "".join(out)


def _model_facts(model_dir: str | None) -> str:
    if not model_dir:
        return ""
    card = contracts.read_model_card(model_dir) if os.path.isdir(model_dir) else {}
    facts = [("model", model_dir)]
    for key in ("model_id", "backbone", "input_size", "created", "trained_at"):
        if key in card:
            facts.append((key, card[key]))
    metrics = card.get("validation_metrics") or card.get("metrics") or {}
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)):
            facts.append((f"validation {key}", f"{value:.3f}"))
    return "<h3>Model</h3>" + _table(["fact", "value"], facts)


def score_section(run_dir: str) -> str:
    """Per-region fractions, score distributions, totals, accuracy against labels.

    Works for a ``score`` run and for the scores a ``segment --classifier``
    run nests under ``summary["scores"]``.
    """
    summary = _read_json(os.path.join(run_dir, SUMMARY_FILE))
    if "regions" not in summary and isinstance(summary.get("scores"), dict):
        summary = summary["scores"]
    regions = summary.get("regions", {})
    totals = summary.get("totals") or {
        "input_records": summary.get("input_records", summary.get("scored")),
        "scored": summary.get("scored"), "errors": summary.get("errors", 0),
        "reconciled": summary.get("reconciled"),
        "residential": sum(r.get("residential", r.get("k", 0)) for r in regions.values())}
    for r in regions.values():
        if r.get("achieved_fraction") is None and r.get("n"):
            r["achieved_fraction"] = r.get("residential", r.get("k", 0)) / r["n"]
        r.setdefault("exact", r.get("residential", r.get("k")) == r.get("k"))
    table = _read_table(os.path.join(run_dir, "scores"),
                        ["region", "score", "label", "is_residential"])
    out = []
    out.append(_table(
        ["region", "footprints N", "residential k", "target", "achieved", "threshold",
         "exact"],
        [(name, r.get("n"), r.get("k"), _pct(r.get("target_fraction")),
          _pct(r.get("achieved_fraction")),
          "-" if r.get("threshold") is None else f"{r['threshold']:.4f}",
          _ok(r.get("exact"))) for name, r in sorted(regions.items())]))
    out.append(
        f"<p>Records in: <b>{totals.get('input_records', '?')}</b> = scored "
        f"<b>{totals.get('scored', '?')}</b> + rejected <b>{totals.get('errors', '?')}</b> "
        f"(reconciles: {_ok(totals.get('reconciled'))}). Residential: "
        f"{totals.get('residential', '?')}. Duplicate ids: "
        f"{summary.get('duplicates', {}).get('count', 0)}.</p>")
    if table is not None and table.num_rows:
        region = np.asarray(table.column("region").to_pylist(), dtype=object)
        score = table.column("score").to_numpy(zero_copy_only=False)
        by_region = {r: score[region == r] for r in sorted(set(region))}
        out.append(_img(plots.score_histograms(by_region, regions),
                        "score distribution per region with threshold"))
        labels = table.column("label").to_pylist()
        known = [(lab, pred) for lab, pred in zip(labels, table.column(
            "is_residential").to_pylist()) if lab is not None]
        if known:
            truth = np.array([k[0] for k in known])
            pred = np.array([int(k[1]) for k in known])
            matrix = [[int(((truth == t) & (pred == p)).sum()) for p in (0, 1)]
                      for t in (0, 1)]
            accuracy = float((truth == pred).mean())
            out.append(f"<h3>Against known labels</h3><p>{len(known)} footprints carry a "
                       f"label: accuracy <b>{accuracy:.1%}</b> at the enforced fractions.</p>")
            out.append(_img(plots.confusion_matrix(matrix, ["non-res.", "residential"]),
                            "confusion matrix"))
    out.append(_model_facts((summary.get("run") or {}).get("model")))
    return "".join(out)


def _match_masks(raster_glob: str | None, masks_dir: str) -> list[tuple[str, str, str]]:
    masks = {os.path.splitext(os.path.basename(m))[0]: m
             for m in run_files(masks_dir, ".tif")}
    pairs = []
    for raster in sorted(glob.glob(raster_glob or "")):
        stem = os.path.splitext(os.path.basename(raster))[0]
        if stem in masks:
            pairs.append((stem, raster, masks[stem]))
    return pairs


def mask_coverage(mask_path: str, size: int = 512) -> float:
    """Share of a mask's pixels at or above 0.5 probability, from a decimated read."""
    import rasterio

    with rasterio.open(mask_path) as src:
        data = src.read(1, out_shape=(min(size, src.height), min(size, src.width)),
                        masked=True)
    valid = data.compressed()
    return float((valid >= 128).mean()) if valid.size else 0.0


def segment_section(run_dir: str, thumbnails: int = 6) -> str:
    """Tiles and windows that reconcile, masks over imagery, coverage, IoU."""
    summary = _read_json(os.path.join(run_dir, SUMMARY_FILE))
    tiles = summary.get("tiles", {})
    windows = summary.get("windows", {})
    rec = summary.get("reconciliation", {})
    out = [_table(["what", "count"], [(f"tiles {k}", v) for k, v in tiles.items()]
                  + [(f"windows {k}", v) for k, v in windows.items()]),
           f"<p>Tiles reconcile: {_ok(rec.get('tiles_ok'))}; windows reconcile: "
           f"{_ok(rec.get('windows_ok'))}. Footprints found: "
           f"<b>{summary.get('footprints', {}).get('count', '?')}</b>.</p>"]
    truth = summary.get("truth")
    if truth:
        iou = truth.get("iou", truth.get("building_iou"))
        out.append(f"<p>Building IoU against the true masks: <b>{iou:.3f}</b>"
                   if isinstance(iou, (int, float)) else "<p>Against the true masks: ")
        out.append(" (" + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in truth.items()
                                    if not isinstance(v, (dict, list))) + ")</p>")
    masks_dir = os.path.join(run_dir, "masks")
    pairs = _match_masks(summary.get("raster"), masks_dir)
    if pairs:
        step = max(1, len(pairs) // thumbnails)
        out.append(_img(plots.mask_thumbnails(pairs[::step][:thumbnails]),
                        "building masks over imagery"))
    masks = run_files(masks_dir, ".tif")
    if masks:
        coverage = {os.path.splitext(os.path.basename(m))[0]: mask_coverage(m)
                    for m in masks[:60]}
        out.append(_img(plots.coverage_bars(coverage), "mask coverage per tile"))
    return "".join(out)


def demo_section(summary: dict) -> str:
    """The demo's stages at a glance."""
    rows = []
    for name, stage in summary.get("stages", {}).items():
        facts = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in stage.items()
                          if isinstance(v, (int, float, str, bool)) and k != "seconds")
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
    if "windows" in summary:
        return "segment"
    if "regions" in summary:
        return "score"
    return None


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
    parts = [f"<h1>{_esc(title or 'footprints run report')}</h1>",
             f"<p class='meta'>{_esc(output_dir)} &middot; built "
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>"]
    demo = _read_json(os.path.join(output_dir, DEMO_SUMMARY))
    if demo:
        parts.append("<h2>Demo stages</h2>" + demo_section(demo))
    runs = find_runs(output_dir)
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
                parts.append(score_section(folder))
        parts.append(f"<h3>Rejected records{label}</h3>" + errors_section(folder))
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(title or 'footprints report')}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>{''.join(parts)}</body></html>")
    path = os.path.join(output_dir, REPORT_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
