"""``report.html``: what happened in a run, for the analyst who uses it, in one offline file.

The report is built after a run from what the run wrote (the output
contracts: ``summary.json``, ``classified/``, ``scores/``, ``errors/``,
``masks/``, ``footprints/``, ``truth/``, ``stac/``, and ``export/`` when
``footprints export`` ran), never from pipeline internals, so it can be
rebuilt at any time with ``footprints report DIR`` and it works for runs
made on any runner. When a summary lists the files its run wrote
(``files``), only those are read. Figures are PNGs embedded as data URIs
and the styles are inline: the file opens offline, from a laptop, a bucket
download or an e-mail.

It reads top-down, the analyst's questions first:

1. **The headline** (``id="headline"``): the area, its extent in lon/lat,
   its size, the imagery date, the buildings found, the residential share
   per region, the warnings (a red banner: the runs' ``warnings`` and any
   model whose card says ``quality.weak``), and where to open the results
   (``classified/``, the GeoPackage, ``stac/``). Beside it **the map**
   (``id="map"``): the imagery, the masks and the buildings coloured in the
   classes of the exported QGIS style, with lon/lat ticks and a scale bar.
   Both fit the first screen of a laptop browser.
2. **The tables**: per region (target, achieved, what the model expects),
   per tile (counts, and the measures against the truth when one was
   given), then the figures that explain them (score distributions, the
   area against the truth, a panel per tile), and the rejected records.
3. **The outputs**: relative links to every file, so the folder can move.
4. **For the ML engineer**, last: the demo's stages with their raw values
   (in pipeline order), the models' cards, reliability diagrams and
   training curves.

The parts: :mod:`.discovery` finds the runs and their files, :mod:`.facts`
computes the headline, :mod:`.sections` renders each section,
:mod:`.maps` and :mod:`.plots` draw the figures, :mod:`.html` escapes and
assembles. Text from the data (region and tile names, messages) is always
escaped: HTML-escaped on the page, and drawn by matplotlib with math text
and TeX off. No absolute path of the machine that ran it is written.
"""

from __future__ import annotations

import os
import time

from footprints_app.report import discovery, facts, html, sections
from footprints_app.report.discovery import DEMO_SUMMARY, find_runs, run_files
from footprints_app.report.sections import mask_coverage

REPORT_FILE = "report.html"

__all__ = [
    "DEMO_SUMMARY",
    "REPORT_FILE",
    "build_report",
    "find_runs",
    "mask_coverage",
    "run_files",
]


def build_report(output_dir: str, title: str | None = None) -> str:
    """Writes ``output_dir/report.html`` and returns its path."""
    import matplotlib

    output_dir = os.path.abspath(output_dir)
    html.ROOTS[:] = [output_dir]
    html.SHOWN_MODELS.clear()
    try:
        # Names from the data (regions, tiles) are drawn as plain text: no math, no TeX.
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            page = _page(output_dir, title)
    finally:
        html.ROOTS.clear()
    path = os.path.join(output_dir, REPORT_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def _main_run(runs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The run the headline speaks for: a segment run (buildings from imagery), else a score run."""
    for wanted in ("segment", "score"):
        for kind, folder in runs:
            if kind == wanted:
                return kind, folder
    return None


def _label(folder: str, output_dir: str) -> str:
    rel = os.path.relpath(folder, output_dir)
    return "" if rel == "." else f" ({html.esc(rel)}/)"


def _page(output_dir: str, title: str | None) -> str:
    demo = discovery.read_json(os.path.join(output_dir, DEMO_SUMMARY))
    runs = find_runs(output_dir)
    warnings = sections.warnings_of(output_dir, runs, demo)
    heading = title or "footprints run report"
    parts = [
        f"<h1>{html.esc(heading)}</h1>",
        f"<p class='meta'>{html.esc(os.path.basename(output_dir))}/ &middot; built "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>",
    ]
    main = _main_run(runs)
    if main is None:
        parts.append(sections.banner(warnings))
        if not demo:
            parts.append("<p>No run output (summary.json) was found in this folder.</p>")
    else:
        kind, folder = main
        found = facts.headline(title or os.path.basename(output_dir), kind, folder)
        parts.append(
            "<div class='hero'>"
            f"<section id='headline'>{sections.headline(found, warnings, folder)}</section>"
            f"<section>{sections.headline_map(folder, kind)}</section></div>"
        )
    # The tables an analyst checks: per tile, per region; then the figures.
    # The headline's run first.
    if main is not None:
        runs = [main] + [r for r in runs if r != main]
    for kind, folder in runs:
        label = _label(folder, output_dir)
        if kind == "segment":
            parts.append(f"<h2>Buildings found{label}: per tile</h2>")
            parts.append(sections.segment_tables(folder))
        if kind == "score" or discovery.summary(folder).get("scores"):
            what = "Residential classification" if kind == "score" else "Classified buildings"
            parts.append(f"<h2>{what}{label}: per region</h2>" + sections.region_table(folder))
            parts.append(sections.score_figures(folder))
        if kind == "segment":
            figures = sections.area_figures(folder)
            if figures:
                parts.append(f"<h2>The area against the truth, tile by tile{label}</h2>" + figures)
        parts.append(f"<h3>Rejected records{label}</h3>" + sections.errors_section(folder))
    outputs = [(folder, sections.outputs_section(folder)) for _, folder in runs]
    if any(links for _, links in outputs):
        parts.append("<h2>Outputs</h2>")
        for folder, links in outputs:
            if links:
                parts.append(f"<h3>{html.esc(os.path.relpath(folder, output_dir))}/</h3>{links}")
    details = []
    if demo:
        details.append("<h3>Demo stages, in pipeline order</h3>" + sections.demo_stages(demo))
    for kind, folder in runs:
        summary = discovery.summary(folder)
        if kind == "score":
            details.append(
                sections.model_section((summary.get("inputs") or {}).get("model"), "Classifier")
            )
        else:
            details.append(
                sections.model_section((summary.get("inputs") or {}).get("model"), "Segmenter")
            )
            scores = summary.get("scores")
            if isinstance(scores, dict):
                details.append(sections.model_section(scores.get("classifier"), "Classifier"))
    if any(details):
        parts.append("<h2>Model details (for the ML engineer)</h2>" + "".join(details))
    return html.page(title or "footprints report", parts)
